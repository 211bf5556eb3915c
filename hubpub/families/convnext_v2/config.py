"""ConvNeXt V2's architecture settings and official checkpoint shapes: ConvNeXt's hierarchical layout
with Global Response Normalization in every block and no layer scale."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from hubpub.families.convnext.config import (
    _SHORT,
    HierarchicalBase,
    block_shapes,
    hierarchical_shapes,
    infer_hierarchical,
)


class ConvNeXtV2(HierarchicalBase):
    """ConvNeXt's hierarchical model; each block has a GRN after its GELU and no layer scale."""

    family: Literal["convnext_v2"]

    def describe(self) -> str:
        return f"ConvNeXt V2 depths {list(self.depths)} dims {list(self.dims)}"

    def display_name(self, key: str) -> str:
        """`tiny` (or `v2_tiny`, beside ConvNeXt's own `tiny`) -> ConvNeXt V2-T."""
        size = key.removeprefix("v2_")
        return f"ConvNeXt V2-{_SHORT.get(size, size)}"

    def doc_summary(self, key: str) -> str:
        return (f"{self.display_name(key)} (with Global Response Normalization): depths "
                f"{', '.join(map(str, self.depths))}, widths {', '.join(map(str, self.dims))}")

    def official_shapes(self, num_classes: int) -> dict[str, tuple[int, ...]]:
        return hierarchical_shapes(self.depths, self.dims, num_classes, _block)


def _block(prefix: str, c: int) -> dict[str, tuple[int, ...]]:
    return block_shapes(prefix, c, gamma=False) | {f"{prefix}.grn.gamma": (1, 1, 1, 4 * c),
                                                   f"{prefix}.grn.beta": (1, 1, 1, 4 * c)}


def infer(shapes: Mapping[str, tuple[int, ...]]) -> str:
    found = infer_hierarchical(shapes).removeprefix("hierarchical ")
    if not any(".grn." in k for k in shapes):
        return f"ConvNeXt (V1, no GRN) {found}"
    return f"ConvNeXt V2 {found}"
