"""One variant built: fetch, port, parity, export, round trip, pack and the formats of `hubpub.formats`
(`.keras`, LiteRT, ONNX), into a build record per kind."""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import logging
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from hubpub import tolerances
from hubpub._files import end_children
from hubpub._torch import torch_available
from hubpub.extras import install_command
from hubpub.layout import Dist
from hubpub.manifest import KINDS, Variant, artifact_name
from hubpub.memory import large_blocks_to_the_os, peak_rss_mb
from hubpub.pipeline.incremental import inputs_key
from hubpub.record import (
    BuildRecord,
    CheckpointInfo,
    Output,
    ParityInfo,
    RoundTrip,
    Tarball,
    write_record,
)

if TYPE_CHECKING:
    from hubpub.export import ExportResult
    from hubpub.package import PackResult

log = logging.getLogger(__name__)


@dataclass
class Timings:
    seconds: dict[str, float] = field(default_factory=dict)
    peak_rss_mb: dict[str, int] = field(default_factory=dict)  # the process's peak so far, at each stage's end

    @contextlib.contextmanager
    def stage(self, name: str):
        start = time.perf_counter()
        try:
            yield
        finally:  # a stage run in parts adds up
            self.seconds[name] = round(self.seconds.get(name, 0) + time.perf_counter() - start, 3)
            # A stage run beside the main one (the formats, beside LiteRT) would read the main one's peak.
            if threading.current_thread() is threading.main_thread() and (peak := peak_rss_mb()) is not None:
                self.peak_rss_mb[name] = peak


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
            assert fmt.extra is not None  # a format of the core libraries is always available
            log.warning("warning: no %s files: its libraries are not installed (%s, or --no-%s to say so)",
                        fmt.title, install_command(fmt.extra), fmt.name)
    return tuple(f.name for f in wanted if f.available())


def has_reference(variant: Variant) -> bool:
    return variant.family.reference is not None and torch_available()


def _reference_outputs(variant: Variant, checkpoint_path: Path, kind: str, input_convention: str) -> dict:
    """The PyTorch reference's outputs at each parity size, {(h, w): taps}, made before the Keras model:
    the two models, each a copy of the weights, are never in memory together (large at 384 px: 4.3x the
    weights above a TensorFlow-imported process when they were)."""
    from hubpub.parity import reference_images, reference_taps

    try:
        reference = _reference(variant, checkpoint_path)
    except Exception:
        # A checkpoint that does not fit: porting's error names the misfit keys, the reference's would not.
        build_ported(variant, checkpoint_path, kind=kind, input_convention=input_convention)
        raise
    try:
        return {(h, w): reference_taps(reference, variant.family, reference_images(h, w, batch=1),
                                         variant.architecture)
                for h, w in default_parity_sizes(variant)}
    finally:
        del reference
        gc.collect()


def _reference(variant: Variant, checkpoint_path: Path):
    """The PyTorch reference; its own scope, so the checkpoint's mapping goes once the reference does."""
    from hubpub.convert import official_tensors, read_checkpoint

    family = variant.family
    assert family.reference is not None and family.converter is not None  # a family with a reference ports
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
                  on_stage=lambda artifact, stage: None, fetched=None,
                  formats: tuple[str, ...] | None = None) -> list[BuildRecord]:
    """fetch -> reference -> build -> port -> export -> parity -> formats -> round-trip -> pack, for each kind
    of a variant (the PyTorch reference's outputs before the Keras model exists; their comparison after the
    exports, which must not depend on it).

    Writes the saved model, tarball (+ .sha256), the files of each format and the build record of each
    artifact into the dist folder `out`, and returns the records. `formats` names the formats of
    `hubpub.formats` to build (default: every one whose extra is installed).
    """
    large_blocks_to_the_os()  # freed weights go back to the system, not to one thread's arena
    with _collect_young_objects_only():
        return _build_variant(variant, Dist(out), checkpoint=checkpoint, kinds=kinds,
                              input_convention=input_convention, parity=parity, on_stage=on_stage,
                              fetched=fetched,
                              formats=default_formats() if formats is None else formats)


