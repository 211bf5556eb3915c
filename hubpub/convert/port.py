"""Port a checkpoint into a Keras model by name, strictly.

Every checkpoint tensor is used exactly once (or dropped by an explicit head rule), every Keras
weight is filled once, and shapes agree; otherwise one error lists what is missing, unexpected
and mismatched. Tensors are loaded, transformed and assigned one at a time.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from hubpub.convert.readers import Checkpoint
from hubpub.convert.rules import apply_transform, transformed_shape
from hubpub.convert.synthetic import RANDOM_WEIGHTS_KEY
from hubpub.errors import CheckpointError
from hubpub.families.base import ArchConfig, Converter


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


def port_weights(model, checkpoint: Checkpoint, converter: Converter, arch: ArchConfig, *, classifier: bool,
                 label: str = "") -> PortReport:
    """Assign every weight of `model` from `checkpoint`; raise `CheckpointError` on any misfit."""
    where = f"{checkpoint.path}" + (f" -> {label}" if label else "")
    checkpoint = converter.join(checkpoint)
    try:
        layout, names = converter.to_official(checkpoint.keys())
    except CheckpointError as e:
        raise CheckpointError(f"{where}: {e}") from None
    official = {name: key for key, name in names.items()}
    shapes = {name: checkpoint.shape(key) for name, key in official.items()}

    found = converter.infer(shapes)
    if found != arch.describe():
        # A whole-architecture mismatch would drown in hundreds of key errors; name it once.
        raise CheckpointError(f"{where}: checkpoint is {found}, but the variant's architecture is {arch.describe()}")

    weights = {f"{layer.name}/{w.name}": w for layer in model.layers for w in layer.weights}
    plan = _plan(official, shapes, weights, converter.rules(arch), classifier)
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


def _plan(official: dict[str, str], shapes: dict[str, tuple], weights: dict, rules, classifier: bool) -> _Plan:
    plan = _Plan()
    filled: dict[str, str] = {}
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


def official_tensors(checkpoint: Checkpoint, converter: Converter):
    """Yield (official name, array) for every tensor, whatever the checkpoint's layout."""
    checkpoint = converter.join(checkpoint)
    _, names = converter.to_official(checkpoint.keys())
    for key in checkpoint:
        yield names[key], checkpoint[key]


def unported(model, source) -> PortReport:
    """The report for a model that came with its weights (a family without a converter)."""
    return PortReport(layout="model file", file_format=str(source).rsplit(".", 1)[-1], assigned=0, dropped=(),
                      parameters=int(model.count_params()), weight_bytes=0)
