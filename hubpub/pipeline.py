"""The stages composed: fetch -> build -> port -> parity (-> export -> pack -> docs -> publish).

Each function here only sequences library stages; the work is done in the stage modules.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from hubpub.manifest import KINDS, Variant, artifact_name

log = logging.getLogger(__name__)


@dataclass
class Timings:
    seconds: dict[str, float] = field(default_factory=dict)

    def stage(self, name: str):
        timings = self

        class _Timer:
            def __enter__(self):
                self.t = time.perf_counter()

            def __exit__(self, *exc):
                timings.seconds[name] = round(time.perf_counter() - self.t, 3)

        return _Timer()


def build_ported(variant: Variant, checkpoint_path: Path, *, kind: str, input_convention: str = "hub"):
    """Build the Keras model for one artifact and port the checkpoint into it by name."""
    from hubpub.convert import RANDOM_WEIGHTS_KEY, port_weights, read_checkpoint
    from hubpub.models import build_model

    classifier = kind == "classifier"
    model = build_model(variant.architecture, num_classes=variant.num_classes if classifier else None,
                        input_convention=input_convention, name=artifact_name(variant.name, kind))
    with read_checkpoint(checkpoint_path) as ckpt:
        report = port_weights(model, ckpt, variant.architecture, classifier=classifier, label=variant.name)
        random_weights = ckpt.metadata.get(RANDOM_WEIGHTS_KEY) == "true"
    model.random_weights = random_weights  # provenance travels with the model to the report
    return model, report


def feature_extractor_of(classifier):
    """The feature extractor sharing the classifier's weights: same graph, cut before the head."""
    import keras

    name = classifier.name + "_fe"
    fe = keras.Model(classifier.input, classifier.get_layer("head_norm").output, name=name)
    fe.random_weights = getattr(classifier, "random_weights", False)
    return fe


def torch_available() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def build_variant(variant: Variant, out: Path, *, checkpoint: str | None = None,
                  kinds: tuple[str, ...] = KINDS, input_convention: str = "hub", parity: bool = True,
                  on_stage=lambda artifact, stage: None) -> list[dict]:
    """fetch -> build -> port -> parity -> export -> round-trip -> pack, for each kind of a variant.

    Writes `saved_models/<artifact>/`, `tars/<artifact>.tar.gz(.sha256)` and `reports/<artifact>.json`
    under `out`, and returns the reports.
    """
    from hubpub import __version__
    from hubpub.convert import official_tensors, read_checkpoint
    from hubpub.export import export_saved_model, round_trip
    from hubpub.fetch import fetch
    from hubpub.labels import labels_path
    from hubpub.package import check_tarball, pack
    from hubpub.parity import check_parity, reference_images
    from hubpub.verify import reference_record

    timings = Timings()
    source = checkpoint or variant.checkpoint_url
    on_stage(variant.name, "fetch")
    with timings.stage("fetch"):
        fetched = fetch(source, sha256=variant.checkpoint_sha256 if checkpoint is None else None)
    on_stage(variant.name, "port")
    with timings.stage("build+port"):
        first = "classifier" if "classifier" in kinds else "feature-extractor"
        base, port = build_ported(variant, fetched.path, kind=first, input_convention=input_convention)
    models = {first: base}
    if "feature-extractor" in kinds and first == "classifier":
        models["feature-extractor"] = feature_extractor_of(base)

    parity_runs: dict[str, list] = {k: [] for k in models}
    if parity and torch_available():
        on_stage(variant.name, "parity")
        from hubpub.reference import load_reference

        with timings.stage("parity"):
            with read_checkpoint(fetched.path) as ckpt:
                reference = load_reference(variant.architecture, variant.num_classes, official_tensors(ckpt))
            for kind, model in models.items():
                for h, w in default_parity_sizes(variant):
                    report = check_parity(model, reference, variant.architecture, reference_images(h, w, batch=1),
                                          classifier=kind == "classifier", input_convention=input_convention)
                    parity_runs[kind].append(report.to_dict())
            del reference
            gc.collect()

    reports = []
    for kind, model in models.items():
        name = artifact_name(variant.name, kind)
        kt = Timings()
        on_stage(name, "export")
        with kt.stage("export"):
            exported = export_saved_model(
                model, out / "saved_models" / name, kind=kind, resolution=variant.resolution, ev=variant.eval,
                labels=labels_path(variant.dataset) if kind == "classifier" else None)
        on_stage(name, "round-trip")
        with kt.stage("round_trip"):
            rt = round_trip(model, exported.path, reference_images(variant.resolution, variant.resolution, 2, seed=1),
                            kind=kind)
        on_stage(name, "pack")
        with kt.stage("pack"):
            packed = pack(exported.path, out / "tars" / f"{name}.tar.gz")
            check_tarball(packed.path)
        record = reference_record(model, variant.resolution, variant.resolution)
        runs = parity_runs.get(kind, [])
        report = {
            "artifact": name, "variant": variant.name, "kind": kind, "version": variant.version,
            "hubpub_version": __version__, "input_convention": input_convention,
            "random_weights": bool(getattr(model, "random_weights", False)),
            "checkpoint": {"source": str(source), "sha256": fetched.sha256, "layout": port.layout,
                           "format": port.file_format},
            "parameters": int(model.count_params()),
            "parity": {"status": "passed" if runs else "skipped (torch not installed)" if parity else "skipped",
                       "tolerance": runs[0]["tolerance"] if runs else None,
                       "max_abs": max((r["max_abs"] for r in runs), default=None), "runs": runs},
            "round_trip": {"tolerance": 1e-5, **rt},
            "tarball": {"path": f"tars/{name}.tar.gz", "sha256": packed.sha256, "size": packed.size,
                        "members": list(packed.members)},
            "saved_model": f"saved_models/{name}",
            "output": {"name": exported.output_name, "dim": exported.output_dim},
            "signatures": {s.name: {"inputs": s.inputs, "outputs": s.outputs} for s in exported.signatures},
            "timings": {**timings.seconds, **kt.seconds},
            "reference": record,
        }
        write_json(out / "reports" / f"{name}.json", report)
        reports.append(report)
    del models, base
    gc.collect()
    return reports


