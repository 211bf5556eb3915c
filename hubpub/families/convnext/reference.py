"""The PyTorch reference: the official ConvNeXt architectures, written from the paper and the
official state_dict key names, so an official checkpoint loads with `strict=True`.

timm cannot serve here: it imports torchvision, which has no CPU build beside torch 2.13.
Imported only where the `torch` extra is installed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from hubpub.families.convnext.config import ConvNeXtConfig, Hierarchical, Isotropic


class LayerNorm(nn.Module):
    """LayerNorm over channels, for NHWC (`channels_last`) or NCHW (`channels_first`) tensors."""

    def __init__(self, dim: int, eps: float = 1e-6, data_format: str = "channels_last"):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))
        self.eps = eps
        self.data_format = data_format
        self.dim = dim

    def forward(self, x):
        if self.data_format == "channels_last":
            return F.layer_norm(x, (self.dim,), self.weight, self.bias, self.eps)
        mean = x.mean(1, keepdim=True)
        var = (x - mean).pow(2).mean(1, keepdim=True)
        x = (x - mean) / torch.sqrt(var + self.eps)
        return self.weight[:, None, None] * x + self.bias[:, None, None]



class Block(nn.Module):
    """dwconv -> norm -> pwconv1 -> GELU [-> after_gelu] -> pwconv2 [-> gamma] -> residual.

    `after_gelu` is `(attribute name, module)`: a later family's extra layer, under its official name.
    """

    def __init__(self, dim: int, layer_scale_init: float, eps: float, after_gelu: tuple[str, nn.Module] | None = None):
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, kernel_size=7, padding=3, groups=dim)
        self.norm = LayerNorm(dim, eps)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU()
        self._after_gelu = after_gelu[0] if after_gelu else None
        if after_gelu:
            setattr(self, *after_gelu)
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.gamma = (nn.Parameter(layer_scale_init * torch.ones(dim))
                      if layer_scale_init > 0 else None)

    def forward(self, x):
        shortcut = x
        x = self.act(self.pwconv1(self.norm(self.dwconv(x).permute(0, 2, 3, 1))))
        if self._after_gelu:
            x = getattr(self, self._after_gelu)(x)
        x = self.pwconv2(x)
        if self.gamma is not None:
            x = self.gamma * x
        return shortcut + x.permute(0, 3, 1, 2)


class _Tapped(nn.Module):
    forward_taps: Callable[[Any], dict[str, Any]]  # each model's own: {tap name: its output}

    def forward(self, x):
        taps = self.forward_taps(x)
        return taps.get("logits", taps["pooled"])


class ConvNeXt(_Tapped):
    """Hierarchical ConvNeXt; `num_classes=0` leaves out the head (a feature extractor).

    `make_block(dim)` builds each block (default: ConvNeXt's, with the architecture's layer scale).
    """

    def __init__(self, arch, num_classes: int = 1000, make_block=None):
        super().__init__()
        eps, dims = arch.layer_norm_eps, arch.dims
        make_block = make_block or (lambda dim: Block(dim, arch.layer_scale_init, eps))
        self.downsample_layers = nn.ModuleList([nn.Sequential(
            nn.Conv2d(3, dims[0], kernel_size=4, stride=4),
            LayerNorm(dims[0], eps, data_format="channels_first"))])
        for i in range(1, 4):
            self.downsample_layers.append(nn.Sequential(
                LayerNorm(dims[i - 1], eps, data_format="channels_first"),
                nn.Conv2d(dims[i - 1], dims[i], kernel_size=2, stride=2)))
        self.stages = nn.ModuleList(
            nn.Sequential(*[make_block(dims[i]) for _ in range(d)])
            for i, d in enumerate(arch.depths))
        self.norm = nn.LayerNorm(dims[-1], eps=eps)
        self.head = nn.Linear(dims[-1], num_classes) if num_classes else None

    def forward_taps(self, x) -> dict:
        """NCHW input -> {stem, stage_0..3, pooled[, logits]}, feature maps in NCHW."""
        taps = {}
        for i in range(4):
            x = self.downsample_layers[i](x)
            if i == 0:
                taps["stem"] = x
            x = self.stages[i](x)
            taps[f"stage_{i}"] = x
        taps["pooled"] = self.norm(x.mean([-2, -1]))
        if self.head is not None:
            taps["logits"] = self.head(taps["pooled"])
        return taps


class ConvNeXtIsotropic(_Tapped):
    """Isotropic ConvNeXt: a patchify stem with no LayerNorm, one sequence of blocks."""

    def __init__(self, arch: Isotropic, num_classes: int = 1000):
        super().__init__()
        p = arch.patch_size
        self.stem = nn.Conv2d(3, arch.dim, kernel_size=p, stride=p)
        self.blocks = nn.Sequential(*[Block(arch.dim, arch.layer_scale_init, arch.layer_norm_eps)
                                      for _ in range(arch.depth)])
        self.norm = LayerNorm(arch.dim, arch.layer_norm_eps)
        self.head = nn.Linear(arch.dim, num_classes) if num_classes else None

    def forward_taps(self, x) -> dict:
        taps = {"stem": self.stem(x)}
        taps["blocks"] = self.blocks(taps["stem"])
        taps["pooled"] = self.norm(taps["blocks"].mean([-2, -1]))
        if self.head is not None:
            taps["logits"] = self.head(taps["pooled"])
        return taps


def build_reference(arch: ConvNeXtConfig, num_classes: int = 1000):
    """The official PyTorch model for `arch`, in eval mode."""
    model = ConvNeXt(arch, num_classes) if isinstance(arch, Hierarchical) else ConvNeXtIsotropic(
        arch, num_classes)
    return model.eval()


def load_reference(arch: ConvNeXtConfig, num_classes: int, tensors, build=build_reference) -> nn.Module:
    """The reference built by `build(arch, num_classes)`, with official-named `(name, array)` pairs
    loaded strictly.

    Built on the meta device and loaded with `assign=True`: the parameters are the given arrays,
    with no random init and no second copy of the weights.
    """
    with torch.device("meta"):
        model = build(arch, num_classes)
    state = {k: torch.from_numpy(v if v.flags.writeable else v.copy())
             for k, v in tensors if num_classes or not k.startswith("head.")}
    model.load_state_dict(state, strict=True, assign=True)
    return model.eval()
