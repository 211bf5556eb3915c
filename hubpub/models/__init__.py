"""Keras 3 builders. A family is a builder module; `build_model` dispatches on the architecture."""

from hubpub.models.convnext import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    INPUT_CONVENTIONS,
    LayerScale,
    build_model,
    tap_layer_names,
)

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "INPUT_CONVENTIONS",
    "LayerScale",
    "build_model",
    "tap_layer_names",
]
