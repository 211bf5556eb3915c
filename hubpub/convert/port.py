"""Port a checkpoint into a Keras model by name, strictly.

Every checkpoint tensor is used exactly once (or dropped by an explicit head rule), every Keras
weight is filled once, and shapes agree; otherwise one error lists what is missing, unexpected
and mismatched. Tensors are loaded, transformed and assigned one at a time.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from hubpub.convert.readers import Checkpoint
from hubpub.convert.rules import apply_transform, rules_for, timm_to_official, transformed_shape
from hubpub.convert.synthetic import RANDOM_WEIGHTS_KEY
from hubpub.errors import CheckpointError
from hubpub.manifest import Hierarchical, Isotropic

LAYOUTS = ("official", "official-isotropic", "timm")


@dataclass(frozen=True)
class PortReport:
    layout: str
    file_format: str
    assigned: int
    dropped: tuple[str, ...]
    parameters: int
    weight_bytes: int
    random_weights: bool = False  # the checkpoint says so in its metadata (the demo's)


@dataclass
class _Plan:
    moves: list[tuple[str, str, str]] = field(default_factory=list)  # (ckpt key, keras weight, transform)
    dropped: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)


def detect_layout(keys) -> str:
    """Which naming scheme a checkpoint uses, from its keys alone."""
    keys = set(keys)
    if "downsample_layers.0.0.weight" in keys:
        return "official"
    if "stem.weight" in keys and any(k.startswith("blocks.") for k in keys):
        return "official-isotropic"
    if "stem.0.weight" in keys or any(k.startswith("stages.0.blocks.") for k in keys):
        return "timm"
    sample = ", ".join(sorted(keys)[:4])
    raise CheckpointError(f"unrecognised checkpoint layout (not official ConvNeXt nor timm); keys: {sample}, ...")


def infer_architecture(shapes: Mapping[str, tuple[int, ...]]) -> dict:
    """Depths and dims of an official-named checkpoint, for a readable wrong-architecture error."""
    if "stem.weight" in shapes:
        depth = 1 + max((int(m.group(1)) for k in shapes if (m := re.match(r"blocks\.(\d+)\.", k))),
                        default=-1)
        return {"family": "isotropic", "depth": depth, "dim": shapes["stem.weight"][0]}
    depths, dims = [], []
    for s in range(4):
        blocks = {int(m.group(1)) for k in shapes if (m := re.match(rf"stages\.{s}\.(\d+)\.", k))}
        depths.append(max(blocks) + 1 if blocks else 0)
        dw = [v for k, v in shapes.items() if re.fullmatch(rf"stages\.{s}\.\d+\.dwconv\.weight", k)]
        dims.append(dw[0][0] if dw else 0)
    return {"family": "hierarchical", "depths": depths, "dims": dims}


def _describe(arch: Hierarchical | Isotropic | dict) -> str:
    a = arch if isinstance(arch, dict) else arch.model_dump()
    if a["family"] == "isotropic":
        return f"isotropic depth {a['depth']} dim {a['dim']}"
    return f"hierarchical depths {list(a['depths'])} dims {list(a['dims'])}"


def port_weights(model, checkpoint: Checkpoint, arch: Hierarchical | Isotropic, *, classifier: bool,
                 label: str = "") -> PortReport:
    """Assign every weight of `model` from `checkpoint`; raise `CheckpointError` on any misfit."""
    where = f"{checkpoint.path}" + (f" -> {label}" if label else "")
    layout = detect_layout(checkpoint.keys())
    official = {(timm_to_official(k) if layout == "timm" else k) or k: k for k in checkpoint}
    shapes = {name: checkpoint.shape(key) for name, key in official.items()}

    found = infer_architecture(shapes)
    if _describe(found) != _describe(arch):
        # A whole-architecture mismatch would drown in hundreds of key errors; name it once.
        raise CheckpointError(
            f"{where}: checkpoint is {_describe(found)}, but the variant's architecture is {_describe(arch)}")

    weights = {f"{layer.name}/{w.name}": w for layer in model.layers for w in layer.weights}
    plan = _plan(official, shapes, weights, arch, classifier)
    problems = []
    for title, items in (("missing", plan.missing), ("unexpected", plan.unexpected),
                         ("shape mismatch", plan.mismatched)):
        if items:
            shown = ", ".join(items[:8]) + (f", ... ({len(items) - 8} more)" if len(items) > 8 else "")
            problems.append(f"{len(items)} {title}: {shown}")
    if problems:
        raise CheckpointError(f"{where}: checkpoint does not fit the model: " + "; ".join(problems))

    nbytes = 0
    for name, target, transform in plan.moves:
        array = apply_transform(transform, checkpoint[official[name]])
        weights[target].assign(array)
        nbytes += array.nbytes
        del array  # one tensor in flight at a time
        checkpoint.release(official[name])
    return PortReport(layout=layout, file_format=checkpoint.file_format, assigned=len(plan.moves),
                      dropped=tuple(plan.dropped), parameters=sum(int(np.prod(w.shape)) for w in weights.values()),
                      weight_bytes=nbytes, random_weights=checkpoint.metadata.get(RANDOM_WEIGHTS_KEY) == "true")


def _plan(official: dict[str, str], shapes: dict[str, tuple], weights: dict, arch, classifier: bool) -> _Plan:
    plan = _Plan()
    filled: dict[str, str] = {}
    rules = rules_for(arch)
    for name in sorted(official):
        matches = [(r, t) for r in rules if (t := r.match(name)) is not None]
        if not matches:
            plan.unexpected.append(official[name])
            continue
        rule, target = matches[0]
        if rule.head and not classifier:
            plan.dropped.append(official[name])
            continue
        if target not in weights:
            plan.unexpected.append(official[name])
            continue
        if target in filled:
            plan.unexpected.append(f"{official[name]} (duplicate of {filled[target]})")
            continue
        filled[target] = official[name]
        want = tuple(weights[target].shape)
        got = transformed_shape(rule.transform, shapes[name])
        if got != want:
            plan.mismatched.append(f"{official[name]} {list(shapes[name])} -> {target} expects {list(want)}")
            continue
        plan.moves.append((name, target, rule.transform))
    plan.missing = sorted(set(weights) - set(filled))
    return plan


def official_tensors(checkpoint: Checkpoint):
    """Yield (official name, array) for every tensor, whatever the checkpoint's layout."""
    layout = detect_layout(checkpoint.keys())
    for key in checkpoint:
        yield (timm_to_official(key) or key) if layout == "timm" else key, checkpoint[key]
