"""The build record of an artifact (`reports/<artifact>.json`) and the build-all summary, as typed
values: written and read here only. A record of another schema version is not read (its artifact
is rebuilt), never half-understood."""

from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import dataclass, field
from pathlib import Path

from hubpub._files import write_if_changed, write_json
from hubpub.errors import HubpubError

# 3: the Keras 3 file; 4: LiteRT files; 5: formats of the format seam (ONNX); 6: ONNX from the .keras file,
# with external data
SCHEMA_VERSION = 6


class RecordError(HubpubError):
    """A build record cannot be read: missing, not JSON, another schema, or incomplete."""


@dataclass(frozen=True)
class CheckpointInfo:
    source: str
    sha256: str
    layout: str  # "official", "timm", ...; "model file" for a family without porting
    format: str


@dataclass(frozen=True)
class ParityInfo:
    status: str  # "passed", "skipped (...)"
    tolerance: float | None
    max_abs: float | None
    runs: tuple[dict, ...] = ()  # per input size: `ParityReport.to_dict()`


@dataclass(frozen=True)
class RoundTrip:
    tolerance: float
    call: float
    serving_default: float

    @property
    def max_abs(self) -> float:
        return max(self.call, self.serving_default)


@dataclass(frozen=True)
class Tarball:
    path: str  # relative to dist/
    sha256: str
    size: int
    members: tuple[str, ...]


@dataclass(frozen=True)
class KerasFile:
    """The `.keras` artifact: layers Keras ships, loads with `keras.saving.load_model` without hubpub."""

    path: str  # relative to dist/
    sha256: str
    size: int
    max_abs: float  # reloaded on the TensorFlow backend against the SavedModel's outputs


@dataclass(frozen=True)
class LiteRTFile:
    """A LiteRT flatbuffer, and how it agrees with the SavedModel on the parity inputs and photos."""

    format: str  # float32, float16, dynamic_int8, int8
    path: str  # relative to dist/
    sha256: str
    size: int
    max_abs: float
    cosine: float  # the smallest over the inputs
    top1_agreement: float
    top5_agreement: float


@dataclass(frozen=True)
class ExternalData:
    """The file beside a format's file that holds its tensors (ONNX's external data): one artifact with it."""

    path: str  # relative to dist/; the format's file names it by its file name
    sha256: str
    size: int


@dataclass(frozen=True)
class FormatFile:
    """One file of a format built through the format seam (`hubpub.formats`): where it is, what it
    holds, and how close it came to the SavedModel on the build's fixed inputs."""

    format: str  # the format's name: "onnx"
    path: str  # relative to dist/
    sha256: str
    size: int
    max_abs: float
    tolerance: float
    data: ExternalData | None = None  # its tensors' file beside it, for a model too large for one file


@dataclass(frozen=True)
class Output:
    name: str  # "logits" or "feature_vector"
    dim: int


@dataclass(frozen=True)
class BuildRecord:
    """Everything a build proved about one artifact; the docs, publish and verify read it."""

    artifact: str
    variant: str
    kind: str
    family: str
    version: int
    hubpub_version: str
    input_convention: str
    random_weights: bool
    checkpoint: CheckpointInfo
    parameters: int
    parity: ParityInfo
    round_trip: RoundTrip
    tarball: Tarball
    saved_model: str  # relative to dist/
    output: Output
    signatures: dict[str, dict]
    timings: dict[str, float]
    reference: dict  # what `verify` compares with (`hubpub.verify.reference_record`)
    preprocess_gap: dict | None
    inputs_key: str | None = None  # what the artifact's bytes depend on (build-all's incremental check)
    # the build process's peak resident set so far at the end of each stage run on its main thread, MiB
    # (Linux): the largest is what a machine needs for the variant, the first stage to reach it set it
    peak_rss_mb: dict[str, int] = field(default_factory=dict)
    keras: KerasFile | None = None  # None when built without it (--no-keras)
    litert: tuple[LiteRTFile, ...] = ()  # none for variants above the manifest's size, or with --no-litert
    formats: tuple[FormatFile, ...] = ()  # the files of the formats in `hubpub.formats` (ONNX), as built
    schema_version: int = SCHEMA_VERSION

    def artifact_entries(self) -> tuple:
        """The entry (`path` relative to dist/, `sha256`, `size`) of every file a user downloads of this artifact."""
        keras = (self.keras,) if self.keras is not None else ()
        data = tuple(f.data for f in self.formats if f.data is not None)
        return (self.tarball, *keras, *self.litert, *self.formats, *data)

    def artifact_files(self) -> tuple[str, ...]:
        """Every file a user downloads of this artifact (relative to dist/): what gets a `.sha256` and a
        `.sig`."""
        return tuple(f.path for f in self.artifact_entries())

    def format_file(self, name: str) -> FormatFile | None:
        return next((f for f in self.formats if f.format == name), None)

    def replace(self, **changes) -> BuildRecord:
        return dataclasses.replace(self, **changes)


