"""The manifest as the stages use it: frozen values, every default resolved, every path made whole."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from hubpub import tolerances
from hubpub.errors import ManifestError
from hubpub.families import FAMILIES, ArchConfig, Family
from hubpub.manifest.schema import (
    KINDS,
    Collection,
    DocDefaults,
    EvalPreprocessing,
    Kind,
    NotebookSettings,
    Publisher,
    PublishSettings,
    SigningSettings,
)


@dataclass(frozen=True)
class DatasetRef:
    """A dataset as the stages use it, its label file resolved to a path."""

    key: str
    title: str
    classes: int
    labels: Path | None
    tfhub_id: str | None
    classes_note: str | None = None


@dataclass(frozen=True)
class Variant:
    """One set of weights: built twice, as a classifier and as a feature extractor."""

    name: str
    architecture_name: str
    architecture: ArchConfig
    pretrain: DatasetRef
    finetune: DatasetRef | None
    num_classes: int
    resolution: int
    checkpoint_url: str
    checkpoint_sha256: str | None
    top1: float | None
    eval: EvalPreprocessing
    description: str | None
    license: str
    version: int
    litert_formats: tuple[str, ...] = ()  # the LiteRT files to build; none if not wanted
    litert_min_cosine: float = tolerances.LITERT_MIN_COSINE
    litert_calibration: tuple[Path, ...] = ()

    @property
    def family(self) -> Family:
        return FAMILIES[self.architecture.family]

    @property
    def dataset(self) -> DatasetRef:
        """The dataset the head predicts: the fine-tuning set if any, else the pre-training set."""
        return self.finetune or self.pretrain

    @property
    def datasets(self) -> tuple[DatasetRef, ...]:
        return (self.pretrain,) if self.finetune in (None, self.pretrain) else (self.pretrain, self.finetune)

    @property
    def feature_dim(self) -> int:
        return self.architecture.feature_dim

    @property
    def min_input_size(self) -> int:
        """The smallest height or width the model takes: its total stride."""
        return self.architecture.min_input_size

    def artifacts(self, kinds: tuple[str, ...] = KINDS) -> list[Artifact]:
        return [Artifact(self, kind) for kind in KINDS if kind in kinds]

    def parameter_count(self, kind: str = "classifier") -> int | None:
        """None when the family knows it only once the model is built (a user's Keras file)."""
        return self.architecture.parameter_count(self.num_classes if kind == "classifier" else 0)


@dataclass(frozen=True)
class Artifact:
    """What is published: a variant built as one kind."""

    variant: Variant
    kind: Kind

    @property
    def name(self) -> str:
        return artifact_name(self.variant.name, self.kind)

    @property
    def version(self) -> int:
        return self.variant.version

    def object_name(self, suffix: str) -> str:
        """A file's object name below a bucket or directory: `<artifact>/<version><suffix>`, one per version,
        never reused."""
        return f"{self.name}/{self.version}{suffix}"

    @property
    def asset_object(self) -> str:
        """The tarball's object name."""
        return self.object_name(".tar.gz")

    def litert_object(self, fmt: str) -> str:
        """A LiteRT file's object name."""
        return self.object_name(f".{fmt}.tflite")

    @property
    def keras_object(self) -> str:
        """The Keras 3 file's object name, beside the tarball."""
        return self.object_name(".keras")

    def asset_url(self, publish: PublishSettings) -> str:
        return f"{publish.public_url_base}/{self.asset_object}"


def artifact_name(variant: str, kind: str) -> str:
    return variant if kind == "classifier" else f"{variant}_fe"


@dataclass(frozen=True)
class Manifest:
    path: Path
    publisher: Publisher
    collection: Collection
    docs: DocDefaults
    notebooks: NotebookSettings | None
    publish: PublishSettings
    architectures: dict[str, ArchConfig]
    variants: tuple[Variant, ...]
    require_pinned: bool = False
    formats_off: tuple[str, ...] = ()  # formats the manifest leaves out (`formats: {onnx: false}`)
    signing: SigningSettings | None = None  # `signing:`, its key resolved against the manifest's folder

    def colab_url(self, artifact: Artifact, notebooks_folder: str) -> str | None:
        """The Colab link of an artifact's usage notebook in a destination's `notebooks_folder`: derived from
        `notebooks` (a folder per destination), else the manifest's own `docs.colab`."""
        if self.notebooks is not None:
            return self.notebooks.colab_url(f"{notebooks_folder}/{artifact.name}")
        return self.docs.colab.get(artifact.kind)

    def variant(self, name: str) -> Variant:
        for v in self.variants:
            if v.name == name:
                return v
        known = ", ".join(v.name for v in self.variants)
        raise ManifestError(str(self.path), [f"unknown variant {name!r}; known: {known}"])

    def artifacts(self, kinds: tuple[str, ...] = KINDS) -> list[Artifact]:
        return [a for v in self.variants for a in v.artifacts(kinds)]


def iter_selected(manifest: Manifest, patterns: tuple[str, ...] = ()) -> Iterator[Variant]:
    """Variants whose names match any of the glob patterns (all of them when none is given)."""
    from fnmatch import fnmatchcase

    for v in manifest.variants:
        if not patterns or any(fnmatchcase(v.name, p) for p in patterns):
            yield v
