"""What every destination is and gives back: the `Destination` interface and the result types of a
publish, shared by all of them (and by nothing else's module: no destination imports `hubpub.publish`).

A destination is a small frozen value, parsed from its address and printed back the same way by its own
class (`gs://BUCKET/PREFIX`, a directory, `kaggle://OWNER/MODEL`, `hf://ORG`); `hubpub.destinations`
holds the registry that tries each class's `parse` in turn. Besides its address it knows
- where each published file and page ends up (`links`), for docs, notebooks, site and cards;
- the public URL base the docs are rendered for (`public_url_base`);
- how to publish a build there (`publish`, a `PublishJob` in, a `PublishResult` out), dry runs included;
- how to get one published artifact back as its users do and check it (`verify`);
- how to read everything published there, file by file (`reader`, for `hubpub audit`).
"""

from __future__ import annotations

import contextlib
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Protocol

from hubpub.errors import PublishError

if TYPE_CHECKING:
    from hubpub.manifest.values import Artifact, Manifest
    from hubpub.signing import Signer
    from hubpub.verify import VerifyResult


@dataclass(frozen=True)
class ArtifactLinks:
    """Where a reader finds one artifact at one destination."""

    asset_url: str  # what hub.KerasLayer loads
    keras_url: str  # the .keras file's URL, or the hub handle a Keras user loads (see keras_source)
    keras_source: str  # "url" (get_file then load_model), "kaggle" (kagglehub handle) or "hf" (hf://)
    page_url: str | None  # the hub's own page for the artifact; None at a bucket or directory
    doc_url: str | None  # the published tfhub.dev-format doc; None on a hub (its page is the doc)
    tfhub_url: str  # the name in the tfhub.dev format, never a link: tfhub.dev takes no new models
    litert_prefix: str = ""  # a LiteRT file's URL is this + "<format>.tflite"
    formats: dict[str, str] = field(default_factory=dict)  # the URL of each format of `hubpub.formats`
    format_handles: dict[str, str] = field(default_factory=dict)  # Kaggle: each format's kagglehub handle

    def litert_url(self, fmt: str) -> str:
        return f"{self.litert_prefix}{fmt}.tflite"


@dataclass(frozen=True)
class Upload:
    """One unit a publish sends: an object of a bucket or directory, or a hub's variation or repository."""

    source: Path
    relative: str  # below the destination: an object's name, `framework/variation`, or a repository id
    size: int
    crc32c: str  # base64 of the big-endian CRC32C, as GCS reports it ("" on a hub)
    public_url: str
    artifact: str | None = None  # None for a doc or page
    random_weights: bool = False  # a demo artifact: never to a public place

    @property
    def mutable(self) -> bool:
        """Docs and pages are updated in place; every artifact file is immutable."""
        return self.artifact is None


@dataclass
class Outcome:
    upload: Upload
    # uploaded, updated, overwritten (forced), already published; "would ..." in a dry run
    status: str
    detail: str = ""


@dataclass(frozen=True)
class Stat:
    size: int
    crc32c: str
    generation: int | None  # what a conditional write names: a GCS generation, a file's inode


@dataclass
class PublishResult:
    destination: Destination
    public_url_base: str
    outcomes: list[Outcome] = field(default_factory=list)
    plan: list[str] = field(default_factory=list)  # the plan in words, beyond the outcomes
    site_url: str | None = None  # the collection site's page, when the site was published
    visibility: str = ""  # on a hub: "private" or "public"
    notebooks: list[Path] = field(default_factory=list)  # copied into the checkout: commit and push them
    verified: VerifyResult | None = None  # one artifact got back as users get it

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for o in self.outcomes:
            out[o.status] = out.get(o.status, 0) + 1
        return out

    def summary(self) -> str:
        """"3 uploaded, 2 already published"."""
        return ", ".join(f"{n} {status}" for status, n in self.counts().items())