@contextlib.contextmanager
def _collect_young_objects_only():
    """Keep the garbage collector off the objects that exist before the build (TensorFlow's and
    Keras' modules, far more than the build makes): each full collection, explicit or automatic, then
    walks only what the build made. They are collectable again after."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


@dataclass
class _KindBuild:
    """What one kind's build has made so far, stage by stage, until its record is written."""

    timings: Timings
    exported: ExportResult
    expected: np.ndarray  # the SavedModel's outputs on the fixed inputs
    reference: dict  # what `verify` compares with downstream (`reference_record`)
    parameters: int
    formats: tuple = ()  # the formats of `hubpub.formats` built for it, in registry order
    prepared: dict = field(default_factory=dict)  # a format's `prepare` result, by name, until it is built
    built: dict = field(default_factory=dict)  # a format's record entries, by name
    round_trip: dict = field(default_factory=dict)
    packed: PackResult | None = None


def _build_variant(variant: Variant, dist: Dist, *, checkpoint, kinds, input_convention, parity, on_stage,
                   fetched, formats=()) -> list[BuildRecord]:
    from hubpub import __version__
    from hubpub.export import export_saved_model, round_trip
    from hubpub.fetch import fetch
    from hubpub.parity import check_parity, reference_images
    from hubpub.verify import reference_record

    timings = Timings()
    source = checkpoint or variant.checkpoint_url
    if fetched is None:  # build-all's worker has fetched (and hashed) it already
        on_stage(variant.name, "fetch")
        with timings.stage("fetch"):
            fetched = fetch(source, sha256=variant.checkpoint_sha256 if checkpoint is None else None)
    first = "classifier" if "classifier" in kinds else "feature-extractor"
    references = {}
    if parity and has_reference(variant):
        on_stage(variant.name, "parity")
        with timings.stage("reference"):  # parity's first part: the PyTorch reference's outputs
            references = _reference_outputs(variant, fetched.path, first, input_convention)
    on_stage(variant.name, "port")
    with timings.stage("build+port"):
        base, port = build_ported(variant, fetched.path, kind=first, input_convention=input_convention)
    models = {first: base}
    if "feature-extractor" in kinds and first == "classifier":
        models["feature-extractor"] = feature_extractor_of(base, variant)

    # One set of fixed inputs serves the round trip, the formats' checks and the record `verify` checks downstream.
    res = variant.resolution
    rt_images = reference_images(res, res, 2, seed=0)
    done: dict[str, _KindBuild] = {}
    for kind, model in models.items():
        name = artifact_name(variant.name, kind)
        kt = Timings()
        on_stage(name, "export")
        with kt.stage("export"):
            exported = export_saved_model(
                model, dist.saved_model(name), kind=kind, resolution=variant.resolution, ev=variant.eval,
                labels=variant.dataset.labels if kind == "classifier" else None,
                input_convention=input_convention, normalization=variant.family.normalization(variant.architecture),
                probe=rt_images)
            expected = exported.probe_outputs
        assert expected is not None  # exported with probe images
        done[kind] = _KindBuild(kt, exported, expected, reference_record(expected, res, res, batch=2, seed=0),
                                int(model.count_params()))
        done[kind].formats = _wanted_formats(formats, _format_job(variant, dist, kind, done[kind], rt_images,
                                                                  port.random_weights))

    # Parity's Keras side after the exports: a SavedModel's function names number from a process-wide
    # counter that any TensorFlow work advances, so work before the export would make the tarball's bytes
    # depend on parity (on or off, and how it runs) instead of on the model alone.
    parity_runs: dict[str, list] = {k: [] for k in models}
    if references:
        with timings.stage("parity"):
            try:
                for kind, model in models.items():
                    for (h, w), taps in references.items():
                        report = check_parity(model, taps, variant.family, variant.architecture,
                                              reference_images(h, w, batch=1), classifier=kind == "classifier",
                                              input_convention=input_convention)
                        parity_runs[kind].append(report)
            except BaseException:
                for kind in done:  # no SavedModel of a port that failed parity under a final name
                    shutil.rmtree(dist.saved_model(artifact_name(variant.name, kind)), ignore_errors=True)
                raise
            del references

    # The formats made from the Keras model (`.keras`) after every SavedModel: their build resets Keras'
    # name counters. Built once the models are gone: a build or check makes another copy of the weights.
    try:
        for kind, model in models.items():
            d = done[kind]
            for fmt in (f for f in d.formats if f.source == "model"):
                on_stage(artifact_name(variant.name, kind), fmt.name)
                with d.timings.stage(fmt.name):
                    d.prepared[fmt.name] = fmt.prepare(
                        _format_job(variant, dist, kind, d, rt_images, port.random_weights), model,
                        lambda kind=kind: variant.family.build(
                            variant.architecture, num_classes=variant.num_classes if kind == "classifier" else None,
                            input_convention=input_convention, name=artifact_name(variant.name, kind),
                            source=fetched.path, portable=True))
        # The builds below would otherwise hold a second copy of the weights next to the Keras model
        # (`model` too: the loops above leave it naming the last model, which shares every weight).
        del models, base, model
        gc.collect()
        for kind, d in done.items():
            for fmt in (f for f in d.formats if f.source == "model"):
                on_stage(artifact_name(variant.name, kind), f"{fmt.name}-check")
                with d.timings.stage(f"{fmt.name}_check"):
                    d.built[fmt.name] = fmt.build(_format_job(variant, dist, kind, d, rt_images,
                                                              port.random_weights, prepared=d.prepared.pop(fmt.name)))
                gc.collect()
    except BaseException:
        for d in done.values():  # what `prepare` made for a build that did not run
            for fmt in (f for f in d.formats if f.name in d.prepared):
                fmt.discard(d.prepared.pop(fmt.name))
        raise

    # From here on, work runs beside the round trips: packing (ISA-L, hashing, file I/O) and the
    # preprocessing gap mostly without the GIL. Not earlier: a save's function names come from the
    # counter that numbers every eager tensor, so TensorFlow work beside a save would change its bytes.
    with ThreadPoolExecutor(2) as pool:
        gap_job = pool.submit(measure_preprocess_gap, variant)
        for i, (kind, d) in enumerate(done.items()):
            name, kt, exported = artifact_name(variant.name, kind), d.timings, d.exported
            if i:
                gc.collect()  # the previous reload, before this one makes another copy of the weights
            on_stage(name, "round-trip")
            tarball = dist.tarball(name)
            packing = pool.submit(_pack_checked, exported.path, tarball)
            try:
                with kt.stage("round_trip"):
                    d.round_trip = round_trip(d.expected, exported.path, rt_images, kind=kind)
            except BaseException:
                # No tarball of a SavedModel that failed its round trip, even without its report.
                wait([packing])
                for path in (tarball, dist.tarball_sha256(name)):
                    path.unlink(missing_ok=True)
                raise
            on_stage(name, "pack")
            with kt.stage("pack"):  # what is left of it after the round trip
                d.packed = packing.result()
        gap = gap_job.result()

    def build_from_saved_models(beside: bool) -> None:
        def wanted(d: _KindBuild) -> list:
            return [f for f in d.formats if f.source == "saved_model" and f.beside == beside]

        with contextlib.ExitStack() as stack:  # a format's session serves every kind of the variant
            sessions = {f.name: stack.enter_context(f.session()) for d in done.values() for f in wanted(d)}
            for kind, d in done.items():
                for fmt in wanted(d):
                    on_stage(artifact_name(variant.name, kind), fmt.name)
                    job = _format_job(variant, dist, kind, d, rt_images, port.random_weights)
                    with d.timings.stage(fmt.name):
                        d.built[fmt.name] = fmt.build(dataclasses.replace(job, session=sessions[fmt.name]))

    # The formats made from the final SavedModels. One whose work is a child process (ONNX's conversion)
    # runs beside the others (LiteRT's), so the two use both cores; none writes a SavedModel.
    with ThreadPoolExecutor(1) as pool:
        beside_job = pool.submit(build_from_saved_models, True)
        try:
            build_from_saved_models(False)
        except BaseException:
            end_children()  # an interrupt or error here ends the conversion beside it too
            wait([beside_job])  # the main thread's error is the one to report
            raise
        beside_job.result()

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
        name, kt, exported = artifact_name(variant.name, kind), d.timings, d.exported
        packed, runs = d.packed, tuple(parity_runs.get(kind, []))
        assert packed is not None  # every kind is packed before its record is written
        files: dict = {}  # the record's fields of the formats built (`keras`, `litert`, `formats`)
        for fmt in d.formats:
            if fmt.name in d.built:
                files |= fmt.record_fields(files, d.built[fmt.name])
        record = BuildRecord(
            artifact=name, variant=variant.name, kind=kind, family=variant.family.name, version=variant.version,
            hubpub_version=__version__, input_convention=input_convention, random_weights=port.random_weights,
            checkpoint=CheckpointInfo(str(source), fetched.sha256, port.layout, port.file_format),
            parameters=d.parameters,
            parity=ParityInfo(parity_status, runs[0].tolerance if runs else None,
                              max((r.max_abs for r in runs), default=None), tuple(r.to_dict() for r in runs)),
            round_trip=RoundTrip(tolerance=tolerances.ROUND_TRIP, **d.round_trip),
            tarball=Tarball(dist.relative(packed.path), packed.sha256, packed.size, tuple(packed.members)),
            saved_model=dist.relative(exported.path),
            output=Output(exported.output_name, exported.output_dim),
            signatures={s.name: {"inputs": s.inputs, "outputs": s.outputs} for s in exported.signatures},
            timings={**timings.seconds, **kt.seconds}, peak_rss_mb={**timings.peak_rss_mb, **kt.peak_rss_mb},
            reference=d.reference, preprocess_gap=gap,
            # build-all's key, whichever command built it: `hubpub build` then `build-all` rebuilds nothing
            inputs_key=inputs_key(variant, kind, fetched.sha256, input_convention, parity, formats), **files)
        write_record(dist.report(name), record)
        records.append(record)
    return records


