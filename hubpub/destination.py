"""Where a collection is published, and the public URL its files are read from there.

Parsed and printed in one place. The public URL decides what the docs link to (`asset-path`, the
collection's links) and what `verify` loads, so it always comes from the destination actually used.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from hubpub.errors import PublishError

GCS_PUBLIC_BASE = "https://storage.googleapis.com"


@dataclass(frozen=True)
class Destination:
    """`gs://bucket/prefix` or a local directory."""

    bucket: str | None
    prefix: str
    path: Path | None = None

    @classmethod
    def parse(cls, text: str | Path) -> Destination:
        text = str(text)
        if text.startswith("gs://"):
            bucket, _, prefix = text[5:].partition("/")
            if not bucket:
                raise PublishError(f"{text!r}: no bucket name in the destination")
            return cls(bucket=bucket, prefix=prefix.strip("/"))
        if "://" in text:
            raise PublishError(f"{text!r}: a destination is gs://BUCKET/PREFIX or a local directory")
        if not text.strip():
            raise PublishError("the destination is empty: give gs://BUCKET/PREFIX or a local directory")
        return cls(bucket=None, prefix="", path=Path(text))

    @property
    def is_gcs(self) -> bool:
        return self.bucket is not None

    def key(self, relative: str) -> str:
        """The object name (or path below the directory) of `relative`."""
        return f"{self.prefix}/{relative}" if self.prefix else relative

    def same_as(self, other: Destination) -> bool:
        if self.is_gcs or other.is_gcs:
            return (self.bucket, self.prefix) == (other.bucket, other.prefix)
        return self.path.resolve() == other.path.resolve()

    def __str__(self) -> str:
        return f"gs://{self.bucket}/{self.prefix}".rstrip("/") if self.is_gcs else str(self.path)


def public_url_base(dest: Destination, *, manifest_destination: str, manifest_url_base: str,
                    override: str | None = None) -> str:
    """The https URL under which `dest`'s objects are read.

    `override` (`--public-url`) wins; the manifest's `public_url_base` belongs to the manifest's own
    destination; any other bucket is read from storage.googleapis.com. A local directory has no URL
    of its own: it needs `--public-url`, the address it will be served from.
    """
    if override:
        parsed = urlparse(override)
        if parsed.scheme not in ("https", "http") or not parsed.netloc:
            raise PublishError(f"--public-url {override!r}: not an http(s) URL")
        return override.rstrip("/")
    if dest.same_as(Destination.parse(manifest_destination)):
        return manifest_url_base.rstrip("/")
    if dest.is_gcs:
        return f"{GCS_PUBLIC_BASE}/{dest.bucket}" + (f"/{dest.prefix}" if dest.prefix else "")
    raise PublishError(f"{dest}: a local destination has no public URL of its own; pass --public-url with "
                       "the http(s) address it will be served from (the docs link there)")
