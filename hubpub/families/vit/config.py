"""The Vision Transformer's architecture settings (ViT, DeiT), and timm's checkpoint shapes declared once
from them."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Literal

from pydantic import Field, model_validator

from hubpub.families.base import ArchConfig, shapes_parameter_count

RGB = Annotated[list[Annotated[float, Field(gt=0, le=1)]], Field(min_length=3, max_length=3)]
RGB_MEAN = Annotated[list[Annotated[float, Field(ge=0, le=1)]], Field(min_length=3, max_length=3)]
DEIT_PAPER = ("[Training data-efficient image transformers & distillation through attention]"
              "(https://arxiv.org/abs/2012.12877) (Touvron et al., ICML 2021)")
_SIZES = {192: "Ti", 384: "S", 768: "B", 1024: "L", 1280: "H"}


class ViT(ArchConfig):
    """A plain Vision Transformer: a patchify stem, prefix tokens, learned position embeddings on a
    `img_size / patch_size` grid (resampled for other input sizes), pre-norm blocks, a pooled head."""

    family: Literal["vit"]
    patch_size: int = Field(default=16, gt=0)
    depth: int = Field(gt=0)
    width: int = Field(gt=0, description="the embedding width (timm's embed_dim)")
    heads: int = Field(gt=0)
    mlp_ratio: float = Field(default=4.0, gt=0)
    img_size: int = Field(default=224, gt=0, description="the size the position embeddings were trained at")
    class_token: bool = True
    distilled: bool = Field(default=False, description="DeiT's distillation token and second head (head_dist)")
    global_pool: Literal["token", "avg"] = "token"
    qkv_bias: bool = True
    layer_norm_eps: float = Field(default=1e-6, gt=0)
    mean: RGB_MEAN | None = Field(default=None, description="input normalisation; default ImageNet's")
    std: RGB | None = None
    recipe: Literal["vit", "deit"] = Field(default="vit", description="whose training the weights are: the docs "
                                           "name the model (ViT-B/16, DeiT-B/16) and the paper after it")

    @model_validator(mode="after")
    def _consistent(self) -> ViT:
        if self.width % self.heads:
            raise ValueError(f"width {self.width} is not a multiple of heads {self.heads}")
        if self.img_size % self.patch_size:
            raise ValueError(f"img_size {self.img_size} is not a multiple of patch_size {self.patch_size}")
        if self.global_pool == "token" and not self.class_token:
            raise ValueError("global_pool: token needs class_token: true")
        if self.distilled and (not self.class_token or self.global_pool != "token"):
            raise ValueError("distilled (a distillation token) needs class_token: true and global_pool: token")
        if (self.mean is None) != (self.std is None):
            raise ValueError("give both mean and std, or neither")
        if int(self.width * self.mlp_ratio) != self.width * self.mlp_ratio:
            raise ValueError(f"width {self.width} x mlp_ratio {self.mlp_ratio} is not a whole number")
        return self

    @property
    def hidden(self) -> int:
        return int(self.width * self.mlp_ratio)

    @property
    def grid(self) -> int:
        return self.img_size // self.patch_size

    @property
    def prefix_tokens(self) -> int:
        return int(self.class_token) + int(self.distilled)

    @property
    def feature_dim(self) -> int:
        return self.width

    @property
    def min_input_size(self) -> int:
        return self.patch_size

    @property
    def feature_layer(self) -> str:
        return "pre_logits"

    @property
    def normalization(self) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
        if self.mean is None or self.std is None:  # both or neither (the validator above)
            return None
        return tuple(self.mean), tuple(self.std)

    def official_shapes(self, num_classes: int) -> dict[str, tuple[int, ...]]:
        """timm's `state_dict()` of the model, in its order."""
        c, p, h = self.width, self.patch_size, self.hidden
        shapes: dict[str, tuple[int, ...]] = {}
        if self.class_token:
            shapes["cls_token"] = (1, 1, c)
        if self.distilled:
            shapes["dist_token"] = (1, 1, c)
        shapes["pos_embed"] = (1, self.grid ** 2 + self.prefix_tokens, c)
        shapes |= {"patch_embed.proj.weight": (c, 3, p, p), "patch_embed.proj.bias": (c,)}
        for i in range(self.depth):
            b = f"blocks.{i}"
            shapes |= {f"{b}.norm1.weight": (c,), f"{b}.norm1.bias": (c,), f"{b}.attn.qkv.weight": (3 * c, c)}
            if self.qkv_bias:
                shapes[f"{b}.attn.qkv.bias"] = (3 * c,)
            shapes |= {f"{b}.attn.proj.weight": (c, c), f"{b}.attn.proj.bias": (c,),
                       f"{b}.norm2.weight": (c,), f"{b}.norm2.bias": (c,),
                       f"{b}.mlp.fc1.weight": (h, c), f"{b}.mlp.fc1.bias": (h,),
                       f"{b}.mlp.fc2.weight": (c, h), f"{b}.mlp.fc2.bias": (c,)}
        norm = "fc_norm" if self.global_pool == "avg" else "norm"
        shapes |= {f"{norm}.weight": (c,), f"{norm}.bias": (c,)}
        if num_classes:
            for head in ("head", "head_dist") if self.distilled else ("head",):
                shapes |= {f"{head}.weight": (num_classes, c), f"{head}.bias": (num_classes,)}
        return shapes

    def parameter_count(self, num_classes: int) -> int:
        return shapes_parameter_count(self.official_shapes(num_classes))

    def macs(self, resolution: int, num_classes: int) -> int:
        """Linear layers, the patchify convolution and attention's two matrix products (norms, softmax and
        GELU are a rounding error), on the (resolution / patch)^2 patches and the prefix tokens."""
        c, patches = self.width, (resolution // self.patch_size) ** 2
        n = patches + self.prefix_tokens
        block = n * (3 * c * c + c * c + 2 * c * self.hidden) + 2 * n * n * c
        heads = 2 if self.distilled else 1
        return patches * 3 * self.patch_size ** 2 * c + self.depth * block + heads * c * num_classes

    def describe(self) -> str:
        return describe(self.patch_size, self.depth, self.width, self.hidden, self.grid, self.class_token,
                        self.distilled, self.global_pool)

    @property
    def paper(self) -> str | None:
        return DEIT_PAPER if self.recipe == "deit" else None

    def display_name(self, key: str) -> str:
        size = _SIZES.get(self.width, str(self.width))
        return f"{'DeiT' if self.recipe == 'deit' else 'ViT'}-{size}/{self.patch_size}"

    def doc_summary(self, key: str) -> str:
        extra = " and a distillation token" if self.distilled else ""
        return (f"{self.display_name(key)}: {self.depth} blocks of width {self.width}, {self.heads} heads, "
                f"{self.patch_size}x{self.patch_size} patches, position embeddings for {self.img_size}x"
                f"{self.img_size} (resampled for other sizes){extra}")


def parse(data: dict) -> ViT:
    return ViT.model_validate(data)


def official_shapes(arch: ViT, num_classes: int) -> dict[str, tuple[int, ...]]:
    return arch.official_shapes(num_classes)


def infer(shapes: Mapping[str, tuple[int, ...]]) -> str:
    """The architecture a timm-named checkpoint holds, in `describe()` words (heads are not in the shapes,
    and `describe()` does not name them)."""
    proj = shapes.get("patch_embed.proj.weight", (0, 3, 0, 0))
    width, patch = proj[0], proj[-1]
    depth = 1 + max((int(m.group(1)) for k in shapes if (m := re.match(r"blocks\.(\d+)\.", k))), default=-1)
    hidden = shapes.get("blocks.0.mlp.fc1.weight", (0,))[0]
    prefix = int("cls_token" in shapes) + int("dist_token" in shapes)
    grid = int(round((shapes.get("pos_embed", (1, prefix, 0))[1] - prefix) ** 0.5))
    return describe(patch, depth, width, hidden, grid, "cls_token" in shapes, "dist_token" in shapes,
                    "avg" if "fc_norm.weight" in shapes else "token")


def describe(patch: int, depth: int, width: int, hidden: int, grid: int, class_token: bool, distilled: bool,
             pool: str) -> str:
    tokens = ("class and distillation tokens" if distilled else "a class token" if class_token
              else "no class token")
    return (f"ViT patch {patch} depth {depth} width {width} MLP {hidden}, {grid}x{grid} position grid, "
            f"{tokens}, {'class-token' if pool == 'token' else 'average'} pooling")
