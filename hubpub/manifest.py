"""The collection manifest (`collection.yaml`): loaded, validated, and turned into frozen values.

Every later stage receives these values; nothing is guessed from file names. Validation reports
every problem in one run, each with its place in the file (`variants[3].checkpoint.url, line 42`).
Each `architectures` entry names its family (`hubpub.families`), which validates the rest of it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urljoin, urlparse

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
)

from hubpub import tolerances
from hubpub.datasets import Dataset, builtin_datasets
from hubpub.errors import ManifestError
from hubpub.families import FAMILIES, ArchConfig, Family
from hubpub.resources import data_dir

KINDS = ("classifier", "feature-extractor")
Kind = Literal["classifier", "feature-extractor"]
SCHEMA_VERSION = 2

# Names that end up in URLs, file names and doc headings: no spaces, no slashes, no newlines.
Handle = Annotated[str, StringConstraints(pattern=r"^[a-z0-9-]+$")]
Name = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")]
Line = Annotated[str, StringConstraints(pattern=r"^[^\r\n]+$", strip_whitespace=True)]
Sha256 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


def _check_url(value: str, schemes: tuple[str, ...], *, base: bool = False) -> str:
    from hubpub.urls import check_url

    return check_url(value, schemes, base=base)


class Publisher(_Strict):
    handle: Handle = Field(description="lowercase tfhub.dev publisher handle")
    name: Line
    description: Line
    url: str | None = None

    @field_validator("url")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        return None if v is None else _check_url(v, ("https", "http"))


class Collection(_Strict):
    name: Name
    version: int = Field(default=1, gt=0)
    description: Line
    title: Annotated[str, StringConstraints(min_length=5, max_length=50, pattern=r"^[^\r\n]+$")] | None = Field(
        default=None, description="on Kaggle and the HF Hub; default: the families' names")
    subtitle: Annotated[str, StringConstraints(min_length=20, max_length=80, pattern=r"^[^\r\n]+$")] | None = Field(
        default=None, description="Kaggle's one-line subtitle; default: the description's first sentence")
    model_version: int = Field(default=1, gt=0, description="published version of each artifact")


License = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9.+-]*$")]


class DocDefaults(_Strict):
    license: License = Field(default="mit", description="license of the weights, lowercase SPDX-style id")
    network_architecture: Handle | None = Field(default=None, description="default: the family's tfhub.dev id")
    format: Literal["saved_model_2", "saved_model", "hub"] = "saved_model_2"
    fine_tunable: bool = True
    colab: dict[Kind, str] = Field(default_factory=dict)

    @field_validator("colab")
    @classmethod
    def _colab(cls, v: dict[str, str]) -> dict[str, str]:
        for url in v.values():
            _check_url(url, ("https",))
            if urlparse(url).netloc != "colab.research.google.com":
                raise ValueError(f"colab URL must be on colab.research.google.com: {url!r}")
        return v


class NotebookSettings(_Strict):
    """Where the usage notebooks are published: a folder of a GitHub repository, which Colab opens
    directly (`colab.research.google.com/github/OWNER/REPO/blob/BRANCH/PATH/NAME.ipynb`)."""

    github: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9-]*/[A-Za-z0-9._-]+$")] = Field(
        description="OWNER/REPO")
    branch: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._/-]+$")] = "main"
    path: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._-]+(?:/[A-Za-z0-9._-]+)*$")] = Field(
        default="notebooks", description="folder inside the repository, relative to its root")

    @field_validator("path", "branch")
    @classmethod
    def _no_dot_dot(cls, v: str) -> str:
        if ".." in v.split("/") or v.endswith(".lock"):
            raise ValueError(f"not a folder inside the repository: {v!r}")
        return v

    def colab_url(self, notebook: str) -> str:
        return (f"https://colab.research.google.com/github/{self.github}/blob/{self.branch}/"
                f"{self.path}/{notebook}.ipynb")


class PublishSettings(_Strict):
    destination: str = Field(description="gs://bucket/prefix or a local directory")
    public_url_base: str
    public: bool = Field(default=False, description="on Kaggle and the HF Hub: public models (default private)")
    hubs: list[str] = Field(default_factory=list, description="kaggle://OWNER/MODEL and hf://ORG where the "
                            "collection is also published: the site links each artifact's page there")

    @field_validator("hubs")
    @classmethod
    def _hubs(cls, v: list[str]) -> list[str]:
        from hubpub.destination import Destination
        from hubpub.errors import PublishError

        for hub in v:
            try:
                if not Destination.parse(hub).is_hub:
                    raise ValueError(f"not a hub: {hub!r}; give kaggle://OWNER/MODEL or hf://ORG")
            except PublishError as e:
                raise ValueError(e.message) from None
        return v

    @field_validator("destination")
    @classmethod
    def _destination(cls, v: str) -> str:
        from hubpub.destination import Destination
        from hubpub.errors import PublishError

        try:
            if Destination.parse(v).is_hub:
                raise ValueError(f"destination must be gs://BUCKET/PREFIX or a local directory: {v!r} (a hub goes "
                                 "in publish.hubs, or use `hubpub publish --dest`)")
        except PublishError as e:
            raise ValueError(e.message) from None
        return v

    @field_validator("public_url_base")
    @classmethod
    def _base(cls, v: str) -> str:
        return _check_url(v, ("https", "http"), base=True).rstrip("/")


class LiteRTSettings(_Strict):
    """Which variants get LiteRT (TFLite) files, and how far a quantized file may stray."""

    max_parameters: int = Field(default=30_000_000, ge=0, description="by default, variants up to this size")
    formats: list[Literal["float32", "float16", "dynamic_int8", "int8"]] = Field(
        default_factory=lambda: ["float32", "float16", "dynamic_int8", "int8"])
    min_cosine: float = Field(default=tolerances.LITERT_MIN_COSINE, ge=0, le=1,
                              description="a quantized file below this fails the build")
    calibration: list[str] = Field(default_factory=list, description="image folders for int8 calibration, "
                                   "relative to the manifest, besides the sample photos")


class EvalPreprocessing(_Strict):
    """How the official evaluation resizes: `shorter` keeps the aspect ratio then centre-crops."""

    resize: Literal["shorter", "squash"]
    crop_pct: float = Field(gt=0, le=1)


class CheckpointRef(_Strict):
    url: str | None = None
    path: str | None = Field(default=None, description="a local file, relative to the manifest's folder")
    sha256: Sha256 | None = None


class VariantSpec(_Strict):
    name: Name
    architecture: str
    pretrain: Name = "imagenet-1k"
    finetune: Name | None = None
    num_classes: int = Field(gt=0)
    resolution: int = Field(gt=0)
    checkpoint: CheckpointRef
    top1: float | None = Field(default=None, ge=0, le=100)
    eval: EvalPreprocessing | None = None
    description: Line | None = None
    license: License | None = Field(default=None, description="the weights' license, if not docs.license")
    litert: bool | None = Field(default=None, description="LiteRT files; default: up to litert.max_parameters")


class ManifestModel(_Strict):
    schema_version: Literal[2]
    publisher: Publisher
    collection: Collection
    docs: DocDefaults = Field(default_factory=DocDefaults)
    notebooks: NotebookSettings | None = None
    litert: LiteRTSettings = Field(default_factory=LiteRTSettings)
    publish: PublishSettings
    checkpoint_base_url: str | None = None
    require_pinned: bool = Field(default=False, description="refuse to download a checkpoint without a sha256 "
                                 "(checkpoint.sha256 or collection.lock), as build-all --require-pinned")
    eval_presets: dict[int, EvalPreprocessing] = Field(default_factory=dict)
    datasets: dict[Name, Dataset] = Field(default_factory=dict)
    architectures: dict[Name, dict]  # each validated by the family it names
    variants: Annotated[list[VariantSpec], Field(min_length=1)]

    @field_validator("checkpoint_base_url")
    @classmethod
    def _base(cls, v: str | None) -> str | None:
        return None if v is None else _check_url(v, ("https", "http"))


# --------------------------------------------------------------------------- values for stages


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
    kind: str

    @property
    def name(self) -> str:
        return artifact_name(self.variant.name, self.kind)

    @property
    def version(self) -> int:
        return self.variant.version

    @property
    def asset_object(self) -> str:
        """The tarball's object name under the destination: one URL per version, never reused."""
        return f"{self.name}/{self.version}.tar.gz"

    def litert_object(self, fmt: str) -> str:
        """A LiteRT file's object name below the destination."""
        return f"{self.name}/{self.version}.{fmt}.tflite"

    @property
    def keras_object(self) -> str:
        """The Keras 3 file's object name, beside the tarball."""
        return f"{self.name}/{self.version}.keras"

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

    def colab_url(self, artifact: Artifact, public_url_base: str) -> str | None:
        """The Colab link of an artifact's usage notebook for the destination read from `public_url_base`:
        derived from `notebooks` (a folder per destination), else the manifest's own `docs.colab`."""
        from hubpub.links import notebooks_folder

        if self.notebooks is not None:
            return self.notebooks.colab_url(f"{notebooks_folder(public_url_base)}/{artifact.name}")
        return self.docs.colab.get(artifact.kind)

    def variant(self, name: str) -> Variant:
        for v in self.variants:
            if v.name == name:
                return v
        known = ", ".join(v.name for v in self.variants)
        raise ManifestError(str(self.path), [f"unknown variant {name!r}; known: {known}"])

    def artifacts(self, kinds: tuple[str, ...] = KINDS) -> list[Artifact]:
        return [a for v in self.variants for a in v.artifacts(kinds)]


