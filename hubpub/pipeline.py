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

from hubpub.manifest import Variant

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
    from hubpub.convert import port_weights, read_checkpoint
    from hubpub.models import build_model

    classifier = kind == "classifier"
    model = build_model(variant.architecture, num_classes=variant.num_classes if classifier else None,
                        input_convention=input_convention, name=variant.name)
    with read_checkpoint(checkpoint_path) as ckpt:
        report = port_weights(model, ckpt, variant.architecture, classifier=classifier, label=variant.name)
    return model, report


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