def write_record(path: Path, record: BuildRecord) -> Path:
    return write_json(path, dataclasses.asdict(record))


def read_record(path: Path) -> BuildRecord:
    """Read a build record; `RecordError` says why not (the caller decides: rebuild, or tell the user)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as e:
        raise RecordError(f"{path}: cannot read the build report: {e.strerror or e}") from None
    except ValueError as e:
        raise RecordError(f"{path}: not a build report (invalid JSON: {e})") from None
    if not isinstance(data, dict) or data.get("schema_version") != SCHEMA_VERSION:
        found = data.get("schema_version") if isinstance(data, dict) else None
        raise RecordError(f"{path}: not a build report of this hubpub (schema {found}, expected {SCHEMA_VERSION}); "
                          "rebuild the artifact")
    try:
        return _build(BuildRecord, data)
    except (KeyError, TypeError, ValueError) as e:
        raise RecordError(f"{path}: incomplete build report ({type(e).__name__}: {e}); rebuild the artifact") from None


def _build(cls, data: dict):
    """A dataclass from its `asdict` form: nested dataclasses and tuples restored, unknown keys refused."""
    hints = typing.get_type_hints(cls)
    unknown = set(data) - {f.name for f in dataclasses.fields(cls)}
    if unknown:
        raise KeyError(f"unknown fields {sorted(unknown)}")
    values = {}
    for f in dataclasses.fields(cls):
        if f.name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise KeyError(f.name)
            continue
        value, hint = data[f.name], hints[f.name]
        nested = next((t for t in (hint, *typing.get_args(hint)) if dataclasses.is_dataclass(t)), None)
        if typing.get_origin(hint) is tuple:  # a tuple, of records or of plain values
            value = tuple(_build(nested, v) if nested is not None else v for v in value)
        elif nested is not None and value is not None:  # a record, or an optional one
            value = _build(nested, value)
        values[f.name] = value
    return cls(**values)


# --------------------------------------------------------------------------- build-all summary


@dataclass(frozen=True)
class ArtifactRow:
    """One line of `build-report.json`."""

    artifact: str
    variant: str
    kind: str
    status: str  # "built", "up to date", "failed"
    seconds: float
    parameters: int | None = None
    tarball_size: int | None = None
    tarball_sha256: str | None = None
    parity_max_abs: float | None = None
    random_weights: bool = False
    error: str | None = None


@dataclass(frozen=True)
class BuildSummary:
    hubpub_version: str
    manifest: str
    shard: str | None
    jobs: int
    threads_per_worker: int | None
    artifacts: tuple[ArtifactRow, ...] = field(default_factory=tuple)
    scheduler: str | None = None  # the Dask cluster it ran on (`--scheduler`), else None: this machine

    @property
    def failed(self) -> list[str]:
        return sorted({r.variant for r in self.artifacts if r.status == "failed"})


def write_summary(path: Path, summary: BuildSummary) -> Path:
    data = {**dataclasses.asdict(summary), "failed": summary.failed}
    write_if_changed(path, json.dumps(data, indent=2, sort_keys=True) + "\n")  # as write_json, if changed
    return path


def read_records(folder: Path) -> dict[str, BuildRecord]:
    """Every artifact's build record in a reports folder (not the eval or parity reports), by artifact."""
    paths = sorted(folder.glob("*.json")) if folder.is_dir() else []
    return {p.name.removesuffix(".json"): read_record(p) for p in paths
            if not p.name.endswith((".eval.json", ".parity.json"))}
