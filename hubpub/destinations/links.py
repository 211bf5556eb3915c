"""Addresses below a URL base (a bucket's public URL, a served directory): the layout of a published
collection, `<artifact>/<version>.<ext>` beside `docs/` and `site/`, in one place. The hubs fix their own
addresses (`kaggle.py`, `hf.py`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from hubpub.destinations.base import ArtifactLinks

if TYPE_CHECKING:
    from hubpub.manifest.values import Artifact


def tfhub_url(publisher: str, artifact: Artifact) -> str:
    """The name in the tfhub.dev format, never a link: tfhub.dev takes no new models."""
    return f"https://tfhub.dev/{publisher}/{artifact.name}/{artifact.version}"


def url_links(base: str, publisher: str, artifact: Artifact, doc_path: str) -> ArtifactLinks:
    """The links of an artifact published below the URL `base`."""
    from hubpub.formats import FILE_FORMATS

    return ArtifactLinks(asset_url=f"{base}/{artifact.asset_object}", keras_url=f"{base}/{artifact.keras_object}",
                         keras_source="url", page_url=None, doc_url=f"{base}/{doc_path}",
                         tfhub_url=tfhub_url(publisher, artifact),
                         litert_prefix=f"{base}/{artifact.name}/{artifact.version}.",
                         formats={f.name: f"{base}/{format_object(artifact, f)}" for f in FILE_FORMATS})


def format_object(artifact: Artifact, fmt) -> str:
    """A format's file below a bucket or directory: beside the tarball, `<artifact>/<version><suffix>`."""
    return artifact.object_name(fmt.suffix)