def _format_job(variant: Variant, dist: Dist, kind: str, d: _KindBuild, images: np.ndarray, random_weights: bool,
                prepared=None):
    from hubpub.formats import FormatJob

    return FormatJob(artifact_name(variant.name, kind), d.exported.path, dist, images, d.expected, d.parameters,
                     variant, random_weights, prepared, dict(d.built))


def _wanted_formats(names: tuple[str, ...], job) -> tuple:
    """The formats named (`hubpub.formats`) that are built for this artifact, in registry order; one left
    out for it (too large, or not wanted by the manifest) is said in the log."""
    from hubpub.formats import FORMATS

    chosen: list = []
    for fmt in (f for f in FORMATS if f.name in names):
        missing = [need for need in fmt.needs if need not in {c.name for c in chosen}]
        if missing:
            log.info("%s: no %s file: it is made from the %s file%s, which this build leaves out", job.artifact,
                     fmt.title, ", ".join(missing), "s" if len(missing) > 1 else "")
        elif why := fmt.wanted(job):
            log.info("%s: no %s file: %s", job.artifact, fmt.title, why)
        else:
            chosen.append(fmt)
    return tuple(chosen)


def _pack_checked(saved_model: Path, tarball: Path):
    from hubpub.package import check_tarball, pack

    packed = pack(saved_model, tarball)
    check_tarball(packed.path)
    return packed

def default_parity_sizes(variant: Variant) -> list[tuple[int, int]]:
    """The native resolution, and a non-square size that is a multiple of the stem stride."""
    r = variant.resolution
    return [(r, r), (r + 32, r + 96)]
