"""What a format is: the interface a format module fills, and the job a build hands it.

A format writes its files of an artifact, checks them against the SavedModel's outputs on the build's
fixed inputs with a tolerance of its own, records them (each file's path from `Dist`, size, sha256 and
`.sha256` sidecar, in its typed record entry), and says where they go: below a bucket or a directory
(`<artifact>/<version><suffix>`, with a `.sha256` beside it), in a Hugging Face repository, on Kaggle
Models, and in the docs (`templates/formats/<name>.md.j2`, for a format of the record's `formats`).

Most formats are made once the SavedModel is final (`source = "saved_model"`: LiteRT from it, ONNX from
the `.keras` file, which it `needs`: the entries of the formats built before one are in `FormatJob.made`). One made
from the in-memory Keras model (`source = "model"`: the `.keras` file) writes its file in `prepare`
while the model exists, and checks it in `build` once the build has freed the model.
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from hubpub.errors import HubpubError

if TYPE_CHECKING:
    from hubpub.layout import Dist
    from hubpub.manifest.values import Artifact, Variant
    from hubpub.record import BuildRecord


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
    variant: Variant | None = None  # the manifest's settings of the variant (LiteRT's formats, its gate)
    random_weights: bool = False  # a build that cannot be published (quality gates say, not refuse)
    prepared: Any = None  # what `prepare` gave, for a format made from the Keras model
    made: Mapping[str, tuple] | None = None  # the record entries of the formats built before it, by name
    session: Any = None  # what `Format.session` opened for the variant's artifacts


class Format(ABC):
    """One format of an artifact, built through this seam."""

    name: ClassVar[str]  # "onnx": the record's and the CLI's name (`--no-onnx`)
    title: ClassVar[str]  # "ONNX"
    suffix: ClassVar[str]  # ".onnx": after `<artifact>` in dist/, after `<version>` at a destination
    extra: ClassVar[str | None]  # the pip extra its libraries come in (`pip install "hubpub[onnx]"`); None: core
    kaggle_framework: ClassVar[str | None] = None  # its Kaggle Models framework, if Kaggle has one
    runner: ClassVar[str]  # what runs it downstream, as `hubpub verify` says: "onnxruntime"
    tolerance: ClassVar[float]  # max |Δ| from the SavedModel on the build's inputs (`hubpub.tolerances`)
    content_type: ClassVar[str] = "application/octet-stream"
    source: ClassVar[str] = "saved_model"  # or "model": made from the in-memory Keras model (`prepare`)
    beside: ClassVar[bool] = False  # its work is a child process: built in a thread beside the other formats
    in_formats: ClassVar[bool] = True  # its entries are the record's generic `formats` (FormatFile)
    hf_library: ClassVar[str | None] = None  # the library the Hugging Face Hub lists its repository under
    hf_tags: ClassVar[tuple[str, ...]] = ()  # its repository card's tags [default: its name]
    needs: ClassVar[tuple[str, ...]] = ()  # the formats whose files it is made from (built before it)

    @property
    def hf_suffix(self) -> str:
        """Its Hugging Face repository's name after `ORG/<artifact>`: one repository per format."""
        return f"-{self.name}"

    @property
    def holds(self) -> str:
        """What its hub folder or repository holds, as a card says it."""
        return f"the {self.title} file (`{self.runner}`)"

    def path(self, dist: Dist, artifact: str) -> Path:
        return dist.format_file(self.name, artifact, self.suffix)

    def doc_values(self) -> dict:
        """What its template text says beyond the record (ONNX: the opset)."""
        return {}

    def wanted(self, job: FormatJob) -> str | None:
        """None if the format is built for this artifact, else why not (said in the build's log)."""
        return None

    def available(self) -> bool:
        """Whether its libraries are installed (else the build says which extra to install)."""
        from hubpub.extras import installed

        return self.extra is None or installed(self.extra)

    def session(self) -> contextlib.AbstractContextManager:
        """What its builds of one variant's artifacts share (ONNX: its conversion process), entered before
        the first and left after the last; handed to `build` as `job.session`."""
        return contextlib.nullcontext()

    def prepare(self, job: FormatJob, model, build_portable) -> Any:
        """For `source = "model"`: the work that needs the in-memory Keras `model` (and `build_portable()`,
        the family's portable graph of it), done while it exists; handed to `build` as `job.prepared`."""
        return None

    def discard(self, prepared: Any) -> None:
        """Release what `prepare` made (temp files) when the build stops before `build` takes it."""
        return None

    def entries(self, record: BuildRecord) -> tuple:
        """Its typed entries in a build record (each with `path`, `sha256`, `size`)."""
        return tuple(f for f in record.formats if f.format == self.name)

    def record_fields(self, fields: dict, entries: tuple) -> dict:
        """The build record's fields (`keras`, `litert`, `formats`) with what `build` returned, given those
        the formats before it in the registry set: the generic `formats` gather every such format's files."""
        return {"formats": (*fields.get("formats", ()), *entries)}

    def objects(self, artifact: Artifact, record: BuildRecord, dist: Dist) -> list[tuple[Path, str]]:
        """What a bucket or a directory holds of it: (file in dist/, object name), `.sha256` sidecars included."""
        obj = artifact.object_name(self.suffix)
        return [pair for f in self.entries(record)
                for pair in ((dist.root / f.path, obj), (dist.root / (f.path + ".sha256"), obj + ".sha256"))]

    def hub_files(self, record: BuildRecord, dist: Dist) -> list[tuple[str, Path]]:
        """What a hub's folder of it holds (a Kaggle variation, a Hugging Face repository): (name, file in dist/)."""
        return [(Path(f.path).name, dist.root / f.path) for f in self.entries(record)]

    def hub_sha256(self, record: BuildRecord) -> str | dict:
        """What a hub folder's `hubpub.json` says of its bytes: its file's sha256 (several files: by name)."""
        entries = self.entries(record)
        return entries[0].sha256 if len(entries) == 1 else {Path(f.path).name: f.sha256 for f in entries}

    def describe(self, record: BuildRecord) -> str:
        """Its files in a line (a Kaggle version's notes)."""
        return "; ".join(f"{self.title} sha256 {f.sha256}, max |Δ| {f.max_abs:.1e} from the SavedModel"
                         for f in self.entries(record))

    def downloads(self, artifact: Artifact, record: BuildRecord, links: dict, beside: bool) -> list[tuple]:
        """Its files among the site's downloads: (what, address, path in dist/, size, sha256); the address is
        relative to the site when it sits beside the files (`beside`: a bucket or directory), else from
        `links` (the docs' links of the artifact at its destination)."""
        return [(f"{self.title} ({self.suffix}), max |Δ| {f.max_abs:.1e} to the SavedModel",
                 f"../../{artifact.object_name(self.suffix)}" if beside else links["formats"][self.name],
                 f.path, f.size, f.sha256) for f in self.entries(record)]

    @abstractmethod
    def run(self, data: bytes, images: np.ndarray) -> np.ndarray:
        """The file's outputs on `images` (float32 NHWC in [0, 1]), run as its users run it: what `hubpub
        verify` compares with the build's record. Raises FormatError if the bytes do not load."""

    def run_file(self, path: Path, images: np.ndarray) -> np.ndarray:
        """`run` on a file where it lies (a format whose file names others beside it reads them there)."""
        return self.run(Path(path).read_bytes(), images)

    def companions(self, path: Path) -> tuple[str, ...]:
        """The names of the files beside `path` that its runtime reads with it (ONNX's external data), each a
        plain file name of its folder (FormatError for any other): what a download of it must fetch too."""
        return ()

    @abstractmethod
    def build(self, job: FormatJob) -> tuple:
        """Write the artifact's files (atomically: nothing under a final name unless it passed its check)
        and return their record entries."""
