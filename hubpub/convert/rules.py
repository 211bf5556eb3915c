"""Declarative key rules, the machinery: a checkpoint key pattern -> a Keras weight, and prefix renames.

A pattern uses `{s}`, `{b}`, `{i}` for integer fields; a target reuses them. Rules are matched by
name only; nothing depends on the order of parameters in a file. Each family states its own rules.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

import numpy as np

# How a PyTorch tensor becomes a Keras weight. Explicit axis orders: a bare `.transpose()`
# reverses all axes and silently swaps H and W of square kernels (a bug the original port shipped).
TRANSFORMS: dict[str, tuple[int, ...] | None] = {
    "copy": None,
    "conv": (2, 3, 1, 0),       # (O, I, H, W) -> (H, W, I, O)
    "depthwise": (2, 3, 0, 1),  # (C, 1, H, W) -> (H, W, C, 1)
    "linear": (1, 0),           # (out, in) -> (in, out)
    "squeeze": None,            # (1, ..., 1, C) -> (C,): a broadcastable parameter stored as a vector
    "unbatch": None,            # (1, ...) -> (...): a parameter stored with a leading batch axis of 1
}


def apply_transform(name: str, array: np.ndarray) -> np.ndarray:
    if name == "squeeze":
        return array.reshape(array.shape[-1:])
    if name == "unbatch":
        return array.reshape(array.shape[1:])
    axes = TRANSFORMS[name]
    return array if axes is None else np.transpose(array, axes)


def transformed_shape(name: str, shape: tuple[int, ...]) -> tuple[int, ...]:
    if name == "squeeze":
        return tuple(shape[-1:]) if all(n == 1 for n in shape[:-1]) else shape
    if name == "unbatch":
        return tuple(shape[1:]) if shape[:1] == (1,) else shape
    axes = TRANSFORMS[name]
    if axes is None:
        return shape
    if len(shape) != len(axes):
        return shape  # rank mismatch: reported as a shape mismatch against the Keras weight
    return tuple(shape[a] for a in axes)


@functools.cache
def _compile(template: str, prefix_only: bool = False) -> re.Pattern:
    parts = re.split(r"(\{\w+\})", template)
    regex = "".join(f"(?P<{p[1:-1]}>\\d+)" if p.startswith("{") else re.escape(p) for p in parts)
    return re.compile(regex + ("(?P<rest>.*)" if prefix_only else ""))


@dataclass(frozen=True)
class Rule:
    """Checkpoint key `source` -> Keras weight `target`, through `transform`.

    `head` rules carry the classifier head: a feature extractor drops those tensors on purpose.
    """

    source: str
    target: str
    transform: str = "copy"
    head: bool = False

    def match(self, key: str) -> str | None:
        m = _compile(self.source).fullmatch(key)
        return self.target.format(**m.groupdict()) if m else None


def rename(key: str, table: tuple[tuple[str, str], ...], reverse: bool = False) -> str | None:
    """Rename a key by the first (source, target) prefix pair that matches; None if none does."""
    for src, dst in table:
        if reverse:
            src, dst = dst, src
        m = _compile(src, prefix_only=True).match(key)
        if m:
            fields = m.groupdict()
            rest = fields.pop("rest")
            return dst.format(**fields) + rest
    return None
