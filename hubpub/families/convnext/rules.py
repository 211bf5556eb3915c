"""ConvNeXt's checkpoint names: official keys -> Keras weights, and timm's names -> official ones."""

from __future__ import annotations

from collections.abc import Iterable

from hubpub.convert.rules import Rule, rename
from hubpub.errors import CheckpointError
from hubpub.families.convnext.config import ConvNeXtConfig, Hierarchical


def block_rules(src: str, dst: str) -> list[Rule]:
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


HEAD_RULES = [
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
    *block_rules("stages.{s}.{b}", "stage_{s}_block_{b}"),
    *HEAD_RULES,
)

ISOTROPIC_RULES: tuple[Rule, ...] = (
    Rule("stem.weight", "stem_conv/kernel", "conv"),
    Rule("stem.bias", "stem_conv/bias"),
    *block_rules("blocks.{i}", "block_{i}"),
    *HEAD_RULES,
)


def rules_for(arch: ConvNeXtConfig) -> tuple[Rule, ...]:
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


def to_official(keys: Iterable[str]) -> tuple[str, dict[str, str]]:
    """(layout, {key: official name}) for an official, official isotropic or timm checkpoint."""
    keys = set(keys)
    if "downsample_layers.0.0.weight" in keys:
        return "official", {k: k for k in keys}
    if "stem.weight" in keys and any(k.startswith("blocks.") for k in keys):
        return "official-isotropic", {k: k for k in keys}
    if "stem.0.weight" in keys or any(k.startswith("stages.0.blocks.") for k in keys):
        return "timm", {k: rename(k, TIMM_NAMES) or k for k in keys}
    sample = ", ".join(sorted(keys)[:4])
    raise CheckpointError(f"unrecognised checkpoint layout (not official ConvNeXt nor timm); keys: {sample}, ...")


def to_timm(tensors: dict) -> dict:
    """The same tensors under timm's names (hierarchical only; timm has no isotropic ConvNeXt)."""
    renamed = {}
    for key, value in tensors.items():
        new = rename(key, TIMM_NAMES, reverse=True)
        if new is None:
            raise CheckpointError(f"no timm name for official key {key!r}")
        renamed[new] = value
    return renamed
