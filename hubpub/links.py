"""Where a reader finds each artifact at one destination: every URL form, made in one place.

A bucket or a served directory has one URL base (`https://.../prefix`); a hub is its own base
(`kaggle://OWNER/MODEL`, `hf://ORG`, see `hubpub.destination`) and fixes the addresses itself:
- Kaggle Models: one model for the collection, per artifact a variation under `tensorFlow2` (the
  SavedModel, which `hub.KerasLayer` loads from the variation's URL) and one under `keras`.
- Hugging Face Hub: one repository per artifact, each version a tag `v<N>`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from hubpub.errors import PublishError

KAGGLE_WEB = "https://www.kaggle.com/models"
HF_WEB = "https://huggingface.co"
# What a Hugging Face repository holds besides the Keras files: the SavedModel, as a tree and as
# the tarball `hub.KerasLayer` loads from the tag's resolve URL.
HF_SAVED_MODEL_DIR = "saved_model"
HF_TARBALL = "saved_model.tar.gz"
HF_KERAS_FILE = "model.keras"
HF_LITERT_DIR = "litert"


@dataclass(frozen=True)
class ArtifactLinks:
    asset_url: str  # what hub.KerasLayer loads
    keras_url: str  # the .keras file's URL, or the hub handle a Keras user loads (see keras_source)
    keras_source: str  # "url" (get_file then load_model), "kaggle" (kagglehub handle) or "hf" (hf://)
    page_url: str | None  # the hub's own page for the artifact; None at a bucket or directory
    doc_url: str | None  # the published tfhub.dev-format doc; None on a hub (its page is the doc)
    tfhub_url: str  # the name in the tfhub.dev format, never a link: tfhub.dev takes no new models
    litert_prefix: str = ""  # a LiteRT file's URL is this + "<format>.tflite"

    def litert_url(self, fmt: str) -> str:
        return f"{self.litert_prefix}{fmt}.tflite"


def kaggle_variation(artifact: str) -> str:
    """The Kaggle variation slug of an artifact: lowercase, single hyphens (`net_small_1k_224_fe`
    -> `net-small-1k-224-fe`)."""
    slug = re.sub(r"[^a-z0-9]+", "-", artifact.lower()).strip("-")
    if not slug:
        raise PublishError(f"{artifact!r}: no Kaggle variation slug can be made from this name")
    return slug


def hf_repo(owner: str, artifact: str) -> str:
    """The Hugging Face repository of an artifact."""
    return f"{owner}/{artifact}"


def artifact_links(base: str, publisher: str, name: str, version: int, asset_object: str, keras_object: str,
                   doc_path: str) -> ArtifactLinks:
    """The links of artifact `name` (version `version`) published at `base`."""
    tfhub = f"https://tfhub.dev/{publisher}/{name}/{version}"
    if base.startswith("kaggle://"):
        owner, model = base[9:].split("/")
        variation = kaggle_variation(name)
        return ArtifactLinks(
            asset_url=f"{KAGGLE_WEB}/{owner}/{model}/tensorFlow2/{variation}/{version}",
            keras_url=f"{owner}/{model}/keras/{variation}/{version}", keras_source="kaggle",
            page_url=f"{KAGGLE_WEB}/{owner}/{model}/tensorFlow2/{variation}", doc_url=None, tfhub_url=tfhub,
            litert_prefix=f"{KAGGLE_WEB}/{owner}/{model}/tfLite/{variation}/{version}/{name}.")
    if base.startswith("hf://"):
        repo = hf_repo(base[5:], name)
        return ArtifactLinks(
            asset_url=f"{HF_WEB}/{repo}/resolve/v{version}/{HF_TARBALL}", keras_url=f"hf://{repo}",
            keras_source="hf", page_url=f"{HF_WEB}/{repo}", doc_url=None, tfhub_url=tfhub,
            litert_prefix=f"{HF_WEB}/{repo}/resolve/v{version}/{HF_LITERT_DIR}/{name}.")
    return ArtifactLinks(asset_url=f"{base}/{asset_object}", keras_url=f"{base}/{keras_object}", keras_source="url",
                         page_url=None, doc_url=f"{base}/{doc_path}", tfhub_url=tfhub,
                         litert_prefix=f"{base}/{name}/{version}.")


def notebooks_folder(base: str) -> str:
    """The folder of the usage notebooks that load from `base` (`localhost-8000`, `kaggle-owner-model`,
    `hf-org`, `storage.googleapis.com-bucket-prefix`): each destination's docs link notebooks that load
    from it, so publishing one build to two destinations never makes one's links open the other's."""
    scheme, _, rest = base.partition("://")
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", rest).strip("-.")
    return f"{scheme}-{slug}" if scheme in ("kaggle", "hf") else slug


def where(base: str) -> str:
    """The destination in words, for a doc's prose."""
    if base.startswith("kaggle://"):
        return f"on Kaggle Models ({KAGGLE_WEB}/{base[9:]})"
    if base.startswith("hf://"):
        return f"on the Hugging Face Hub ({HF_WEB}/{base[5:]})"
    return f"under {base}"
