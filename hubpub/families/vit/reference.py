"""The PyTorch reference: the Vision Transformer as timm's `vision_transformer.py` and `deit.py` define it
(`VisionTransformer` and `VisionTransformerDistilled` with `dynamic_img_size=True`), with timm's module
names, so a timm checkpoint loads with `strict=True`.

A plain module of torch's own layers: the image size is read from the input tensor, never branched on
in Python, so the model traces for export at any size. Imported only where the `torch` extra is installed.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from hubpub.families.vit.config import ViT


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int, qkv_bias: bool):
        super().__init__()
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4).unbind(0)
        attn = ((q * self.scale) @ k.transpose(-2, -1)).softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, c))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, arch: ViT):
        super().__init__()
        c = arch.width
        self.norm1 = nn.LayerNorm(c, eps=arch.layer_norm_eps)
        self.attn = Attention(c, arch.heads, arch.qkv_bias)
        self.norm2 = nn.LayerNorm(c, eps=arch.layer_norm_eps)
        self.mlp = Mlp(c, arch.hidden)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    def __init__(self, arch: ViT):
        super().__init__()
        self.proj = nn.Conv2d(3, arch.width, kernel_size=arch.patch_size, stride=arch.patch_size)

    def forward(self, x):
        return self.proj(x)


class VisionTransformer(nn.Module):
    """`num_classes=0` leaves out the head (a feature extractor: the pre-logits)."""

    def __init__(self, arch: ViT, num_classes: int = 1000):
        super().__init__()
        c, self.arch = arch.width, arch
        self.cls_token = nn.Parameter(torch.zeros(1, 1, c)) if arch.class_token else None
        self.dist_token = nn.Parameter(torch.zeros(1, 1, c)) if arch.distilled else None
        self.pos_embed = nn.Parameter(torch.zeros(1, arch.grid ** 2 + arch.prefix_tokens, c))
        self.patch_embed = PatchEmbed(arch)
        self.blocks = nn.Sequential(*[Block(arch) for _ in range(arch.depth)])
        norm = nn.LayerNorm(c, eps=arch.layer_norm_eps)
        if arch.global_pool == "avg":
            self.fc_norm = norm
        else:
            self.norm = norm
        self.head = nn.Linear(c, num_classes) if num_classes else None
        self.head_dist = nn.Linear(c, num_classes) if num_classes and arch.distilled else None

    def position_embedding(self, height, width):
        """timm's `resample_abs_pos_embed`: the grid's rows bicubic-resampled (antialiased, corners not
        aligned) to `height` x `width`, the prefix tokens' rows as they are."""
        n, g = self.arch.prefix_tokens, self.arch.grid
        grid = self.pos_embed[:, n:].reshape(1, g, g, -1).permute(0, 3, 1, 2)
        grid = F.interpolate(grid, size=(height, width), mode="bicubic", align_corners=False, antialias=True)
        grid = grid.permute(0, 2, 3, 1).reshape(1, height * width, -1)
        return torch.cat([self.pos_embed[:, :n], grid], dim=1)

    def forward_taps(self, x) -> dict:
        """NCHW input -> {patch_embed (NCHW), pos_embed, block_i (tokens), pooled[, logits]}."""
        taps = {"patch_embed": self.patch_embed(x)}
        b, c, h, w = taps["patch_embed"].shape
        x = taps["patch_embed"].flatten(2).transpose(1, 2)
        prefix = [t.expand(b, -1, -1) for t in (self.cls_token, self.dist_token) if t is not None]
        x = torch.cat([*prefix, x], dim=1) + self.position_embedding(h, w)
        taps["pos_embed"] = x
        for i, blk in enumerate(self.blocks):
            x = blk(x)
            taps[f"block_{i}"] = x
        if self.arch.global_pool == "avg":
            taps["pooled"] = self.fc_norm(x[:, self.arch.prefix_tokens:].mean(dim=1))
        else:
            x = self.norm(x)
            taps["pooled"] = (x[:, 0] + x[:, 1]) / 2 if self.arch.distilled else x[:, 0]
        if self.head is not None and self.arch.distilled:
            assert self.head_dist is not None  # made with the head for a distilled model
            taps["logits"] = (self.head(x[:, 0]) + self.head_dist(x[:, 1])) / 2
        elif self.head is not None:
            taps["logits"] = self.head(taps["pooled"])
        return taps

    def forward(self, x):
        taps = self.forward_taps(x)
        return taps.get("logits", taps["pooled"])


def load_reference(arch: ViT, num_classes: int, tensors) -> nn.Module:
    """The reference with timm-named `(name, array)` pairs loaded strictly (built on the meta device and
    assigned: no random init, no second copy of the weights)."""
    with torch.device("meta"):
        model = VisionTransformer(arch, num_classes)
    state = {k: torch.from_numpy(v if v.flags.writeable else v.copy())
             for k, v in tensors if num_classes or not k.startswith(("head.", "head_dist."))}
    model.load_state_dict(state, strict=True, assign=True)
    return model.eval()
