"""hubpub's optional stacks (pip extras): which modules each brings, whether it is installed, and the one
error line a feature gives when its extra is missing. The core (manifest, build, SavedModel, `.keras`,
docs, site, GCS and directory publishing) needs none of them."""

from __future__ import annotations

import importlib.util

from hubpub.errors import MissingExtraError

# extra -> the modules it installs that hubpub imports
EXTRAS: dict[str, tuple[str, ...]] = {
    "torch": ("torch",),
    "kaggle": ("kagglehub", "kagglesdk"),
    "hf": ("huggingface_hub",),
    "notebooks": ("nbformat", "nbclient", "jupyter_client", "ipykernel", "matplotlib", "skimage"),
    "litert": ("ai_edge_litert",),
    "onnx": ("onnx", "onnxscript", "onnx_ir", "onnxruntime", "torch"),
    "cluster": ("distributed",),
    "signing": ("model_signing", "OpenSSL"),
}


def installed(extra: str) -> bool:
    return all(importlib.util.find_spec(module) is not None for module in EXTRAS[extra])


def install_command(extra: str) -> str:
    return f'pip install "hubpub[{extra}]"'


def require(extra: str, feature: str) -> None:
    """Raise `MissingExtraError` naming the install command unless `extra` is installed."""
    if not installed(extra):
        missing = [m for m in EXTRAS[extra] if importlib.util.find_spec(m) is None]
        raise MissingExtraError(f"{feature} needs hubpub's {extra} extra ({', '.join(missing)} not installed): "
                                f"{install_command(extra)}")
