"""Your own Keras model: a `.keras` file that already holds its weights, published as it is.

The variant's `checkpoint.url` names the file (a path or URL; fetched, hashed and locked like any
checkpoint). Nothing is ported and there is no PyTorch reference: the docs say parity was not
checked; the SavedModel round trip still is. The model takes float32 RGB images in [0, 1] (its own
preprocessing inside it) and uses only layers Keras ships.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from hubpub.errors import CheckpointError
from hubpub.families.base import ArchConfig, DocText, Family


class KerasFile(ArchConfig):
    family: Literal["keras"]
    features: str = Field(description="the layer whose output is the feature vector (the cut for a feature extractor)")
    feature_width: int = Field(gt=0, description="width of that feature vector")
    min_size: int = Field(default=1, gt=0, description="smallest input height or width the model takes")
    title: str | None = Field(default=None, pattern=r"^[^\r\n]+$", description="what the docs call the model")

    @property
    def feature_dim(self) -> int:
        return self.feature_width

    @property
    def min_input_size(self) -> int:
        return self.min_size

    @property
    def feature_layer(self) -> str:
        return self.features

    def parameter_count(self, num_classes: int) -> int | None:
        return None  # known once the file is loaded; the build report records it

    def describe(self) -> str:
        return f"Keras model file, features from layer {self.features!r} ({self.feature_width}-d)"

    def display_name(self, key: str) -> str:
        return self.title or key

    def doc_summary(self, key: str) -> str:
        return f"{self.display_name(key)}: a Keras model, features from its layer `{self.features}`"


def _build(arch: KerasFile, *, num_classes, input_convention, name, source=None, portable=False):
    """The model the file holds (already of Keras's own layers: `portable` changes nothing)."""
    import keras

    from hubpub.keras_files import load_keras_file

    if source is None:
        raise CheckpointError(f"{name}: a keras-family variant needs its model file as checkpoint.url")
    model = load_keras_file(source)
    if model.input.shape[-1] != 3:
        raise CheckpointError(f"{source}: the model takes {model.input.shape}; an image model takes [..., 3] RGB")
    try:
        features = model.get_layer(arch.features).output
    except ValueError:
        raise CheckpointError(f"{source}: no layer named {arch.features!r} (architectures.*.features); layers: "
                              f"{', '.join(layer.name for layer in model.layers[-5:])}, ...") from None
    if features.shape[-1] != arch.feature_width:
        raise CheckpointError(f"{source}: layer {arch.features!r} gives {features.shape[-1]} features, "
                              f"the manifest says feature_width {arch.feature_width}")
    if num_classes is None:
        return keras.Model(model.input, features, name=name)
    if model.output.shape[-1] != num_classes:
        raise CheckpointError(f"{source}: the model gives {model.output.shape[-1]} outputs, the manifest says "
                              f"num_classes {num_classes}")
    return keras.Model(model.input, model.output, name=name)


FAMILY = Family(
    name="keras",
    config=KerasFile,
    docs=DocText(title="Keras model", paper=""),
    build=_build,
    input_conventions=("hub",),
)
