"""The stages composed: fetch -> build -> port -> parity (-> export -> pack -> docs -> publish).

Each function here only sequences library stages; the work is done in the stage modules.
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hubpub import tolerances
from hubpub._files import write_atomic
from hubpub._torch import torch_available
from hubpub.extras import install_command, installed
from hubpub.layout import Dist
from hubpub.manifest import KINDS, Variant, artifact_name
from hubpub.record import (
    ArtifactRow,
    BuildRecord,
    BuildSummary,
    CheckpointInfo,
    KerasFile,
    Output,
    ParityInfo,
    RecordError,
    RoundTrip,
    Tarball,
    read_record,
    write_record,
    write_summary,
)

log = logging.getLogger(__name__)


@dataclass
class Timings:
    seconds: dict[str, float] = field(default_factory=dict)

    @contextlib.contextmanager
    def stage(self, name: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = round(time.perf_counter() - start, 3)


def build_ported(variant: Variant, source: Path, *, kind: str, input_convention: str = "hub"):
    """The Keras model of one artifact from its family, with the checkpoint ported into it by name
    (or, for a family without a converter, the model the source file holds)."""
    from hubpub.convert import port_weights, read_checkpoint, unported
    from hubpub.errors import CheckpointError

    family, classifier = variant.family, kind == "classifier"
    if input_convention not in family.input_conventions:
        raise CheckpointError(f"{variant.name}: family {family.name} takes --input-convention "
                              f"{' or '.join(family.input_conventions)}, not {input_convention}")
    model = family.build(variant.architecture, num_classes=variant.num_classes if classifier else None,
                         input_convention=input_convention, name=artifact_name(variant.name, kind), source=source)
    if family.converter is None:
        return model, unported(model, source)
    with read_checkpoint(source) as ckpt:
        report = port_weights(model, ckpt, family.converter, variant.architecture, classifier=classifier,
                              label=variant.name)
    return model, report


def default_formats(skip: tuple[str, ...] = ()) -> tuple[str, ...]:
    """Every format of `hubpub.formats` not in `skip` whose libraries are installed; one line names the
    extra of each that is not."""
    from hubpub.formats import FORMATS

    wanted = [f for f in FORMATS if f.name not in skip]
    for fmt in wanted:
        if not fmt.available():
            log.warning("warning: no %s files: its libraries are not installed (%s, or --no-%s to say so)",
                        fmt.title, install_command(fmt.extra), fmt.name)
    return tuple(f.name for f in wanted if f.available())


def has_reference(variant: Variant) -> bool:
    return variant.family.reference is not None and torch_available()


def _reference(variant: Variant, checkpoint_path: Path):
    """The PyTorch reference; its own scope, so the checkpoint's mapping goes once the reference does."""
    from hubpub.convert import official_tensors, read_checkpoint

    family = variant.family
    with read_checkpoint(checkpoint_path) as ckpt:
        return family.reference(variant.architecture, variant.num_classes, official_tensors(ckpt, family.converter))


def feature_extractor_of(classifier, variant: Variant):
    """The feature extractor sharing the classifier's weights: same graph, cut where the family says."""
    import keras

    cut = classifier.get_layer(variant.architecture.feature_layer).output
    return keras.Model(classifier.input, cut, name=classifier.name + "_fe")


def measure_preprocess_gap(variant: Variant) -> dict | None:
    """How far serving_bytes' in-graph preprocessing is from Pillow's, on the sample photos."""
    from hubpub.eval import preprocess_gap
    from hubpub.resources import photos

    found = photos()
    return preprocess_gap(variant.resolution, variant.eval, found) if found else None


def build_variant(variant: Variant, out: Path, *, checkpoint: str | None = None,
                  kinds: tuple[str, ...] = KINDS, input_convention: str = "hub", parity: bool = True,
                  on_stage=lambda artifact, stage: None, inputs_keys: dict[str, str] | None = None,
                  fetched=None, keras_file: bool = True, litert: bool = True,
                  formats: tuple[str, ...] | None = None) -> list[BuildRecord]:
    """fetch -> build -> port -> parity -> export -> round-trip -> pack, for each kind of a variant.

    Writes the saved model, tarball (+ .sha256) and build record of each artifact into the dist
    folder `out`, and returns the records. `formats` names the formats of `hubpub.formats` to build
    (default: every one whose extra is installed).
    """
    with _collect_young_objects_only():
        return _build_variant(variant, Dist(out), checkpoint=checkpoint, kinds=kinds,
                              input_convention=input_convention, parity=parity, on_stage=on_stage,
                              inputs_keys=inputs_keys or {}, fetched=fetched, keras_file=keras_file,
                              litert=litert, formats=default_formats() if formats is None else formats)


