"""Where a collection is published, and the public URL its files are read from there.

Parsed and printed in one place. The public URL decides what the docs link to (`asset-path`, the
collection's links) and what `verify` loads, so it always comes from the destination actually used.
A hub (`kaggle://OWNER/MODEL`, `hf://ORG`) has no single URL base: its "base" is the destination
itself, and `hubpub.links` turns it into each artifact's URLs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from hubpub.errors import PublishError
from hubpub.urls import check_url

GCS_PUBLIC_BASE = "https://storage.googleapis.com"
FORMS = "gs://BUCKET/PREFIX, a local directory, kaggle://OWNER/MODEL or hf://ORG"
# Kaggle's slug rules, as its CLI checks them (`_validate_slug_syntax`): owners may use underscores.
KAGGLE_OWNER = re.compile(r"^[a-z0-9]+(?:[_-][a-z0-9]+)*$")
KAGGLE_SLUG = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
# Hugging Face user and organization names.
HF_NAMESPACE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,94}[A-Za-z0-9])?$")
# Cloud Storage bucket names (cloud.google.com/storage/docs/buckets#naming): 3-63 characters of lowercase
# letters, digits, '-', '_' and '.', starting and ending with a letter or digit (dotted names up to 222).
GCS_BUCKET = re.compile(r"^[a-z0-9](?:[a-z0-9._-]{1,61}|[a-z0-9._-]{62,220})[a-z0-9]$")
# The object prefix below the bucket: it becomes part of public URLs, so URL-safe characters only.
GCS_PREFIX = re.compile(r"^[A-Za-z0-9._~-]+(?:/[A-Za-z0-9._~-]+)*$")


@dataclass(frozen=True)
class Destination:
    """`gs://bucket/prefix`, a local directory, or a hub: `kaggle://OWNER/MODEL`, `hf://ORG`."""

    bucket: str | None
    prefix: str
    path: Path | None = None
    hub: str | None = None  # "kaggle" or "hf"
    owner: str | None = None  # the Kaggle owner or the Hugging Face user or organization
    model: str | None = None  # the Kaggle model slug

    @classmethod
    def parse(cls, text: str | Path) -> Destination:
        text = str(text)
        if text.startswith("kaggle://"):
            owner, _, model = text[9:].strip("/").partition("/")
            if not KAGGLE_OWNER.match(owner) or not KAGGLE_SLUG.match(model) or "/" in model:
                raise PublishError(f"{text!r}: a Kaggle destination is kaggle://OWNER/MODEL, both lowercase letters, "
                                   "digits and single hyphens (the owner may use underscores)")
            return cls(bucket=None, prefix="", hub="kaggle", owner=owner, model=model)
        if text.startswith("hf://"):
            owner = text[5:].strip("/")
            if not HF_NAMESPACE.match(owner):
                raise PublishError(f"{text!r}: a Hugging Face destination is hf://ORG (a user or organization name; "
                                   "each artifact becomes a repository ORG/ARTIFACT)")
            return cls(bucket=None, prefix="", hub="hf", owner=owner)
        if text.startswith("gs://"):
            bucket, _, prefix = text[5:].partition("/")
            prefix = prefix.strip("/")
            if not bucket:
                raise PublishError(f"{text!r}: no bucket name in the destination")
            if not GCS_BUCKET.match(bucket) or ".." in bucket or bucket.startswith("goog"):
                raise PublishError(f"{text!r}: {bucket!r} is not a valid Cloud Storage bucket name (3-63 lowercase "
                                   "letters, digits, '-', '_' and '.', starting and ending with a letter or digit)")
            if prefix and (not GCS_PREFIX.match(prefix) or ".." in prefix.split("/")):
                raise PublishError(f"{text!r}: the prefix {prefix!r} may hold only letters, digits, '.', '_', "
                                   "'~', '-' and '/' (it becomes part of the public URLs)")
            return cls(bucket=bucket, prefix=prefix)
        if "://" in text:
            raise PublishError(f"{text!r}: a destination is {FORMS}")
        if not text.strip():
            raise PublishError(f"the destination is empty: give {FORMS}")
        return cls(bucket=None, prefix="", path=Path(text))

    @property
    def is_gcs(self) -> bool:
        return self.bucket is not None

    @property
    def is_hub(self) -> bool:
        return self.hub is not None

    def key(self, relative: str) -> str:
        """The object name (or path below the directory) of `relative`."""
        return f"{self.prefix}/{relative}" if self.prefix else relative

    def same_as(self, other: Destination) -> bool:
        if self.is_hub or other.is_hub:
            return (self.hub, self.owner, self.model) == (other.hub, other.owner, other.model)
        if self.is_gcs or other.is_gcs:
            return (self.bucket, self.prefix) == (other.bucket, other.prefix)
        return self.path.resolve() == other.path.resolve()

    def __str__(self) -> str:
        if self.hub == "kaggle":
            return f"kaggle://{self.owner}/{self.model}"
        if self.hub == "hf":
            return f"hf://{self.owner}"
        return f"gs://{self.bucket}/{self.prefix}".rstrip("/") if self.is_gcs else str(self.path)


def public_url_base(dest: Destination, *, manifest_destination: str, manifest_url_base: str,
                    override: str | None = None) -> str:
    """The https URL under which `dest`'s objects are read.

    `override` (`--public-url`) wins; the manifest's `public_url_base` belongs to the manifest's own
    destination; any other bucket is read from storage.googleapis.com. A local directory has no URL
    of its own: it needs `--public-url`, the address it will be served from. A hub is its own base
    (`kaggle://OWNER/MODEL`, `hf://ORG`): its pages and files have fixed addresses.
    """
    if dest.is_hub:
        if override:
            raise PublishError(f"--public-url: {dest} has fixed addresses; give --public-url only for a directory")
        return str(dest)
    if override:
        try:
            check_url(override, base=True)
        except ValueError as e:
            raise PublishError(f"--public-url: {e}") from None
        return override.rstrip("/")
    if dest.same_as(Destination.parse(manifest_destination)):
        return manifest_url_base.rstrip("/")
    if dest.is_gcs:
        return f"{GCS_PUBLIC_BASE}/{dest.bucket}" + (f"/{dest.prefix}" if dest.prefix else "")
    raise PublishError(f"{dest}: a local destination has no public URL of its own; pass --public-url with "
                       "the http(s) address it will be served from (the docs link there)")
