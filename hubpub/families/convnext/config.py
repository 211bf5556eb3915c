"""ConvNeXt's architecture settings, and the official checkpoint's shapes declared once from them."""

from __future__ import annotations

import re
from abc import abstractmethod
from collections import Counter
from collections.abc import Mapping
from typing import Annotated, Literal

from pydantic import Field

from hubpub.families.base import ArchConfig, shapes_parameter_count

PositiveInts4 = Annotated[list[Annotated[int, Field(gt=0)]], Field(min_length=4, max_length=4)]
_SHORT = {"atto": "A", "femto": "F", "pico": "P", "nano": "N", "tiny": "T", "small": "S", "base": "B",
          "large": "L", "xlarge": "XL", "huge": "H"}


class ConvNeXtBase(ArchConfig):
    """What every ConvNeXt-style model shares: pooled features through `head_norm`, counts from the shapes."""

    layer_norm_eps: float = Field(default=1e-6, gt=0)

    @property
    def feature_layer(self) -> str:
        return "head_norm"

    @property
    def min_input_size(self) -> int:
        return 32  # stem 4, then three 2x2 downsamplings

    @abstractmethod
    def official_shapes(self, num_classes: int) -> dict[str, tuple[int, ...]]:
        """Every key of the official state_dict with its shape, in the official order: the one declaration."""

    def parameter_count(self, num_classes: int) -> int:
        return shapes_parameter_count(self.official_shapes(num_classes))

    def display_name(self, key: str) -> str:
        return f"ConvNeXt-{_SHORT.get(key, key)}"


class HierarchicalBase(ConvNeXtBase):
    """Four stages of blocks, a 4x4 patchify stem and 2x2 downsampling between stages."""

    depths: PositiveInts4
    dims: PositiveInts4

    @property
    def feature_dim(self) -> int:
        return self.dims[-1]

    def describe(self) -> str:
        return f"hierarchical depths {list(self.depths)} dims {list(self.dims)}"

    def macs(self, resolution: int, num_classes: int) -> int:
        """Convolutions and linear layers (norms, GELU and GRN are a rounding error): a 4x4 stem, per
        block a 7x7 depthwise conv and the 4x MLP, 2x2 downsamplings, the head."""
        side = resolution // 4
        total = side * side * 3 * 16 * self.dims[0]
        for i, (depth, c) in enumerate(zip(self.depths, self.dims, strict=True)):
            if i:
                side //= 2
                total += side * side * 4 * self.dims[i - 1] * c
            total += depth * side * side * (49 * c + 8 * c * c)
        return total + self.dims[-1] * num_classes

    def doc_summary(self, key: str) -> str:
        return (f"hierarchical {self.display_name(key)}: depths {', '.join(map(str, self.depths))}, "
                f"widths {', '.join(map(str, self.dims))}")


class Hierarchical(HierarchicalBase):
    family: Literal["convnext"]
    style: Literal["hierarchical"] = "hierarchical"
    layer_scale_init: float = Field(default=1e-6, ge=0, description="0: no layer scale (no gamma)")

    def official_shapes(self, num_classes: int) -> dict[str, tuple[int, ...]]:
        return hierarchical_shapes(self.depths, self.dims, num_classes,
                                   lambda prefix, c: block_shapes(prefix, c, gamma=self.layer_scale_init > 0))


class Isotropic(ConvNeXtBase):
    """One sequence of blocks at a single resolution after a patchify stem (no LayerNorm after it)."""

    family: Literal["convnext"]
    style: Literal["isotropic"]
    depth: int = Field(gt=0)
    dim: int = Field(gt=0)
    patch_size: int = Field(default=16, gt=0)
    layer_scale_init: float = Field(default=0.0, ge=0, description="0 means no layer scale (no gamma)")

    @property
    def feature_dim(self) -> int:
        return self.dim

    @property
    def min_input_size(self) -> int:
        return self.patch_size

    def describe(self) -> str:
        return f"isotropic depth {self.depth} dim {self.dim}"

    def macs(self, resolution: int, num_classes: int) -> int:
        c, side = self.dim, resolution // self.patch_size
        return (side * side * 3 * self.patch_size ** 2 * c + self.depth * side * side * (49 * c + 8 * c * c)
                + c * num_classes)

    def display_name(self, key: str) -> str:
        return f"isotropic {super().display_name(key.removeprefix('iso_'))}"

    def doc_summary(self, key: str) -> str:
        return (f"{self.display_name(key)}: {self.depth} blocks of width {self.dim}, "
                f"{self.patch_size}x{self.patch_size} patch stem")

    def official_shapes(self, num_classes: int) -> dict[str, tuple[int, ...]]:
        c, p = self.dim, self.patch_size
        shapes = {"stem.weight": (c, 3, p, p), "stem.bias": (c,)}
        for i in range(self.depth):
            shapes.update(block_shapes(f"blocks.{i}", c, gamma=self.layer_scale_init > 0))
        return shapes | head_shapes(c, num_classes)