@contextlib.contextmanager
def _collect_young_objects_only():
    """Keep the garbage collector off the objects that exist before the build (TensorFlow's and
    Keras' modules: about a million): each full collection, explicit or automatic, then walks only
    what the build made (tiny: 0.53 -> 0.23 s spent collecting). They are collectable again after."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def _build_variant(variant: Variant, dist: Dist, *, checkpoint, kinds, input_convention, parity, on_stage,
                   inputs_keys, fetched, keras_file, litert=True, formats=()) -> list[BuildRecord]:
    from hubpub import __version__
    from hubpub.export import export_saved_model, round_trip
    from hubpub.fetch import fetch
    from hubpub.formats import FormatJob
    from hubpub.keras_artifact import checked_keras, write_keras
    from hubpub.parity import check_parity, reference_images
    from hubpub.verify import reference_record

    timings = Timings()
    source = checkpoint or variant.checkpoint_url
    if fetched is None:  # build-all's worker has fetched (and hashed) it already
        on_stage(variant.name, "fetch")
        with timings.stage("fetch"):
            fetched = fetch(source, sha256=variant.checkpoint_sha256 if checkpoint is None else None)
    on_stage(variant.name, "port")
    with timings.stage("build+port"):
        first = "classifier" if "classifier" in kinds else "feature-extractor"
        base, port = build_ported(variant, fetched.path, kind=first, input_convention=input_convention)
    models = {first: base}
    if "feature-extractor" in kinds and first == "classifier":
        models["feature-extractor"] = feature_extractor_of(base, variant)

    parity_runs: dict[str, list] = {k: [] for k in models}
    if parity and has_reference(variant):
        on_stage(variant.name, "parity")
        with timings.stage("parity"):
            reference = _reference(variant, fetched.path)
            for kind, model in models.items():
                for h, w in default_parity_sizes(variant):
                    report = check_parity(model, reference, variant.family, variant.architecture,
                                          reference_images(h, w, batch=1), classifier=kind == "classifier",
                                          input_convention=input_convention)
                    parity_runs[kind].append(report.to_dict())
            del reference
            gc.collect()

    # One set of fixed inputs serves the round trip and the record `verify` checks downstream.
    res = variant.resolution
    rt_images = reference_images(res, res, 2, seed=0)
    done: dict[str, dict] = {}
    for kind, model in models.items():
        name = artifact_name(variant.name, kind)
        kt = Timings()
        on_stage(name, "export")
        with kt.stage("export"):
            exported = export_saved_model(
                model, dist.saved_model(name), kind=kind, resolution=variant.resolution, ev=variant.eval,
                labels=variant.dataset.labels if kind == "classifier" else None,
                input_convention=input_convention, normalization=(variant.family.mean, variant.family.std),
                probe=rt_images)
            expected = exported.probe_outputs
        done[kind] = {"timings": kt, "exported": exported, "expected": expected,
                      "record": reference_record(expected, res, res, batch=2, seed=0),
                      "parameters": int(model.count_params())}
    # The Keras 3 files after every SavedModel: their build resets Keras' name counters.
    for kind, model in models.items() if keras_file else ():
        name, kt = artifact_name(variant.name, kind), done[kind]["timings"]
        on_stage(name, "keras")
        with kt.stage("keras"):
            done[kind]["keras_written"] = write_keras(
                model, lambda kind=kind: variant.family.build(
                    variant.architecture, num_classes=variant.num_classes if kind == "classifier" else None,
                    input_convention=input_convention, name=artifact_name(variant.name, kind),
                    source=fetched.path, portable=True),
                dist.keras(name))
    # The reloads below would otherwise hold a second copy of the weights next to the Keras model
    # (`model` too: the loops above leave it naming the last model, which shares every weight).
    del models, base, model
    gc.collect()
    for kind, d in done.items() if keras_file else ():
        name, kt = artifact_name(variant.name, kind), d["timings"]
        on_stage(name, "keras-check")
        with kt.stage("keras_check"):  # Keras' loader reads the whole weights file into memory first
            d["keras"] = checked_keras(dist.keras(name), *d.pop("keras_written"), rt_images, d["expected"])
        gc.collect()

    # From here on, work runs beside the round trips: packing (ISA-L, hashing, file I/O) and the
    # preprocessing gap mostly without the GIL. Not earlier: a save's function names come from the
    # counter that numbers every eager tensor, so TensorFlow work beside a save would change its bytes.
    with ThreadPoolExecutor(2) as pool:
        gap_job = pool.submit(measure_preprocess_gap, variant)
        for i, (kind, d) in enumerate(done.items()):
            name, kt, exported = artifact_name(variant.name, kind), d["timings"], d["exported"]
            if i:
                gc.collect()  # the previous reload, before this one makes another copy of the weights
            on_stage(name, "round-trip")
            tarball = dist.tarball(name)
            packing = pool.submit(_pack_checked, exported.path, tarball)
            try:
                with kt.stage("round_trip"):
                    d["round_trip"] = round_trip(d["expected"], exported.path, rt_images, kind=kind)
            except BaseException:
                # No tarball of a SavedModel that failed its round trip, even without its report.
                wait([packing])
                for path in (tarball, dist.tarball_sha256(name)):
                    path.unlink(missing_ok=True)
                raise
            on_stage(name, "pack")
            with kt.stage("pack"):  # what is left of it after the round trip
                d["packed"] = packing.result()
        gap = gap_job.result()

    for kind, d in done.items():  # the formats of the format seam: each from the final SavedModel
        d["formats"] = build_formats(formats, FormatJob(artifact_name(variant.name, kind), d["exported"].path, dist,
                                                        rt_images, d["expected"], d["parameters"]),
                                     d["timings"], on_stage)

    if litert and variant.litert_formats and not installed("litert"):
        log.warning("warning: no LiteRT files: its libraries are not installed (%s, or --no-litert to say so)",
                    install_command("litert"))
    elif litert and variant.litert_formats:
        from hubpub.litert import build_litert, calibration_images

        calibration = calibration_images(res, variant.litert_calibration)
        inputs = np.concatenate([rt_images, calibration])  # the parity inputs and real photos
        for kind, d in done.items():
            name, kt = artifact_name(variant.name, kind), d["timings"]
            on_stage(name, "litert")
            with kt.stage("litert"):
                d["litert"] = build_litert(d["exported"].path, dist.litert_files, name, res, inputs=inputs,
                                           calibration=calibration, formats=variant.litert_formats,
                                           min_cosine=variant.litert_min_cosine, dist_root=dist.root)

    if parity_runs and any(parity_runs.values()):
        parity_status = "passed"
    elif not parity:
        parity_status = "skipped (--no-parity)"
    elif variant.family.reference is None:
        parity_status = f"not checked: the {variant.family.name} family has no reference implementation"
    else:
        parity_status = "skipped (torch not installed)"
    records = []
    for kind, d in done.items():
        name, kt, exported = artifact_name(variant.name, kind), d["timings"], d["exported"]
        packed, runs = d["packed"], tuple(parity_runs.get(kind, []))
        record = BuildRecord(
            artifact=name, variant=variant.name, kind=kind, family=variant.family.name, version=variant.version,
            hubpub_version=__version__, input_convention=input_convention, random_weights=port.random_weights,
            checkpoint=CheckpointInfo(str(source), fetched.sha256, port.layout, port.file_format),
            parameters=d["parameters"],
            parity=ParityInfo(parity_status, runs[0]["tolerance"] if runs else None,
                              max((r["max_abs"] for r in runs), default=None), runs),
            round_trip=RoundTrip(tolerance=tolerances.ROUND_TRIP, **d["round_trip"]),
            tarball=Tarball(dist.relative(packed.path), packed.sha256, packed.size, tuple(packed.members)),
            saved_model=dist.relative(exported.path),
            output=Output(exported.output_name, exported.output_dim),
            signatures={s.name: {"inputs": s.inputs, "outputs": s.outputs} for s in exported.signatures},
            timings={**timings.seconds, **kt.seconds}, reference=d["record"], preprocess_gap=gap,
            inputs_key=inputs_keys.get(kind),
            keras=KerasFile(dist.relative(d["keras"].path), d["keras"].sha256, d["keras"].size,
                            d["keras"].max_abs) if "keras" in d else None,
            litert=d.get("litert", ()), formats=d["formats"])
        write_record(dist.report(name), record)
        records.append(record)
    return records


def build_formats(names: tuple[str, ...], job, timings: Timings, on_stage) -> tuple:
    """The files of the formats named (`hubpub.formats`), in registry order, each timed as its own stage;
    a format too large for the artifact is left out, saying why."""
    from hubpub.formats import FORMATS

    files = []
    for fmt in FORMATS:
        if fmt.name not in names:
            continue
        if why := fmt.wanted(job.parameters):
            log.info("%s: no %s file: %s", job.artifact, fmt.title, why)
            continue
        on_stage(job.artifact, fmt.name)
        with timings.stage(fmt.name):
            files.append(fmt.build(job))
    return tuple(files)


def _pack_checked(saved_model: Path, tarball: Path):
    from hubpub.package import check_tarball, pack

    packed = pack(saved_model, tarball)
    check_tarball(packed.path)
    return packed


def parity_for_variant(variant: Variant, checkpoint_path: Path, *, sizes: list[tuple[int, int]] | None = None,
                       kinds: tuple[str, ...] = ("classifier", "feature-extractor"),
                       input_convention: str = "hub", batch: int = 2) -> dict:
    """Parity of each kind against the reference, at each size (default: native and non-square)."""
    from hubpub.errors import ParityError
    from hubpub.parity import check_parity, reference_images

    if variant.family.reference is None:
        raise ParityError(f"{variant.name}: the {variant.family.name} family has no reference implementation to "
                          "check parity against")

    sizes = sizes or default_parity_sizes(variant)
    out: dict = {}
    reference = None
    for kind in kinds:
        # Porting first: its errors name the misfit keys; the reference would only fail later.
        model, port = build_ported(variant, checkpoint_path, kind=kind, input_convention=input_convention)
        if reference is None:
            reference = _reference(variant, checkpoint_path)
        runs = []
        for h, w in sizes:
            images = reference_images(h, w, batch=batch)
            runs.append(check_parity(model, reference, variant.family, variant.architecture, images,
                                     classifier=kind == "classifier", input_convention=input_convention,
                                     raise_on_failure=False).to_dict())
        out[kind] = {"port": {"layout": port.layout, "format": port.file_format, "assigned": port.assigned,
                              "dropped": list(port.dropped), "parameters": port.parameters},
                     "runs": runs, "passed": all(r["passed"] for r in runs),
                     "max_abs": max(r["max_abs"] for r in runs)}
        del model
        gc.collect()
    return out


def verify_parity_report(variant: Variant, checkpoint: str, report_path: Path, **options) -> dict:
    """`parity_for_variant` on a checkpoint path or URL, its report written to `report_path`; per kind."""
    from hubpub._files import write_json
    from hubpub.fetch import fetch
    from hubpub.parity import TOLERANCE

    fetched = fetch(checkpoint)
    result = parity_for_variant(variant, fetched.path, **options)
    write_json(report_path, {"variant": variant.name, "checkpoint": checkpoint, "checkpoint_sha256": fetched.sha256,
                             "tolerance": TOLERANCE, "kinds": result})
    return result


def default_parity_sizes(variant: Variant) -> list[tuple[int, int]]:
    """The native resolution, and a non-square size that is a multiple of the stem stride."""
    r = variant.resolution
    return [(r, r), (r + 32, r + 96)]


# --------------------------------------------------------------------------- build-all

LOCK_NAME = "collection.lock"


def inputs_key(variant: Variant, kind: str, checkpoint_sha256: str, input_convention: str, parity: bool,
               keras_file: bool = True, litert: bool = True, formats: tuple[str, ...] = ()) -> str:
    """What an artifact's bytes depend on: its manifest entry, the checkpoint, hubpub's version."""
    import hashlib

    from hubpub import __version__

    entry = {"name": variant.name, "architecture": variant.architecture.model_dump(),
             "datasets": [(d.key, d.classes) for d in variant.datasets], "num_classes": variant.num_classes,
             "resolution": variant.resolution, "checkpoint_url": variant.checkpoint_url,
             "eval": variant.eval.model_dump(), "version": variant.version}
    blob = json.dumps({"variant": entry, "kind": kind, "checkpoint_sha256": checkpoint_sha256,
                       "hubpub": __version__, "input_convention": input_convention, "parity": parity,
                       "keras": keras_file,
                       "litert": [variant.litert_formats, variant.litert_min_cosine,
                                  [str(p) for p in variant.litert_calibration]] if litert else None,
                       **({"formats": list(formats)} if formats else {})},
                      sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def up_to_date(dist: Dist, name: str, key: str) -> BuildRecord | None:
    """The artifact's record if its outputs exist and were built from the same inputs (and with the
    same record schema: an old record means a rebuild)."""
    try:
        record = read_record(dist.report(name))
    except RecordError:
        return None
    tar = dist.tarball(name)
    if (record.inputs_key != key or not tar.is_file() or tar.stat().st_size != record.tarball.size
            or not (dist.saved_model(name) / "saved_model.pb").is_file()):
        return None
    keras = dist.keras(name)
    if record.keras is not None and (not keras.is_file() or keras.stat().st_size != record.keras.size):
        return None
    return record


def read_lock(path: Path) -> dict[str, dict]:
    import yaml

    if not path.is_file():
        return {}
    data = yaml.safe_load(path.read_text()) or {}
    return data.get("checkpoints", {}) if isinstance(data, dict) else {}


def write_lock(path: Path, entries: dict[str, dict]) -> None:
    import yaml

    write_atomic(path, "# Checkpoint hashes recorded by hubpub on first download; commit this file.\n"
                 + yaml.safe_dump({"checkpoints": dict(sorted(entries.items()))}, sort_keys=True))


def check_pinned(manifest, variants: list[Variant], lock: dict, lock_path: Path, overrides: dict[str, str]) -> None:
    """Refuse, before any download, a variant whose checkpoint has no sha256 to check it against: neither
    the manifest's `checkpoint.sha256` nor a `collection.lock` entry for the same URL."""
    from hubpub.errors import FetchError

    unpinned = [v.name for v in variants if v.name not in overrides and not v.checkpoint_sha256
                and not (lock.get(v.name, {}).get("url") == v.checkpoint_url and lock[v.name].get("sha256"))]
    if unpinned:
        raise FetchError(
            f"{len(unpinned)} checkpoint(s) not pinned, refused before downloading (require_pinned): "
            f"{', '.join(unpinned[:6])}{', ...' if len(unpinned) > 6 else ''}; give checkpoint.sha256 in "
            f"{manifest.path.name}, or build once where you trust the download and commit {lock_path.name}")


