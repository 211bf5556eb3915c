"""ConvNeXt V2's checkpoint names: ConvNeXt's, plus each block's GRN."""

from __future__ import annotations

from collections.abc import Iterable

from hubpub.convert.rules import Rule
from hubpub.errors import CheckpointError
from hubpub.families.convnext.rules import HIERARCHICAL_RULES

RULES: tuple[Rule, ...] = (
    *HIERARCHICAL_RULES,
    Rule("stages.{s}.{b}.grn.gamma", "stage_{s}_block_{b}_grn/gamma", "squeeze"),  # (1, 1, 1, 4C) -> (4C,)
    Rule("stages.{s}.{b}.grn.beta", "stage_{s}_block_{b}_grn/beta", "squeeze"),
)


def rules_for(arch) -> tuple[Rule, ...]:
    return RULES


def to_official(keys: Iterable[str]) -> tuple[str, dict[str, str]]:
    """Only the official layout: timm renames GRN and, for atto..nano, stores the MLP as 1x1 convs."""
    keys = set(keys)
    if "downsample_layers.0.0.weight" in keys:
        return "official", {k: k for k in keys}
    sample = ", ".join(sorted(keys)[:4])
    hint = " (timm's layout is not supported: use the official checkpoint)" if "stem.0.weight" in keys else ""
    raise CheckpointError(f"unrecognised checkpoint layout (not official ConvNeXt V2){hint}; keys: {sample}, ...")
