"""Official-format checkpoints with random weights, made with numpy alone (no torch needed).

For tests, benchmarks and the offline demo. Every tensor is randomised, layer-scale gammas and
LayerNorm affine parameters included: with the official init (gamma = 1e-6) each block is nearly
the identity, and a parity check would pass even with broken block weights.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hubpub._files import atomic_path
from hubpub.convert.rules import official_to_timm
from hubpub.errors import CheckpointError
from hubpub.manifest import Hierarchical, Isotropic


def official_shapes(arch: Hierarchical | Isotropic, num_classes: int) -> dict[str, tuple[int, ...]]:
    """Every key of the official state_dict with its shape, in the official order."""
    shapes: dict[str, tuple[int, ...]] = {}

    def block(prefix: str, c: int) -> None:
        shapes.update({
            f"{prefix}.dwconv.weight": (c, 1, 7, 7), f"{prefix}.dwconv.bias": (c,),
            f"{prefix}.norm.weight": (c,), f"{prefix}.norm.bias": (c,),
            f"{prefix}.pwconv1.weight": (4 * c, c), f"{prefix}.pwconv1.bias": (4 * c,),
            f"{prefix}.pwconv2.weight": (c, 4 * c), f"{prefix}.pwconv2.bias": (c,),
        })
        if arch.layer_scale_init > 0:
            shapes[f"{prefix}.gamma"] = (c,)

    if isinstance(arch, Hierarchical):
        d = arch.dims
        shapes["downsample_layers.0.0.weight"] = (d[0], 3, 4, 4)
        shapes["downsample_layers.0.0.bias"] = (d[0],)
        shapes["downsample_layers.0.1.weight"] = (d[0],)
        shapes["downsample_layers.0.1.bias"] = (d[0],)
        for i in range(1, 4):
            shapes[f"downsample_layers.{i}.0.weight"] = (d[i - 1],)
            shapes[f"downsample_layers.{i}.0.bias"] = (d[i - 1],)
            shapes[f"downsample_layers.{i}.1.weight"] = (d[i], d[i - 1], 2, 2)
            shapes[f"downsample_layers.{i}.1.bias"] = (d[i],)
        for s, depth in enumerate(arch.depths):
            for b in range(depth):
                block(f"stages.{s}.{b}", d[s])
        last = d[-1]
    else:
        last = arch.dim
        shapes["stem.weight"] = (last, 3, arch.patch_size, arch.patch_size)
        shapes["stem.bias"] = (last,)
        for i in range(arch.depth):
            block(f"blocks.{i}", last)
    shapes["norm.weight"] = (last,)
    shapes["norm.bias"] = (last,)
    if num_classes:
        shapes["head.weight"] = (num_classes, last)
        shapes["head.bias"] = (num_classes,)
    return shapes


def random_checkpoint(arch: Hierarchical | Isotropic, num_classes: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Random official-named float32 tensors, scaled so activations stay O(1) through the network."""
    rng = np.random.default_rng(seed)
    out = {}
    for key, shape in official_shapes(arch, num_classes).items():
        if key.endswith(".gamma"):
            value = rng.uniform(0.2, 1.0, shape) * rng.choice([-1.0, 1.0], shape)
        elif len(shape) == 1 and key.endswith("weight"):  # LayerNorm scale
            value = rng.uniform(0.5, 1.5, shape)
        elif len(shape) == 1:  # biases, LayerNorm shift
            value = rng.normal(0.0, 0.1, shape)
        else:
            fan_in = int(np.prod(shape[1:]))
            value = rng.normal(0.0, 1.0 / np.sqrt(fan_in), shape)
        out[key] = value.astype(np.float32)
    return out


def to_timm(tensors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The same tensors under timm's names (hierarchical only; timm has no isotropic ConvNeXt)."""
    renamed = {}
    for key, value in tensors.items():
        new = official_to_timm(key)
        if new is None:
            raise CheckpointError(f"no timm name for official key {key!r}")
        renamed[new] = value
    return renamed


RANDOM_WEIGHTS_KEY = "hubpub.random_weights"


def save_checkpoint(tensors: dict[str, np.ndarray], path: str | Path, *, wrap: bool = True,
                    metadata: dict[str, str] | None = None) -> Path:
    """Write tensors as `.safetensors`, `.npz`, or `.pth` (`{"model": state_dict}` when `wrap`).

    `metadata` is kept in the safetensors header (the other formats have no place for it).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".safetensors", ".npz", ".pth", ".pt"):
        raise CheckpointError(f"{path}: cannot write checkpoints with suffix {path.suffix!r}")
    with atomic_path(path) as tmp:
        _save(tensors, tmp, suffix, wrap=wrap, metadata=metadata)
    return path


def _save(tensors: dict[str, np.ndarray], tmp: Path, suffix: str, *, wrap: bool, metadata: dict | None) -> None:
    if suffix == ".safetensors":
        from safetensors.numpy import save_file

        save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, str(tmp), metadata=metadata)
    elif suffix == ".npz":
        with open(tmp, "wb") as f:
            np.savez(f, **tensors)
    elif suffix in (".pth", ".pt"):
        from hubpub.reference import require_torch

        torch = require_torch()
        state = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in tensors.items()}
        torch.save({"model": state} if wrap else state, tmp)