@dataclass(frozen=True)
class VariantJob:
    """Plain values sent to a worker process."""

    manifest_path: str
    variant: str
    out: str
    checkpoint: str | None
    expected_sha256: str | None
    kinds: tuple[str, ...]
    input_convention: str
    parity: bool
    force: bool
    threads: int | None = None  # CPU threads for TensorFlow and PyTorch in this worker; None: all
    keras_file: bool = True  # also the Keras 3 artifact
    litert: bool = True  # also the LiteRT files, for the variants the manifest wants them for
    formats: tuple[str, ...] = ()  # the formats of `hubpub.formats` to build


# What the worker's libraries read for their thread pools, at their first use.
THREAD_VARIABLES = ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "OMP_NUM_THREADS")


def worker_threads(jobs: int) -> int | None:
    """Each of `jobs` workers gets an equal share of this process's CPUs (None for one worker).

    Every library sizes its pools to all CPUs by default: two workers on two cores would each run
    two compute threads per op (measured: 4 variants, --jobs 2, 52 s; with a share each, 43 s).
    """
    if jobs <= 1:
        return None
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1  # not on macOS
    return max(1, cpus // jobs)


@dataclass(frozen=True)
class VariantResult:
    """What a worker sends back: each kind's record with its status, or the error."""

    variant: str
    ok: bool
    seconds: float
    records: tuple[tuple[str, BuildRecord], ...] = ()  # (status, record) per kind
    checkpoint_url: str | None = None
    checkpoint_sha256: str | None = None
    error: str | None = None
    traceback: str | None = None


def run_variant(job: VariantJob, events=None) -> VariantResult:
    """Worker: fetch, check what is up to date, build the rest. Returns plain results, never raises."""
    import traceback

    from hubpub.errors import HubpubError
    from hubpub.fetch import fetch
    from hubpub.manifest import load_manifest

    def emit(artifact: str, stage: str) -> None:
        if events is not None:
            events.put((artifact, stage))

    if job.threads:  # before TensorFlow or PyTorch is imported here; a user's own setting wins
        for name in THREAD_VARIABLES:
            os.environ.setdefault(name, str(job.threads))
    start = time.perf_counter()
    try:
        variant = load_manifest(job.manifest_path).variant(job.variant)
        dist = Dist(job.out)
        emit(variant.name, "fetch")
        fetch_start = time.perf_counter()
        fetched = fetch(job.checkpoint or variant.checkpoint_url, sha256=job.expected_sha256)
        fetch_seconds = round(time.perf_counter() - fetch_start, 3)
        from hubpub._tf import import_tensorflow

        import_tensorflow()  # after the fetch: a missing checkpoint fails without the seconds of this import
        keys = {k: inputs_key(variant, k, fetched.sha256, job.input_convention, job.parity, job.keras_file,
                              job.litert, job.formats)
                for k in job.kinds}
        done = {} if job.force else {k: r for k in job.kinds
                                     if (r := up_to_date(dist, artifact_name(variant.name, k), keys[k]))}
        todo = tuple(k for k in job.kinds if k not in done)
        records = {k: ("up to date", r) for k, r in done.items()}
        if todo:
            built = build_variant(variant, dist.root, checkpoint=job.checkpoint, kinds=todo,
                                  input_convention=job.input_convention, parity=job.parity, on_stage=emit,
                                  inputs_keys=keys, fetched=fetched, keras_file=job.keras_file,
                                  litert=job.litert, formats=job.formats)
            records |= {r.kind: ("built", r.replace(timings={**r.timings, "fetch": fetch_seconds})) for r in built}
        return VariantResult(variant.name, True, time.perf_counter() - start, tuple(records[k] for k in job.kinds),
                             job.checkpoint or variant.checkpoint_url, fetched.sha256)
    except HubpubError as e:
        return VariantResult(job.variant, False, time.perf_counter() - start, error=str(e).splitlines()[0])
    except Exception as e:  # a bug: keep the traceback for -v, and let the other variants go on
        return VariantResult(job.variant, False, time.perf_counter() - start,
                             error=f"internal error: {type(e).__name__}: {e}", traceback=traceback.format_exc())


def _ignore_sigint() -> None:
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _stop_workers(pool) -> None:
    """Terminate a pool's workers now (ProcessPoolExecutor has no public way before Python 3.14)."""
    processes = list((getattr(pool, "_processes", None) or {}).values())
    for p in processes:
        p.terminate()
    for p in processes:
        p.join(timeout=10)
    pool.shutdown(wait=False, cancel_futures=True)


def select_shard(variants: list[Variant], shard: tuple[int, int] | None) -> list[Variant]:
    """Shard K of N (1-based): every N-th variant in manifest order, both kinds of a variant together."""
    if shard is None:
        return variants
    k, n = shard
    return [v for i, v in enumerate(variants) if i % n == k - 1]


def clean_interrupted(out: Path) -> None:
    """Remove temp files an interrupted run left beside the final names (never the final files)."""
    import shutil

    for sub in Dist(out).temp_dirs():
        for tmp in sub.glob(".*tmp") if sub.is_dir() else []:
            shutil.rmtree(tmp, ignore_errors=True) if tmp.is_dir() else tmp.unlink(missing_ok=True)


def build_all(manifest, out: Path, *, only: tuple[str, ...] = (), kinds: tuple[str, ...] = KINDS, jobs: int = 1,
              shard: tuple[int, int] | None = None, force: bool = False, checkpoints: dict[str, str] | None = None,
              input_convention: str = "hub", parity: bool = True, lock_path: Path | None = None,
              progress=None, keras_file: bool = True, litert: bool = True,
              require_pinned: bool = False, formats: tuple[str, ...] | None = None) -> BuildSummary:
    """Build every selected variant in worker processes (a fresh one per variant), then write the report.

    A fresh process per variant frees its memory and keeps SavedModel bytes reproducible. One
    variant's failure is recorded and the others go on.
    """
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from concurrent.futures.process import BrokenProcessPool
    from multiprocessing.managers import SyncManager

    from hubpub.errors import FetchError
    from hubpub.manifest import iter_selected

    checkpoints = checkpoints or {}
    out.mkdir(parents=True, exist_ok=True)
    clean_interrupted(out)
    variants = select_shard(list(iter_selected(manifest, only)), shard)
    unknown = sorted(set(checkpoints) - {v.name for v in manifest.variants})
    if unknown:
        raise FetchError(f"--checkpoint given for unknown variant(s): {', '.join(unknown)}")
    formats = default_formats() if formats is None else formats
    lock_path = lock_path or manifest.path.with_name(LOCK_NAME)
    lock = read_lock(lock_path)
    if require_pinned or manifest.require_pinned:
        check_pinned(manifest, variants, lock, lock_path, checkpoints)
    jobs = max(1, min(jobs, len(variants)))
    threads = worker_threads(jobs)
    jobs_list = []
    for v in variants:
        source = checkpoints.get(v.name)
        locked = lock.get(v.name, {})
        expected = v.checkpoint_sha256 or (locked.get("sha256") if source is None
                                           and locked.get("url") == v.checkpoint_url else None)
        jobs_list.append(VariantJob(str(manifest.path), v.name, str(out), source, expected, kinds, input_convention,
                                    parity, force, threads, keras_file, litert, formats))

    results: dict[str, VariantResult] = {}
    ctx = mp.get_context("spawn")
    # Ctrl-C reaches every process of the terminal's group: the helpers ignore it, and this process
    # stops them, so the user sees one line and no traceback from a worker or the queue's thread.
    mgr = SyncManager(ctx=ctx)
    mgr.start(_ignore_sigint)
    with mgr:
        events = mgr.Queue()
        listener = None
        if progress is not None:
            import threading

            def listen():
                try:
                    while (item := events.get()) is not None:
                        progress(*item)
                except (EOFError, OSError):  # the manager is gone: interrupted
                    return

            listener = threading.Thread(target=listen, daemon=True)
            listener.start()
        pool = ProcessPoolExecutor(max_workers=jobs, mp_context=ctx, max_tasks_per_child=1,
                                   initializer=_ignore_sigint)
        try:
            futures = {pool.submit(run_variant, job, events): job for job in jobs_list}
            for fut in as_completed(futures):
                job = futures[fut]
                try:
                    result = fut.result()
                except BrokenProcessPool as e:
                    result = VariantResult(job.variant, False, 0.0, error=f"worker process died (out of memory?): {e}")
                results[job.variant] = result
                if progress is not None:
                    progress(job.variant, "done" if result.ok else f"FAILED: {result.error}")
        except KeyboardInterrupt:
            _stop_workers(pool)
            clean_interrupted(out)
            raise
        pool.shutdown()
        events.put(None)
        if listener is not None:
            listener.join(timeout=5)

    # The lock records the hash of every official checkpoint downloaded; later builds are checked against it.
    changed = False
    for v in variants:
        r = results.get(v.name)
        if r and r.ok and v.name not in checkpoints and lock.get(v.name, {}).get("sha256") != r.checkpoint_sha256:
            lock[v.name] = {"url": r.checkpoint_url, "sha256": r.checkpoint_sha256}
            changed = True
    if changed:
        write_lock(lock_path, lock)

    rows = []
    for v in variants:
        r = results[v.name]
        if not r.ok:
            rows += [ArtifactRow(artifact_name(v.name, k), v.name, k, "failed", round(r.seconds, 1), error=r.error)
                     for k in kinds]
            continue
        for status, rec in r.records:
            rows.append(ArtifactRow(rec.artifact, v.name, rec.kind, status,
                                    round(sum(rec.timings.values()), 1) if status == "built" else 0.0,
                                    rec.parameters, rec.tarball.size, rec.tarball.sha256, rec.parity.max_abs,
                                    rec.random_weights))
    summary = BuildSummary(__import__("hubpub").__version__, str(manifest.path),
                           f"{shard[0]}/{shard[1]}" if shard else None, jobs, threads, tuple(rows))
    for name, r in results.items():
        if r.traceback:
            log.debug("%s:\n%s", name, r.traceback)
    write_summary(Dist(out).build_report, summary)
    return summary


# --------------------------------------------------------------------------- the collection, end to end


@dataclass(frozen=True)
class CollectionResult:
    summary: BuildSummary
    docs: object | None  # hubpub.docs.RenderResult, when rendered
    docs_note: str  # why the docs were not rendered, else ""
    public_url_base: str
    published: object | None  # hubpub.publish.PublishResult, when published
    notebooks: list = field(default_factory=list)  # hubpub.notebooks.Notebook, written or kept
    site: object | None = None  # hubpub.site.Site, when rendered


def build_collection(manifest, out: Path, *, only: tuple[str, ...] = (), kinds: tuple[str, ...] = KINDS,
                     jobs: int = 1, shard: tuple[int, int] | None = None, force: bool = False,
                     checkpoints: dict[str, str] | None = None, input_convention: str = "hub", parity: bool = True,
                     publish_dest: str | None = None, public_url: str | None = None,
                     progress=None, keras_file: bool = True, litert: bool = True, notebooks: Path | None = None,
                     formats: tuple[str, ...] | None = None,
                     execute: bool = False, collect: bool = False, require_pinned: bool = False) -> CollectionResult:
    """build-all: every selected artifact, then its usage notebooks (into `notebooks`, default
    DIST/notebooks; run if `execute`) and docs for the destination, then (if asked) publish.

    A shard publishes its own artifact files only; `collect` builds nothing and renders the notebooks,
    docs and site of every artifact whose record is in `out` (the shards' `reports/`, gathered), then
    publishes those, checking that each artifact they link is at the destination."""
    from hubpub.destinations import parse, public_url_base
    from hubpub.docs import load_reports, render_docs
    from hubpub.errors import HubpubError
    from hubpub.manifest import iter_selected
    from hubpub.notebooks import notebooks_dir, render_notebooks
    from hubpub.publish import publish as run_publish
    from hubpub.site import render_site

    dest = parse(publish_dest or manifest.publish.destination)
    base = public_url_base(dest, manifest, public_url)  # before any work: a bad destination fails now
    if shard and publish_dest and dest.is_hub:
        raise HubpubError(f"--shard with --publish {dest}: a shard publishes its artifact files to gs:// or a "
                          "directory; a hub's pages need the whole collection, so publish there once, from the "
                          "gathered dist folders")
    selected = list(iter_selected(manifest, only))
    if not selected:
        raise HubpubError(f"no variant matches --only {' '.join(only)}")
    if not select_shard(selected, shard):  # a matrix wider than the collection: this shard has nothing to do
        empty = BuildSummary(__import__("hubpub").__version__, str(manifest.path), f"{shard[0]}/{shard[1]}", 0, None)
        return CollectionResult(empty, None, f"shard {shard[0]}/{shard[1]} holds none of the {len(selected)} "
                                "selected variants: nothing to build", base, None)
    if collect:
        summary = collected(manifest, out, only=only, kinds=kinds)
    else:
        summary = build_all(manifest, out, only=only, kinds=kinds, jobs=jobs, shard=shard, force=force,
                            checkpoints=checkpoints, input_convention=input_convention, parity=parity,
                            progress=progress, keras_file=keras_file, litert=litert, require_pinned=require_pinned,
                            formats=formats)
    docs, note, written, site = None, "", [], None
    if not load_reports(out):
        note = "nothing built, no docs rendered"
    elif shard:
        note = ("not rendered for a shard: once every shard is done, gather their reports/ and run "
                "`hubpub build-all --collect`")
    else:
        notebooks = notebooks or notebooks_dir(out)
        if installed("notebooks"):
            written = render_notebooks(manifest, dist=out, out=notebooks, public_url_base=base)
            if execute:
                written = execute_notebooks(out, written, progress=lambda name: log.info("executing %s", name))
        else:
            log.warning("warning: no usage notebooks: the notebooks extra is not installed (%s)",
                        install_command("notebooks"))
        docs = render_docs(manifest, dist=out, out=Dist(out).docs, public_url_base=base)
        site = render_site(manifest, dist=out, public_url_base=base)
    published = None
    if publish_dest and not summary.failed:
        published = run_publish(manifest, out, dest, public_url=public_url, notebooks=notebooks,
                                artifacts_only=bool(shard))
    return CollectionResult(summary, docs, note, base, published, written, site)


def collected(manifest, out: Path, *, only: tuple[str, ...] = (), kinds: tuple[str, ...] = KINDS) -> BuildSummary:
    """The summary of a collection built elsewhere (shards, a cluster), from the records gathered in `out`;
    every selected artifact must have one."""
    from hubpub.errors import HubpubError
    from hubpub.manifest import iter_selected

    rows, missing = [], []
    for v in iter_selected(manifest, only):
        for a in v.artifacts(kinds):
            try:
                rec = read_record(Dist(out).report(a.name))
            except RecordError:
                missing.append(a.name)
                continue
            rows.append(ArtifactRow(rec.artifact, v.name, rec.kind, "collected", 0.0, rec.parameters,
                                    rec.tarball.size, rec.tarball.sha256, rec.parity.max_abs, rec.random_weights))
    if missing:
        raise HubpubError(f"--collect: no build record in {Dist(out).reports} for {len(missing)} artifact(s): "
                          f"{', '.join(missing[:6])}{', ...' if len(missing) > 6 else ''}; gather every shard's "
                          "reports/ there first (or select fewer with --only)")
    summary = BuildSummary(__import__("hubpub").__version__, str(manifest.path), "collect", 0, None, tuple(rows))
    write_summary(Dist(out).build_report, summary)
    return summary



def demo_checkpoint(variant: Variant, out: Path) -> tuple[Path, bool]:
    """The demo's random-weight checkpoint in the official layout (made once); (path, made now)."""
    from hubpub.convert import RANDOM_WEIGHTS_KEY, save_checkpoint

    path = Dist(out).demo / f"{variant.name}.random.safetensors"
    if path.is_file():
        return path, False
    tensors = variant.family.random_checkpoint(variant.architecture, variant.num_classes)
    return save_checkpoint(tensors, path, metadata={RANDOM_WEIGHTS_KEY: "true"}), True


def execute_notebooks(dist: Path, notebooks: list, *, progress=lambda name: None) -> list:
    """Run each notebook against this build's own files, served over loopback HTTP as a bucket would;
    one already executed from the same source and artifact bytes is kept as it is."""
    from hubpub.notebooks import Notebook, artifact_stamp, execute
    from hubpub.verify import serve_directory

    layout, done = Dist(dist), []
    with serve_directory(layout.root) as base:
        for nb in notebooks:
            if nb.executed:
                done.append(nb)
                continue
            progress(nb.artifact)
            overrides = {"HANDLE": f"{base}/{layout.relative(layout.tarball(nb.artifact))}"}
            if layout.keras(nb.artifact).is_file():
                overrides["KERAS_URL"] = f"{base}/{layout.relative(layout.keras(nb.artifact))}"
            execute(nb.path, overrides, stamp=artifact_stamp(read_record(layout.report(nb.artifact))))
            done.append(Notebook(nb.artifact, nb.path, executed=True))
    return done