@dataclass(frozen=True)
class PublishJob:
    """What one publish is asked to do, in plain values: the destination decides how."""

    manifest: Manifest
    dist: Path
    base: str  # the public URL base the docs were rendered for (a hub: its own address)
    fix: str  # the command that renders the docs for this destination, for error messages
    force: bool = False
    dry_run: bool = False
    jobs: int = 4
    deadline: float = 300.0
    timeout: float = 60.0
    chunk_bytes: int | None = None
    public: bool = False
    artifacts_only: bool = False  # a shard's publish: the artifact files, no docs or site
    docs: tuple = ()  # the rendered docs, validated (`hubpub.docs.validate.Doc`); none for artifacts only
    records: dict = field(default_factory=dict)  # every build record in dist, by artifact (`BuildRecord`), read once
    signer: Signer | None = None  # the artifact files are signed already (a .sig beside
    # each); a destination that publishes files in another shape (the HF Hub's Keras layout) signs those
    signed: bool = False  # a signed publish (a dry run's too): only then do the .sig files in dist/ go with it


class Destination(ABC):
    """A place a collection is published to. Subclasses are frozen dataclasses of their address."""

    title: ClassVar[str]  # in words: "Kaggle Models"
    form: ClassVar[str]  # its address as the user writes it: "kaggle://OWNER/MODEL"
    is_hub: ClassVar[bool] = False  # a hub has its own pages and fixed addresses; no URL base of ours
    signatures: ClassVar[bool] = True  # publishes the .sig files of a signed build
    extra: ClassVar[str | None] = None  # the pip extra its client comes in (`hubpub.extras`), if any

    @classmethod
    @abstractmethod
    def parse(cls, text: str) -> Destination | None:
        """The destination `text` names, None if it is not of this kind; `PublishError` if it is of this
        kind but malformed."""

    @abstractmethod
    def __str__(self) -> str:
        """The address, as `parse` reads it."""

    def same_as(self, other: Destination) -> bool:
        return type(self) is type(other) and str(self) == str(other)

    def key(self, relative: str) -> str:
        """Where an upload's `relative` name lands (a bucket puts its prefix before it)."""
        return relative

    @abstractmethod
    def own_url_base(self) -> str:
        """The base the docs link to when neither `--public-url` nor the manifest says one (a hub: its own
        address, which its `links` understand); `PublishError` if there is none (a directory)."""

    @abstractmethod
    def links(self, base: str, publisher: str, artifact: Artifact, doc_path: str) -> ArtifactLinks:
        """Where each of the artifact's files and pages is, read from `base`."""

    def where(self, base: str) -> str:
        """The destination in words, for a doc's prose."""
        return f"under {base}"

    def notebooks_folder(self, base: str) -> str:
        """The folder of the usage notebooks that load from here (a folder per destination)."""
        return url_slug(base)

    def name_limit(self) -> tuple[int, str] | None:
        """The longest artifact name this destination takes, and what that name is, if it has a limit."""
        return None

    @abstractmethod
    def publish(self, job: PublishJob) -> PublishResult:
        """Check everything (the docs' links to this destination's files included), then send what is
        missing or changed; raise before sending anything on a conflict."""

    @abstractmethod
    def verify(self, manifest: Manifest, dist: Path, result: PublishResult, *, fine_tune: bool = False):
        """One published artifact, got back as its users get it and checked against its build record."""

    def reader(self) -> Reader:
        """What is published here, read as a whole (`hubpub audit`)."""
        raise PublishError(f"{self}: hubpub audit cannot read {self.title}")

    def keep_record(self, record: dict) -> None:
        """Keep what a later audit on this machine needs to know of this publish (where the notebooks the
        docs link are, when they are not in the checkout); only a local directory has room for it."""
        return None

    def publish_record(self) -> dict:
        """What `keep_record` kept, else {}."""
        return {}


class Reader(Protocol):
    """A published collection, read file by file: names relative to the destination's root."""

    def listing(self) -> dict[str, int]:
        """Every published file and its size."""

    def local_copy(self, relative: str) -> contextlib.AbstractContextManager[Path]:
        """The file on this machine while the block runs (downloaded once, streamed, then removed)."""

    def local_folder(self, folder: str) -> contextlib.AbstractContextManager[Path]:
        """A folder's files on this machine (a hub's repository or variation, downloaded once)."""

    def key_of(self, url: str) -> str | None:
        """The published name a URL points at, if it points into this collection (a hub's pages)."""

    def close(self) -> None:
        """Remove what was downloaded."""


def url_slug(text: str) -> str:
    """A folder name for an address: `http://localhost:8000` -> `localhost-8000`."""
    rest = text.partition("://")[2] or text
    return re.sub(r"[^A-Za-z0-9._-]+", "-", rest).strip("-.")
