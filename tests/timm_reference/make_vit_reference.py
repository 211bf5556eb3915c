"""timm's Vision Transformer (ViT, DeiT) as an independent reference: run with this folder on PYTHONPATH (its
torchvision shim), in a process that does not import hubpub.

    python make_vit_reference.py MODEL NUM_CLASSES OUT [--sizes 224x224,256x320] [--kwargs JSON]

Creates timm's MODEL with `dynamic_img_size=True` (and `--kwargs`, e.g. a smaller depth and width), with
random weights, and writes into OUT: `timm.safetensors` (its own `state_dict()`), `config.json` (the mean,
std and crop_pct of its data config), and per size HxW: `inputs_HxW.npy` (float32 NHWC in [0, 1], from a fixed
seed), `logits_HxW.npy` (its forward) and `prelogits_HxW.npy` (`forward_head(pre_logits=True)`).
"""

import argparse
import json
from pathlib import Path

import numpy as np
import timm
import torch
from safetensors.torch import save_file
from timm.data import resolve_data_config

TOKENS = ("cls_token", "dist_token", "pos_embed")


def main() -> None:
    args = argparse.ArgumentParser()
    args.add_argument("model")
    args.add_argument("num_classes", type=int)
    args.add_argument("out", type=Path)
    args.add_argument("--sizes", default="224x224,256x320")
    args.add_argument("--kwargs", default="{}")
    a = args.parse_args()

    torch.manual_seed(0)
    model = timm.create_model(a.model, pretrained=False, num_classes=a.num_classes, dynamic_img_size=True,
                              **json.loads(a.kwargs)).eval()
    with torch.no_grad():  # every weight random and O(1) in effect; position embeddings as large as the tokens
        for name, p in model.named_parameters():
            if name in TOKENS:
                p.copy_(torch.randn_like(p))
                continue
            fan_in = p[0].numel() if p.ndim > 1 else 1
            p.copy_(torch.randn_like(p) * (fan_in**-0.5 if p.ndim > 1 else 0.5)
                    + (1.0 if "norm" in name and name.endswith("weight") else 0.0))
    config = resolve_data_config({}, model=model)
    mean = torch.tensor(config["mean"]).reshape(1, 3, 1, 1)
    std = torch.tensor(config["std"]).reshape(1, 3, 1, 1)
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "config.json").write_text(json.dumps({"mean": list(config["mean"]), "std": list(config["std"]),
                                                    "crop_pct": config["crop_pct"]}))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(a.out / "timm.safetensors"))
    rng = np.random.default_rng(0)
    for size in a.sizes.split(","):
        h, w = map(int, size.split("x"))
        images = rng.random((2, h, w, 3), dtype=np.float32)
        x = (torch.from_numpy(images).permute(0, 3, 1, 2) - mean) / std
        np.save(a.out / f"inputs_{size}.npy", images)
        with torch.no_grad():
            np.save(a.out / f"logits_{size}.npy", model(x).numpy())
            np.save(a.out / f"prelogits_{size}.npy",
                    model.forward_head(model.forward_features(x), pre_logits=True).numpy())


if __name__ == "__main__":
    main()