def parity_for_variant(variant: Variant, checkpoint_path: Path, *, sizes: list[tuple[int, int]] | None = None,
                       kinds: tuple[str, ...] = ("classifier", "feature-extractor"),
                       input_convention: str = "hub", batch: int = 2) -> dict:
    """Parity of each kind against the reference, at each size (default: native and non-square)."""
    from hubpub.convert import official_tensors, read_checkpoint
    from hubpub.parity import check_parity, reference_images
    from hubpub.reference import load_reference

    sizes = sizes or default_parity_sizes(variant)
    out: dict = {}
    reference = None
    for kind in kinds:
        # Porting first: its errors name the misfit keys; the reference would only fail later.
        model, port = build_ported(variant, checkpoint_path, kind=kind, input_convention=input_convention)
        if reference is None:
            with read_checkpoint(checkpoint_path) as ckpt:
                reference = load_reference(variant.architecture, variant.num_classes, official_tensors(ckpt))
        runs = []
        for h, w in sizes:
            images = reference_images(h, w, batch=batch)
            runs.append(check_parity(model, reference, variant.architecture, images,
                                     classifier=kind == "classifier", input_convention=input_convention,
                                     raise_on_failure=False).to_dict())
        out[kind] = {"port": {"layout": port.layout, "format": port.file_format, "assigned": port.assigned,
                              "dropped": list(port.dropped), "parameters": port.parameters},
                     "runs": runs, "passed": all(r["passed"] for r in runs),
                     "max_abs": max(r["max_abs"] for r in runs)}
        del model
        gc.collect()
    return out


def default_parity_sizes(variant: Variant) -> list[tuple[int, int]]:
    """The native resolution, and a non-square size that is a multiple of the stem stride."""
    r = variant.resolution
    return [(r, r), (r + 32, r + 96)]


def write_json(path: Path, data: dict) -> Path:
    """Write JSON atomically: a temp file in the same directory, then rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)
    return path
