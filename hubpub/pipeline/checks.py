"""Parity on demand: the ported model against the PyTorch reference at chosen sizes (`hubpub verify-parity`)."""

from __future__ import annotations

import gc
import logging
from pathlib import Path

from hubpub.manifest import Variant
from hubpub.pipeline.build import _reference, build_ported, default_parity_sizes

log = logging.getLogger(__name__)


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




# --------------------------------------------------------------------------- build-all
