"""The manifest's schema: what `collection.yaml` may say, as pydantic models (typed, strict, frozen).
The loader (`load.py`) reports what they refuse with its place in the file; the architectures are each
validated by their family, the destinations by `hubpub.destinations`."""

from __future__ import annotations

from typing import Annotated, Literal
from urllib.parse import urlparse

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from hubpub import tolerances
from hubpub.datasets import Dataset

Kind = Literal["classifier", "feature-extractor"]
KINDS: tuple[Kind, ...] = ("classifier", "feature-extractor")
SCHEMA_VERSION = 2
LiteRTFormat = Literal["float32", "float16", "dynamic_int8", "int8"]
LITERT_FORMATS: tuple[LiteRTFormat, ...] = ("float32", "float16", "dynamic_int8", "int8")

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


class SigningSettings(_Strict):
    """How `publish` signs the artifact files (a `.sig` beside each); the command line's options win."""

    key: str | None = Field(default=None, description="EC private key (PEM) to sign with, relative to the manifest")
    public_key: str | None = Field(default=None, description="its public half (PEM), for the docs: its "
                                   "fingerprint and the key itself; default: derived from `key`")
    sigstore: bool = Field(default=False, description="sign keyless with Sigstore (an OIDC identity, in CI)")
    identity: str | None = Field(default=None, description="with sigstore: the signer's identity the docs name")
    issuer: str | None = Field(default=None, description="with sigstore: the identity's OIDC issuer")
    required: bool = Field(default=False, description="publish refuses to upload anything unsigned")


class PublishSettings(_Strict):
    destination: str = Field(description="gs://bucket/prefix or a local directory")
    public_url_base: str
    public: bool = Field(default=False, description="on Kaggle and the HF Hub: public models (default private)")
    hubs: list[str] = Field(default_factory=list, description="kaggle://OWNER/MODEL and hf://ORG where the "
                            "collection is also published: the site links each artifact's page there")

    @field_validator("public_url_base")
    @classmethod
    def _base(cls, v: str) -> str:
        return _check_url(v, ("https", "http"), base=True).rstrip("/")


class LiteRTSettings(_Strict):
    """Which variants get LiteRT (TFLite) files, and how far a quantized file may stray."""

    max_parameters: int = Field(default=30_000_000, ge=0, description="by default, variants up to this size")
    formats: list[LiteRTFormat] = Field(default_factory=lambda: list(LITERT_FORMATS))
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
    formats: dict[Name, bool] = Field(default_factory=dict, description="the formats of hubpub.formats to build, "
                                      "by name (`onnx: false` as --no-onnx); default: every one installed")
    publish: PublishSettings
    signing: SigningSettings = Field(default_factory=SigningSettings)
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
