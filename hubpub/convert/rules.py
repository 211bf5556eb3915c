"""Declarative key rules: timm names -> official names, and official names -> Keras weights.

A pattern uses `{s}`, `{b}`, `{i}` for integer fields; a target reuses them. Rules are matched by
name only; nothing depends on the order of parameters in a file.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

import numpy as np

from hubpub.manifest import Hierarchical, Isotropic

# How a PyTorch tensor becomes a Keras weight. Explicit axis orders: a bare `.transpose()`
# reverses all axes and silently swaps H and W of square kernels (a bug the original port shipped).
TRANSFORMS: dict[str, tuple[int, ...] | None] = {
    "copy": None,
    "conv": (2, 3, 1, 0),       # (O, I, H, W) -> (H, W, I, O)
    "depthwise": (2, 3, 0, 1),  # (C, 1, H, W) -> (H, W, C, 1)
    "linear": (1, 0),           # (out, in) -> (in, out)
}


def apply_transform(name: str, array: np.ndarray) -> np.ndarray:
    axes = TRANSFORMS[name]
    return array if axes is None else np.transpose(array, axes)


def transformed_shape(name: str, shape: tuple[int, ...]) -> tuple[int, ...]:
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


def _block_rules(src: str, dst: str) -> list[Rule]:
    return [
        Rule(f"{src}.dwconv.weight", f"{dst}_dwconv/kernel", "depthwise"),
        Rule(f"{src}.dwconv.bias", f"{dst}_dwconv/bias"),
        Rule(f"{src}.norm.weight", f"{dst}_norm/gamma"),
        Rule(f"{src}.norm.bias", f"{dst}_norm/beta"),
        Rule(f"{src}.pwconv1.weight", f"{dst}_pwconv1/kernel", "linear"),
        Rule(f"{src}.pwconv1.bias", f"{dst}_pwconv1/bias"),
        Rule(f"{src}.pwconv2.weight", f"{dst}_pwconv2/kernel", "linear"),
        Rule(f"{src}.pwconv2.bias", f"{dst}_pwconv2/bias"),
        Rule(f"{src}.gamma", f"{dst}_layer_scale/gamma"),
    ]


_HEAD_RULES = [
    Rule("norm.weight", "head_norm/gamma"),
    Rule("norm.bias", "head_norm/beta"),
    Rule("head.weight", "head_fc/kernel", "linear", head=True),
    Rule("head.bias", "head_fc/bias", head=True),
]

HIERARCHICAL_RULES: tuple[Rule, ...] = (
    Rule("downsample_layers.0.0.weight", "stem_conv/kernel", "conv"),
    Rule("downsample_layers.0.0.bias", "stem_conv/bias"),
    Rule("downsample_layers.0.1.weight", "stem_norm/gamma"),
    Rule("downsample_layers.0.1.bias", "stem_norm/beta"),
    Rule("downsample_layers.{s}.0.weight", "stage_{s}_downsample_norm/gamma"),
    Rule("downsample_layers.{s}.0.bias", "stage_{s}_downsample_norm/beta"),
    Rule("downsample_layers.{s}.1.weight", "stage_{s}_downsample_conv/kernel", "conv"),
    Rule("downsample_layers.{s}.1.bias", "stage_{s}_downsample_conv/bias"),
    *_block_rules("stages.{s}.{b}", "stage_{s}_block_{b}"),
    *_HEAD_RULES,
)

ISOTROPIC_RULES: tuple[Rule, ...] = (
    Rule("stem.weight", "stem_conv/kernel", "conv"),
    Rule("stem.bias", "stem_conv/bias"),
    *_block_rules("blocks.{i}", "block_{i}"),
    *_HEAD_RULES,
)


def rules_for(arch: Hierarchical | Isotropic) -> tuple[Rule, ...]:
    return HIERARCHICAL_RULES if isinstance(arch, Hierarchical) else ISOTROPIC_RULES


# timm prefix <-> official prefix; the rest of the key is unchanged.
TIMM_NAMES: tuple[tuple[str, str], ...] = (
    ("stem.0.", "downsample_layers.0.0."),
    ("stem.1.", "downsample_layers.0.1."),
    ("stages.{s}.downsample.0.", "downsample_layers.{s}.0."),
    ("stages.{s}.downsample.1.", "downsample_layers.{s}.1."),
    ("stages.{s}.blocks.{b}.conv_dw.", "stages.{s}.{b}.dwconv."),
    ("stages.{s}.blocks.{b}.norm.", "stages.{s}.{b}.norm."),
    ("stages.{s}.blocks.{b}.mlp.fc1.", "stages.{s}.{b}.pwconv1."),
    ("stages.{s}.blocks.{b}.mlp.fc2.", "stages.{s}.{b}.pwconv2."),
    ("stages.{s}.blocks.{b}.gamma", "stages.{s}.{b}.gamma"),
    ("head.norm.", "norm."),
    ("head.fc.", "head."),
)


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


def timm_to_official(key: str) -> str | None:
    return rename(key, TIMM_NAMES)


def official_to_timm(key: str) -> str | None:
    return rename(key, TIMM_NAMES, reverse=True)