ConvNeXtConfig = Hierarchical | Isotropic


def parse(data: dict) -> ConvNeXtConfig:
    """`style: isotropic` picks the isotropic model; anything else is hierarchical."""
    return (Isotropic if data.get("style") == "isotropic" else Hierarchical).model_validate(data)


def block_shapes(prefix: str, c: int, *, gamma: bool) -> dict[str, tuple[int, ...]]:
    """One block: dwconv 7x7 -> LayerNorm -> Linear(4C) -> GELU -> Linear(C) [-> gamma]."""
    shapes = {
        f"{prefix}.dwconv.weight": (c, 1, 7, 7), f"{prefix}.dwconv.bias": (c,),
        f"{prefix}.norm.weight": (c,), f"{prefix}.norm.bias": (c,),
        f"{prefix}.pwconv1.weight": (4 * c, c), f"{prefix}.pwconv1.bias": (4 * c,),
        f"{prefix}.pwconv2.weight": (c, 4 * c), f"{prefix}.pwconv2.bias": (c,),
    }
    if gamma:
        shapes[f"{prefix}.gamma"] = (c,)
    return shapes


def hierarchical_shapes(depths, dims, num_classes: int, block) -> dict[str, tuple[int, ...]]:
    """Stem, downsampling layers, `block(prefix, c)` per block, head: the official hierarchical layout."""
    d = dims
    shapes = {"downsample_layers.0.0.weight": (d[0], 3, 4, 4), "downsample_layers.0.0.bias": (d[0],),
              "downsample_layers.0.1.weight": (d[0],), "downsample_layers.0.1.bias": (d[0],)}
    for i in range(1, 4):
        shapes[f"downsample_layers.{i}.0.weight"] = (d[i - 1],)
        shapes[f"downsample_layers.{i}.0.bias"] = (d[i - 1],)
        shapes[f"downsample_layers.{i}.1.weight"] = (d[i], d[i - 1], 2, 2)
        shapes[f"downsample_layers.{i}.1.bias"] = (d[i],)
    for s, depth in enumerate(depths):
        for b in range(depth):
            shapes.update(block(f"stages.{s}.{b}", d[s]))
    return shapes | head_shapes(d[-1], num_classes)


def head_shapes(c: int, num_classes: int) -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {"norm.weight": (c,), "norm.bias": (c,)}
    if num_classes:
        shapes |= {"head.weight": (num_classes, c), "head.bias": (num_classes,)}
    return shapes


def official_shapes(arch: ConvNeXtBase, num_classes: int) -> dict[str, tuple[int, ...]]:
    """Every key of the official state_dict with its shape, in the official order."""
    return arch.official_shapes(num_classes)


def infer(shapes: Mapping[str, tuple[int, ...]]) -> str:
    """The architecture an official-named checkpoint holds, in `describe()` words."""
    if "stem.weight" in shapes:
        depth = 1 + max((int(m.group(1)) for k in shapes if (m := re.match(r"blocks\.(\d+)\.", k))), default=-1)
        return f"isotropic depth {depth} dim {shapes['stem.weight'][0]}"
    return infer_hierarchical(shapes)


# Per block, the tensors whose shape says the stage's width C, and in which dimension.
_WIDTH_OF = {"dwconv.weight": 0, "dwconv.bias": 0, "norm.weight": 0, "norm.bias": 0, "pwconv1.weight": 1,
             "pwconv2.weight": 0, "pwconv2.bias": 0, "gamma": 0}


def infer_hierarchical(shapes: Mapping[str, tuple[int, ...]]) -> str:
    """Depths from the block indices; each stage's width from what most of its tensors say, so one tensor
    of a wrong shape is named by the strict port, not blamed on the whole architecture."""
    depths, dims = [], []
    for s in range(4):
        blocks = {int(m.group(1)) for k in shapes if (m := re.match(rf"stages\.{s}\.(\d+)\.", k))}
        depths.append(max(blocks) + 1 if blocks else 0)
        votes: Counter[int] = Counter()
        for key, shape in shapes.items():
            m = re.fullmatch(rf"stages\.{s}\.\d+\.(.+)", key)
            if m and m.group(1) in _WIDTH_OF and len(shape) > _WIDTH_OF[m.group(1)]:
                votes[shape[_WIDTH_OF[m.group(1)]]] += 1
        dims.append(votes.most_common(1)[0][0] if votes else 0)
    return f"hierarchical depths {depths} dims {dims}"
