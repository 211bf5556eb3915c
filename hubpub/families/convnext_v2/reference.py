"""The PyTorch reference of ConvNeXt V2, as the official code defines it (facebookresearch/ConvNeXt-V2,
`models/convnextv2.py` and `models/utils.py`): ConvNeXt's modules with a GRN after the GELU."""

from __future__ import annotations

import torch
from torch import nn

from hubpub.families.convnext.reference import Block, ConvNeXt, load_reference


class GRN(nn.Module):
    """Global Response Normalization on NHWC input; `gamma`, `beta` stored as (1, 1, 1, C)."""

    def __init__(self, dim: int):
        super().__init__()
        self.gamma = nn.Parameter(torch.zeros(1, 1, 1, dim))
        self.beta = nn.Parameter(torch.zeros(1, 1, 1, dim))

    def forward(self, x):
        gx = torch.norm(x, p=2, dim=(1, 2), keepdim=True)
        nx = gx / (gx.mean(dim=-1, keepdim=True) + 1e-6)
        return self.gamma * (x * nx) + self.beta + x


def build_reference(arch, num_classes: int = 1000):
    eps = arch.layer_norm_eps
    return ConvNeXt(arch, num_classes,
                    make_block=lambda dim: Block(dim, 0.0, eps, after_gelu=("grn", GRN(4 * dim)))).eval()


def load(arch, num_classes: int, tensors):
    return load_reference(arch, num_classes, tensors, build=build_reference)
