"""PyTorch is the optional `torch` extra: the reference models and reading `.pth` files need it."""

from __future__ import annotations

from hubpub.errors import MissingExtraError


def require_torch():
    try:
        import torch
    except ImportError:
        raise MissingExtraError(
            "this needs PyTorch: pip install 'hubpub[torch]' (torch==2.13.0, the CPU build)") from None
    return torch


def torch_available() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True
