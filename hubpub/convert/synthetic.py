"""Writing checkpoints in the official formats, with numpy alone where the format allows (no torch).

For tests, benchmarks and the offline demo, with a family's `random_checkpoint` tensors.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from hubpub._files import atomic_path
from hubpub.errors import CheckpointError

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
            arrays: dict[str, Any] = tensors  # by name; none is savez's own allow_pickle
            np.savez(f, **arrays)
    elif suffix in (".pth", ".pt"):
        from hubpub._torch import require_torch

        torch = require_torch()
        state = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in tensors.items()}
        torch.save({"model": state} if wrap else state, tmp)
