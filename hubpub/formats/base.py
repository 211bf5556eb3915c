"""What a format is: the interface a format module fills, and the job a build hands it.

A format writes one file per artifact from the exported SavedModel (the graph every family produces,
with the Hub input convention inside), checks it against the SavedModel's outputs on the build's fixed
inputs with a tolerance of its own, and says where it goes: its name and suffix below a bucket or a
directory (`<artifact>/<version><suffix>`, with a `.sha256` beside it), its folder in a Hugging Face
repository, its framework on Kaggle Models, and its template text in the docs (`templates/formats/<name>.md.j2`).
Everything else (the build record, the docs' downloads, the site, every destination) comes from that.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from hubpub.errors import HubpubError

if TYPE_CHECKING:
    from hubpub.layout import Dist
    from hubpub.record import FormatFile


class FormatError(HubpubError):
    """A format's file could not be made, or disagrees with the SavedModel beyond its tolerance."""


@dataclass(frozen=True)
class FormatJob:
    """What a build hands a format, for one artifact."""

    artifact: str
    saved_model: Path  # the exported SavedModel, final (round-tripped)
    dist: Dist
    inputs: np.ndarray  # float32 NHWC in [0, 1]: the build's fixed inputs
    expected: np.ndarray  # the SavedModel's outputs on them
    parameters: int


class Format(ABC):
    """One format of an artifact, built through this seam."""

    name: ClassVar[str]  # "onnx": the record's and the CLI's name (`--no-onnx`)
    title: ClassVar[str]  # "ONNX"
    suffix: ClassVar[str]  # ".onnx": after `<artifact>` in dist/, after `<version>` at a destination
    extra: ClassVar[str]  # the pip extra its libraries come in: `pip install "hubpub[onnx]"`
    kaggle_framework: ClassVar[str | None] = None  # its Kaggle Models framework, if Kaggle has one
    runner: ClassVar[str]  # what runs it downstream, as `hubpub verify` says: "onnxruntime"
    tolerance: ClassVar[float]  # max |Δ| from the SavedModel on the build's inputs (`hubpub.tolerances`)
    content_type: ClassVar[str] = "application/octet-stream"

    def path(self, dist: Dist, artifact: str) -> Path:
        return dist.format_file(self.name, artifact, self.suffix)

    def doc_values(self) -> dict:
        """What its template text says beyond the record (ONNX: the opset)."""
        return {}

    def wanted(self, parameters: int) -> str | None:
        """None if the format is built for an artifact of this size, else why not (said in the record's
        place, the build's log)."""
        return None

    @abstractmethod
    def available(self) -> bool:
        """Whether its libraries are installed (else the build says which extra to install)."""

    @abstractmethod
    def run(self, data: bytes, images: np.ndarray) -> np.ndarray:
        """The file's outputs on `images` (float32 NHWC in [0, 1]), run as its users run it: what `hubpub
        verify` compares with the build's record. Raises FormatError if the bytes do not load."""

    @abstractmethod
    def build(self, job: FormatJob) -> FormatFile:
        """Write the artifact's file (atomically: nothing under the final name unless it passed its check)
        and return its record."""