# --------------------------------------------------------------------------- loading


# Bounds on what a manifest may be: the 24-variant ConvNeXt manifest is 8 KB and about 600 YAML
# nodes. A YAML alias "bomb" is small text whose aliases expand to billions of nodes.
MAX_MANIFEST_BYTES = 4 * 2**20
MAX_MANIFEST_NODES = 200_000


def load_manifest(path: str | Path) -> Manifest:
    """Read, validate and resolve a manifest; raise `ManifestError` listing every problem."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_MANIFEST_BYTES:
            raise ManifestError(str(path), [f"{size:,} bytes; a manifest may be at most {MAX_MANIFEST_BYTES:,}"])
        text = path.read_bytes().decode("utf-8")
    except OSError as e:
        raise ManifestError(str(path), [f"cannot read the manifest: {e.strerror or e}"]) from None
    except UnicodeDecodeError as e:
        line = path.read_bytes()[: e.start].count(b"\n") + 1
        raise ManifestError(str(path), [f"line {line}: not UTF-8 text (byte 0x{e.object[e.start]:02x} at offset "
                                        f"{e.start}); save the manifest as UTF-8"]) from None
    return parse_manifest(text, path)


def parse_manifest(text: str, path: str | Path = "<manifest>") -> Manifest:
    path = Path(path)
    if len(text) > MAX_MANIFEST_BYTES:
        raise ManifestError(str(path), [f"{len(text):,} characters; a manifest may be at most {MAX_MANIFEST_BYTES:,}"])
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        _check_size(node, path)
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark else ""
        problem = getattr(e, "problem", None) or str(e)
        raise ManifestError(str(path), [f"{where}invalid YAML: {problem}"]) from None
    if not isinstance(data, dict):
        raise ManifestError(str(path), ["the manifest must be a YAML mapping at the top level"])
    lines = _line_index(node)

    if data.get("schema_version") == 1:
        raise ManifestError(str(path), [
            f"line {lines.get(('schema_version',), 1)}: schema_version 1 is no longer read: in schema 2 every "
            f"architecture names its model family ({', '.join(FAMILIES)}) with that family's settings (see the "
            "README's manifest section); then set schema_version: 2"])
    problems: list[tuple[int, str]] = []
    model = None
    try:
        model = ManifestModel.model_validate(data)
    except ValidationError as e:
        problems += _validation_problems(e, (), lines)
    architectures = _architectures(data.get("architectures"), lines, problems)
    problems += _semantic_problems(data, lines)
    for i, folder in enumerate(model.litert.calibration if model else ()):
        loc = ("litert", "calibration", i)
        problems += [_problem(lines, loc, f"{_format_loc(loc)}: {p}") for p in _calibration_problems(path.parent,
                                                                                                      folder)]
    if model is not None:
        problems += _name_problems(model, lines)
    if problems:
        # sorted by line so the output reads top to bottom; duplicates (same place, same words) once
        unique = sorted(set(problems), key=lambda p: (p[0], p[1]))
        raise ManifestError(str(path), [msg for _, msg in unique])
    assert model is not None
    return _resolve(model, architectures, path)


# What int8 calibration reads: the files Pillow opens as images, by their suffix.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def _calibration_problems(root: Path, folder: str) -> list[str]:
    """A calibration folder must exist (missing, int8 would calibrate on the sample photos only) and hold
    only images Pillow can read (else the build fails after every other stage has run)."""
    from PIL import Image, UnidentifiedImageError

    where = root / folder
    if not where.is_dir():
        return [f"no folder {folder!r} beside the manifest"]
    files = sorted(p for p in where.rglob("*") if p.is_file() and not p.name.startswith("."))
    if not files:
        return [f"folder {folder!r} holds no images"]
    out = []
    for f in files:
        if f.suffix.lower() not in IMAGE_SUFFIXES:
            out.append(f"{f.relative_to(root)} is not an image ({', '.join(IMAGE_SUFFIXES)}); move it out of the "
                       "calibration folder")
            continue
        try:
            with Image.open(f) as image:  # reads the header only
                image.size  # noqa: B018
        except (UnidentifiedImageError, OSError) as e:
            out.append(f"{f.relative_to(root)} is not an image Pillow can read: {type(e).__name__}")
    return out[:10] + ([f"... and {len(out) - 10} more"] if len(out) > 10 else [])


# The longest artifact name every place it goes takes: a file name is at most 255 bytes, and the longest
# one hubpub writes is `.<artifact>.dynamic_int8.tflite.sha256.<pid>.tmp`; Hugging Face repository names
# are at most 96 characters (huggingface_hub's validate_repo_id). Kaggle documents no limit for a
# variation slug (only dataset slugs: 50), so none is guessed here.
MAX_FILE_ARTIFACT = 255 - len("..dynamic_int8.tflite.sha256.4194304.tmp")
MAX_HF_REPO_NAME = 96


def _name_problems(model: ManifestModel, lines: dict) -> list[tuple[int, str]]:
    """Variant names checked against the limits of every place their artifacts go: file names always, and
    the Hugging Face Hub when the manifest names it (`publish.hubs`); `publish --dest` checks its own
    before uploading, dry runs included."""
    out = []
    hubs = {h.split("://", 1)[0] for h in model.publish.hubs}
    for i, v in enumerate(model.variants):
        longest = artifact_name(v.name, "feature-extractor")
        limits = [("a file name", len(longest.encode()), MAX_FILE_ARTIFACT)]
        if "hf" in hubs:
            limits.append(("a Hugging Face repository name", len(longest), MAX_HF_REPO_NAME))
        for what, length, limit in limits:
            if length > limit:
                loc = ("variants", i, "name")
                out.append(_problem(lines, loc, f"{_format_loc(loc)}: {v.name[:40]!r}... makes the artifact name "
                                                f"{longest[:40]!r}... of {length} characters, too long for {what} "
                                                f"(at most {limit}; `_fe` included)"))
                break
    return out


def _validation_problems(error: ValidationError, prefix: tuple, lines: dict) -> list[tuple[int, str]]:
    out = []
    for err in error.errors():
        loc = prefix + tuple(err["loc"])
        out.append(_problem(lines, loc, f"{_format_loc(loc)}: {_message(err)}"))
    return out


def _architectures(raw, lines: dict, problems: list) -> dict[str, ArchConfig]:
    """Each entry validated by the family it names; problems located like the rest of the manifest."""
    out: dict[str, ArchConfig] = {}
    for key, entry in (raw or {}).items() if isinstance(raw, dict) else ():
        if not isinstance(entry, dict):
            continue  # the schema reports it
        family = FAMILIES.get(entry.get("family")) if isinstance(entry.get("family"), str) else None
        if family is None:
            loc = ("architectures", key, "family")
            said = (f"required field is missing; give one of {', '.join(sorted(FAMILIES))}" if "family" not in entry
                    else f"unknown family {entry.get('family')!r}; known: {', '.join(sorted(FAMILIES))}")
            problems.append(_problem(lines, loc, f"{_format_loc(loc)}: {said}"))
            continue
        try:
            out[key] = family.parse(entry)
        except ValidationError as e:
            problems += _validation_problems(e, ("architectures", key), lines)
    return out


def _resolve(m: ManifestModel, architectures: dict[str, ArchConfig], path: Path) -> Manifest:
    datasets = {key: DatasetRef(key, d.title, d.classes, path.parent / d.labels if d.labels else None, d.tfhub_id,
                                d.classes_note) for key, d in m.datasets.items()}
    builtin = {key: DatasetRef(key, d.title, d.classes, data_dir() / d.labels if d.labels else None, d.tfhub_id,
                               d.classes_note) for key, d in builtin_datasets().items()}
    datasets = builtin | datasets
    variants = []
    for spec in m.variants:
        url = spec.checkpoint.url
        if url is None:
            url = str(path.parent / spec.checkpoint.path)
        elif m.checkpoint_base_url and "://" not in url:
            url = urljoin(m.checkpoint_base_url.rstrip("/") + "/", url)
        variants.append(
            Variant(
                name=spec.name,
                architecture_name=spec.architecture,
                architecture=architectures[spec.architecture],
                pretrain=datasets[spec.pretrain],
                finetune=datasets[spec.finetune] if spec.finetune else None,
                num_classes=spec.num_classes,
                resolution=spec.resolution,
                checkpoint_url=url,
                checkpoint_sha256=spec.checkpoint.sha256,
                top1=spec.top1,
                eval=spec.eval or m.eval_presets[spec.resolution],
                description=spec.description,
                license=spec.license or m.docs.license,
                version=m.collection.model_version,
            )
        )
        v = variants[-1]
        size = v.parameter_count("classifier")
        wanted = spec.litert if spec.litert is not None else size is not None and size <= m.litert.max_parameters
        if wanted:
            variants[-1] = dataclasses.replace(
                v, litert_formats=tuple(m.litert.formats), litert_min_cosine=m.litert.min_cosine,
                litert_calibration=tuple(path.parent / c for c in m.litert.calibration))
    return Manifest(
        path=path,
        publisher=m.publisher,
        collection=m.collection,
        docs=m.docs,
        notebooks=m.notebooks,
        publish=m.publish,
        architectures=architectures,
        variants=tuple(variants),
        require_pinned=m.require_pinned,
    )


def _check_size(node: yaml.Node | None, path: Path) -> None:
    """Count the nodes as aliases expand them, and stop at the bound (before anything walks them all)."""
    count, stack = 0, [node] if node is not None else []
    while stack:
        n = stack.pop()
        count += 1
        if count > MAX_MANIFEST_NODES:
            raise ManifestError(str(path), [
                f"more than {MAX_MANIFEST_NODES:,} YAML nodes once aliases are expanded (an alias bomb?); "
                "a manifest this large is not supported"])
        if isinstance(n, yaml.MappingNode):
            for k, v in n.value:
                stack += (k, v)
        elif isinstance(n, yaml.SequenceNode):
            stack += n.value


def _semantic_problems(data: dict, lines: dict) -> list[tuple[int, str]]:
    """Cross-field rules, checked on the raw data so they run even when types are wrong."""
    out: list[tuple[int, str]] = []
    archs = data.get("architectures")
    arch_names = set(archs) if isinstance(archs, dict) else set()
    presets = data.get("eval_presets")
    preset_res = set(presets) if isinstance(presets, dict) else set()
    base = data.get("checkpoint_base_url")
    declared = data.get("datasets") if isinstance(data.get("datasets"), dict) else {}
    known_datasets = {k: d.classes for k, d in builtin_datasets().items()} | {
        k: d.get("classes") if isinstance(d, dict) else None for k, d in declared.items()}
    docs = data.get("docs")
    if data.get("notebooks") and isinstance(docs, dict) and docs.get("colab"):
        out.append(_problem(lines, ("docs", "colab"), "docs.colab: give either `notebooks` (hubpub writes the "
                            "notebooks and links them) or `docs.colab` (your own notebooks), not both"))
    variants = data.get("variants")
    if not isinstance(variants, list):
        return out
    seen: dict[str, int] = {}
    for i, v in enumerate(variants):
        if not isinstance(v, dict):
            continue
        at = f"variants[{i}]"
        name = v.get("name")
        if isinstance(name, str):
            if name in seen:
                out.append(_problem(lines, ("variants", i, "name"),
                                    f"{at}.name: duplicate variant name {name!r} "
                                    f"(first at variants[{seen[name]}])"))
            seen.setdefault(name, i)
        arch = v.get("architecture")
        if isinstance(arch, str) and arch_names and arch not in arch_names:
            out.append(_problem(lines, ("variants", i, "architecture"),
                                f"{at}.architecture: unknown architecture {arch!r}; "
                                f"known: {', '.join(sorted(arch_names))}"))
        for field in ("pretrain", "finetune"):
            if isinstance(v.get(field), str) and v[field] not in known_datasets:
                out.append(_problem(lines, ("variants", i, field),
                                    f"{at}.{field}: unknown dataset {v[field]!r}; known: "
                                    f"{', '.join(sorted(known_datasets))} (declare others under datasets:)"))
        dataset = v.get("finetune") or v.get("pretrain", "imagenet-1k")
        classes = v.get("num_classes")
        expected = known_datasets.get(dataset) if isinstance(dataset, str) else None
        if isinstance(classes, int) and expected and classes != expected:
            out.append(_problem(lines, ("variants", i, "num_classes"),
                                f"{at}.num_classes: {classes} classes on a {dataset} head; "
                                f"{dataset} has {expected}"))
        res = v.get("resolution")
        if v.get("eval") is None and isinstance(res, int) and res > 0 and res not in preset_res:
            out.append(_problem(lines, ("variants", i, "resolution"),
                                f"{at}.eval: no eval preprocessing for resolution {res}: "
                                f"add eval_presets.{res} or {at}.eval"))
        ckpt = v.get("checkpoint")
        url = ckpt.get("url") if isinstance(ckpt, dict) else None
        if isinstance(ckpt, dict) and ("url" in ckpt) == ("path" in ckpt):
            out.append(_problem(lines, ("variants", i, "checkpoint"),
                                f"{at}.checkpoint: give either url or path (a file beside the manifest)"))
        if isinstance(url, str):
            try:
                _check_url(url if "://" in url or not base else urljoin(str(base), url),
                           ("https", "http", "file"))
            except ValueError as e:
                hint = "" if base or "://" in url else " (relative, but no checkpoint_base_url)"
                out.append(_problem(lines, ("variants", i, "checkpoint", "url"),
                                    f"{at}.checkpoint.url: {e}{hint}"))
    return out


def _format_loc(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


def _message(err: dict) -> str:
    kind, msg = err["type"], err["msg"]
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "missing":
        return "required field is missing"
    if kind == "string_pattern_mismatch":
        pattern = err.get("ctx", {}).get("pattern", "")
        if pattern == Handle.__metadata__[0].pattern:
            return f"{err['input']!r} must be lowercase letters, digits and '-'"
        if pattern == Sha256.__metadata__[0].pattern:
            return f"{err['input']!r} is not a 64-character lowercase hex sha256"
        if "\\r\\n" in pattern:
            return "must be a single non-empty line (no newlines)"
        return f"{err['input']!r} is not a valid name (letters, digits, '_', '.', '-')"
    if kind == "value_error":
        return msg.removeprefix("Value error, ")
    if "input" in err and not isinstance(err["input"], dict | list):
        return f"{msg} (got {err['input']!r})"
    return msg


def _line_index(node: yaml.Node | None) -> dict[tuple, int]:
    """Map each location tuple (`("variants", 3, "checkpoint", "url")`) to its 1-based line."""
    index: dict[tuple, int] = {}

    def walk(n: yaml.Node, loc: tuple) -> None:
        index[loc] = n.start_mark.line + 1
        if isinstance(n, yaml.MappingNode):
            for k, v in n.value:
                key = k.value
                if isinstance(k, yaml.ScalarNode) and k.tag.endswith(":int"):
                    key = int(key)
                index[loc + (key,)] = k.start_mark.line + 1
                walk(v, loc + (key,))
                index[loc + (key,)] = k.start_mark.line + 1
        elif isinstance(n, yaml.SequenceNode):
            for i, item in enumerate(n.value):
                walk(item, loc + (i,))

    if node is not None:
        walk(node, ())
    return index


def _problem(lines: dict[tuple, int], loc: tuple, message: str) -> tuple[int, str]:
    for end in range(len(loc), -1, -1):
        if loc[:end] in lines:
            line = lines[loc[:end]]
            return line, f"line {line}: {message}"
    return 0, message


def iter_selected(manifest: Manifest, patterns: tuple[str, ...] = ()) -> Iterator[Variant]:
    """Variants whose names match any of the glob patterns (all of them when none is given)."""
    from fnmatch import fnmatchcase

    for v in manifest.variants:
        if not patterns or any(fnmatchcase(v.name, p) for p in patterns):
            yield v
