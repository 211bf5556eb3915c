"""timm's ConvNeXt as an independent reference: run with this folder on PYTHONPATH (its torchvision shim),
in a process that does not import hubpub.

    python make_reference.py MODEL NUM_CLASSES OUT [--official OFFICIAL.safetensors]

Writes into OUT: `timm.safetensors` (timm's own `state_dict()` of the model with random weights),
`timm_logits.npy` (its logits on `inputs.npy`), and with `--official`, `official_logits.npy`: the logits
after loading that official-layout checkpoint through timm's `checkpoint_filter_fn` with `strict=True`.
`inputs.npy` is float32 NHWC in [0, 1], made here from a fixed seed; the model gets them normalised
with ImageNet's mean and std, NCHW, as timm's data config says.
"""

import argparse
from pathlib import Path

import numpy as np
import timm
import torch
from safetensors.torch import load_file, save_file
from timm.data import resolve_data_config
from timm.models.convnext import checkpoint_filter_fn


def main() -> None:
    args = argparse.ArgumentParser()
    args.add_argument("model")
    args.add_argument("num_classes", type=int)
    args.add_argument("out", type=Path)
    args.add_argument("--official", type=Path)
    args.add_argument("--size", type=int, default=64)
    a = args.parse_args()

    torch.manual_seed(0)
    model = timm.create_model(a.model, pretrained=False, num_classes=a.num_classes).eval()
    with torch.no_grad():  # every weight random and O(1) in effect, so each block, layer scale and GRN shows
        for name, p in model.named_parameters():
            fan_in = p[0].numel() if p.ndim > 1 else 1
            p.copy_(torch.randn_like(p) * (fan_in**-0.5 if p.ndim > 1 else 0.5)
                    + (1.0 if name.endswith("norm.weight") else 0.0))
    config = resolve_data_config({}, model=model)
    mean = torch.tensor(config["mean"]).reshape(1, 3, 1, 1)
    std = torch.tensor(config["std"]).reshape(1, 3, 1, 1)
    images = np.random.default_rng(0).random((2, a.size, a.size + 32, 3), dtype=np.float32)
    x = (torch.from_numpy(images).permute(0, 3, 1, 2) - mean) / std

    a.out.mkdir(parents=True, exist_ok=True)
    np.save(a.out / "inputs.npy", images)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(a.out / "timm.safetensors"))
    with torch.no_grad():
        np.save(a.out / "timm_logits.npy", model(x).numpy())
    if a.official:
        state = checkpoint_filter_fn(load_file(str(a.official)), model)
        model.load_state_dict(state, strict=True)  # timm's own check of the official layout's names and shapes
        with torch.no_grad():
            np.save(a.out / "official_logits.npy", model(x).numpy())


if __name__ == "__main__":
    main()
