"""Where a collection is published: the destinations, one module each, listed here.

`parse` reads an address once, asking each class in turn; nothing else in hubpub tests a scheme.
A docs base string (`public_url_base`: an http(s) URL, or a hub's own address) is read back with
`of_base`. To add a destination: a module with a `Destination` subclass (`base.py` says what it
gives), and one entry in `DESTINATIONS`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hubpub.destinations.base import (
    ArtifactLinks,
    Destination,
    Outcome,
    PublishJob,
    PublishResult,
    Stat,
    Upload,
    url_slug,
)
from hubpub.destinations.directory import Directory
from hubpub.destinations.gcs import Gcs
from hubpub.destinations.hf import HuggingFace
from hubpub.destinations.kaggle import Kaggle
from hubpub.destinations.links import url_links
from hubpub.errors import PublishError
from hubpub.urls import check_url

if TYPE_CHECKING:
    from hubpub.manifest.values import Artifact, Manifest

# Tried in this order; a directory takes any address without a scheme, so it comes last.
DESTINATIONS: tuple[type[Destination], ...] = (Gcs, Kaggle, HuggingFace, Directory)


def forms(*, hub: bool | None = None) -> str:
    """The address forms, for messages and help: all, or only the hubs' (`hub=True`) or the others'."""
    said = [d.form for d in DESTINATIONS if hub is None or d.is_hub == hub]
    return ", ".join(said[:-1]) + " or " + said[-1] if len(said) > 1 else said[0]


def is_bucket_url(text: str) -> bool:
    """A `gs://` address: TensorFlow's own file system reads it (verify hands it over as it is)."""
    return Gcs.parse(text) is not None


FORMS = forms()

__all__ = ["DESTINATIONS", "ArtifactLinks", "Destination", "Outcome", "PublishJob", "PublishResult", "Stat",
           "Upload", "forms", "is_bucket_url", "of_base", "parse", "public_url_base"]


def parse(text: str) -> Destination:
    """The destination an address names; `PublishError` saying the forms when none reads it."""
    text = str(text)
    for kind in DESTINATIONS:
        if (dest := kind.parse(text)) is not None:
            return dest
    raise PublishError(f"{text!r}: a destination is {FORMS}")


def public_url_base(dest: Destination, manifest: Manifest, override: str | None = None) -> str:
    """The base `dest`'s docs link to: `override` (`--public-url`) wins; the manifest's `public_url_base`
    belongs to the manifest's own destination; else the destination's own (a bucket's public URL, a
    hub's address), and a directory has none."""
    if dest.is_hub:
        if override:
            raise PublishError(f"--public-url: {dest} has fixed addresses; give --public-url only for a directory")
        return dest.own_url_base()
    if override:
        try:
            check_url(override, base=True)
        except ValueError as e:
            raise PublishError(f"--public-url: {e}") from None
        return override.rstrip("/")
    if dest.same_as(parse(manifest.publish.destination)):
        return manifest.publish.public_url_base.rstrip("/")
    return dest.own_url_base()


def of_base(base: str) -> Destination | None:
    """The hub a docs base names (`kaggle://OWNER/MODEL`, `hf://ORG`), None for a URL base."""
    for kind in DESTINATIONS:
        if kind.is_hub and (dest := kind.parse(base)) is not None:
            return dest
    return None


def artifact_links(base: str, publisher: str, artifact: Artifact, doc_path: str) -> ArtifactLinks:
    """Where a reader finds `artifact` at the destination read from `base`."""
    hub = of_base(base)
    return hub.links(base, publisher, artifact, doc_path) if hub else url_links(base, publisher, artifact, doc_path)


def where(base: str) -> str:
    """The destination in words, for a doc's prose."""
    hub = of_base(base)
    return hub.where(base) if hub else f"under {base}"


def notebooks_folder(base: str) -> str:
    """The folder of the usage notebooks that load from the destination read from `base`."""
    hub = of_base(base)
    return hub.notebooks_folder(base) if hub else url_slug(base)
