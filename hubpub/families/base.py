"""What a model family is to the generic stages: one small interface, plain values.

A family owns everything about its models: the architecture settings a manifest may give (validated
here), the Keras builder, how official checkpoints map onto it (a `Converter`), the PyTorch
reference that proves the port, and the words its docs use. The stages call only what is here.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast

import numpy as np
from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    from hubpub.convert.rules import Rule


class ArchConfig(BaseModel, ABC):
    """One `architectures` entry of a manifest, as its family validates it."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    family: str

    @property
    @abstractmethod
    def feature_dim(self) -> int:
        """Width of the feature vector the feature extractor returns."""

    @property
    @abstractmethod
    def min_input_size(self) -> int:
        """The smallest input height or width the model takes (its total stride)."""

    @property
    @abstractmethod
    def feature_layer(self) -> str:
        """The layer whose output is the feature vector: where the feature extractor is cut."""

    @abstractmethod
    def parameter_count(self, num_classes: int) -> int | None:
        """Parameters of the model (`num_classes=0`: the feature extractor); None if known only once built."""

    @property
    def normalization(self) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
        """(mean, std) the model normalises its input with, when the architecture says (the weights were
        trained so); None: the family's."""
        return None

    def macs(self, resolution: int, num_classes: int) -> int | None:
        """Multiply-accumulates of one forward pass at `resolution` (the papers' "FLOPs"); None if unknown."""
        return None

    @abstractmethod
    def describe(self) -> str:
        """One line for errors and listings: `hierarchical depths [3, 3, 9, 3] dims [...]`."""

    def display_name(self, key: str) -> str:
        """How the docs name an architecture, from its manifest key: `tiny` -> ConvNeXt-T."""
        return key

    @property
    def paper(self) -> str | None:
        """The paper the docs name for this architecture's weights (Markdown), if not the family's."""
        return None

    def doc_summary(self, key: str) -> str:
        """The docs' one-line description of the architecture."""
        return self.describe()


def as_is(checkpoint):
    """A checkpoint whose layout is renamed keys only: nothing to join."""
    return checkpoint


A = TypeVar("A", bound="ArchConfig")  # a family's own architecture settings


@dataclass(frozen=True)
class Converter(Generic[A]):
    """How checkpoints of one family are read: the official key names and the ones it also accepts.

    `official_shapes` is the one declaration of the block structure: parameter counts, synthetic
    checkpoints and the strict port's expectations all come from it.
    """

    rules: Callable[[A], tuple[Rule, ...]]
    official_shapes: Callable[[A, int], dict[str, tuple[int, ...]]]
    # keys -> (layout name, official name of each key); raises CheckpointError for a foreign layout
    to_official: Callable[[Iterable[str]], tuple[str, dict[str, str]]]
    # official shapes found in a checkpoint -> the architecture they describe, as `describe()` words
    infer: Callable[[Mapping[str, tuple[int, ...]]], str]
    # a checkpoint -> the same checkpoint with tensors its layout splits joined as the official layout holds
    # them (transformers' query, key, value -> timm's qkv), read lazily; for layouts that are more than names
    join: Callable[[Any], Any] = as_is


@dataclass(frozen=True)
class DocText:
    """What the docs say about a family: the paper, the code, the words for where weights come from."""

    title: str  # "ConvNeXt"
    paper: str  # Markdown: "[A ConvNet for the 2020s](https://arxiv.org/abs/2201.03545) (Liu et al., CVPR 2022)"
    references: tuple[str, ...] = ()  # Markdown list items
    code: str | None = None  # Markdown link to the official code
    network_architecture: str | None = None  # an id of tfhub.dev's tags/network_architecture.yaml, e.g. "convnext"
    features: str | None = None  # what the feature vector is: "the globally pooled ... features"


@dataclass(frozen=True)
class Family:
    """A model family: the interface the generic stages use."""

    name: str
    config: type[ArchConfig] | Callable[[dict], ArchConfig]  # validates an `architectures` entry
    docs: DocText
    # (arch, num_classes or None for a feature extractor, input convention, model name, source file) -> Model
    build: Callable[..., Any]
    converter: Converter[Any] | None = None  # None: the source file is the model itself, nothing to port
    # (arch, num_classes, official (name, array) pairs) -> a PyTorch module with `forward_taps(nchw)`
    reference: Callable[..., Any] | None = None
    # (arch, classifier) -> {tap name: Keras layer name}, compared against the reference's taps
    taps: Callable[[ArchConfig, bool], dict[str, str]] | None = None
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)  # the input normalisation inside the model
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    input_conventions: tuple[str, ...] = ("hub", "normalized")

    def normalization(self, arch: ArchConfig | None = None) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """(mean, std) of the input normalisation of `arch`'s models: its own, else the family's."""
        return (arch.normalization if arch is not None else None) or (self.mean, self.std)

    def parse(self, data: dict) -> ArchConfig:
        if isinstance(self.config, type):
            return cast(type[ArchConfig], self.config).model_validate(data)
        return self.config(data)

    def random_checkpoint(self, arch: ArchConfig, num_classes: int, seed: int = 0) -> dict[str, np.ndarray]:
        """Random official-named float32 tensors, scaled so activations stay O(1) (tests and the demo).

        Every tensor is random, layer scales and norms included: with an identity-like init a broken
        block would still pass parity.
        """
        if self.converter is None:
            raise ValueError(f"family {self.name} reads no checkpoints")
        rng = np.random.default_rng(seed)
        out = {}
        for key, shape in self.converter.official_shapes(arch, num_classes).items():
            leaf = key.rsplit(".", 1)[-1]
            if key.endswith(".gamma") or (leaf in ("gamma", "beta") and len(shape) > 1):  # layer scale, GRN
                value = rng.uniform(0.2, 1.0, shape) * rng.choice([-1.0, 1.0], shape)
            elif len(shape) == 1 and leaf == "weight":  # LayerNorm scale
                value = rng.uniform(0.5, 1.5, shape)
            elif len(shape) == 1:  # biases, LayerNorm shift
                value = rng.normal(0.0, 0.1, shape)
            else:
                fan_in = int(np.prod(shape[1:]))
                value = rng.normal(0.0, 1.0 / np.sqrt(fan_in), shape)
            out[key] = value.astype(np.float32)
        return out


def lazy(module: str, name: str) -> Callable:
    """`module.name`, imported at the first call: a family's Keras and PyTorch code loads only when used,
    so reading a manifest never imports TensorFlow or PyTorch."""

    def call(*args, **kwargs):
        return getattr(importlib.import_module(module), name)(*args, **kwargs)

    call.__name__ = call.__qualname__ = f"{module}.{name}"
    return call


def shapes_parameter_count(shapes: Mapping[str, tuple[int, ...]]) -> int:
    return int(sum(np.prod(s) for s in shapes.values()))
