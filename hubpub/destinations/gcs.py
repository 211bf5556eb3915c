"""Google Cloud Storage, `gs://BUCKET/PREFIX`: the original TF-Hub way. Objects go through the
google-cloud-storage client (Application Default Credentials; `STORAGE_EMULATOR_HOST` honoured) and are
read from `https://storage.googleapis.com/BUCKET/PREFIX` unless the manifest names another base."""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from hubpub.destinations.base import Destination, PublishJob, PublishResult, Stat, Upload
from hubpub.destinations.links import url_links
from hubpub.destinations.objects import Cancelled, Exists, ReadFileByFile, publish_objects
from hubpub.errors import PublishError

if TYPE_CHECKING:
    from hubpub.manifest.values import Artifact, Manifest

GCS_PUBLIC_BASE = "https://storage.googleapis.com"
# Cloud Storage bucket names (cloud.google.com/storage/docs/buckets#naming): 3-63 characters of lowercase
# letters, digits, '-', '_' and '.', starting and ending with a letter or digit (dotted names up to 222).
GCS_BUCKET = re.compile(r"^[a-z0-9](?:[a-z0-9._-]{1,61}|[a-z0-9._-]{62,220})[a-z0-9]$")
# The object prefix below the bucket: it becomes part of public URLs, so URL-safe characters only.
GCS_PREFIX = re.compile(r"^[A-Za-z0-9._~-]+(?:/[A-Za-z0-9._~-]+)*$")


# What a bucket serves each object as: pages and docs change (short cache), versioned artifacts never do.
CONTENT_TYPES = {".html": "text/html; charset=utf-8", ".css": "text/css; charset=utf-8",
                 ".js": "text/javascript; charset=utf-8", ".md": "text/markdown; charset=utf-8",
                 ".svg": "image/svg+xml", ".png": "image/png", ".gz": "application/gzip",
                 ".keras": "application/zip", ".sha256": "text/plain; charset=utf-8",
                 ".tflite": "application/octet-stream", ".txt": "text/plain; charset=utf-8"}
SHORT_CACHE, LONG_CACHE = "public, max-age=300", "public, max-age=31536000, immutable"


def object_headers(relative: str) -> tuple[str, str]:
    """(Content-Type, Cache-Control) of a published object."""
    content_type = CONTENT_TYPES.get(Path(relative).suffix, "application/octet-stream")
    mutable = relative.startswith(("docs/", "site/"))
    return content_type, SHORT_CACHE if mutable else LONG_CACHE


@dataclass(frozen=True)
class Gcs(Destination):
    """`gs://BUCKET/PREFIX`."""

    bucket: str
    prefix: str = ""
    title: ClassVar[str] = "Google Cloud Storage"
    form: ClassVar[str] = "gs://BUCKET/PREFIX"  # how its address is written

    @classmethod
    def parse(cls, text: str) -> Gcs | None:
        if not text.startswith("gs://"):
            return None
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
        return cls(bucket, prefix)

    def __str__(self) -> str:
        return f"gs://{self.bucket}/{self.prefix}".rstrip("/")

    def key(self, relative: str) -> str:
        """The object name of `relative`."""
        return f"{self.prefix}/{relative}" if self.prefix else relative

    def own_url_base(self) -> str:
        return f"{GCS_PUBLIC_BASE}/{self.bucket}" + (f"/{self.prefix}" if self.prefix else "")

    def links(self, base: str, publisher: str, artifact: Artifact, doc_path: str):
        return url_links(base, publisher, artifact, doc_path)

    def publish(self, job: PublishJob) -> PublishResult:
        random = sorted(name for name, record in job.records.items() if record.random_weights)
        if random:
            raise PublishError(f"refusing to publish random-weight (demo) artifacts to {self}: {', '.join(random)}")
        store: GcsStore | _Unseen
        try:
            store = GcsStore(self, deadline=job.deadline, timeout=job.timeout, chunk_bytes=job.chunk_bytes)
        except NoCredentials:
            if not job.dry_run:
                raise
            store = _Unseen()  # a dry run plans without credentials, as on the hubs; it cannot compare
        result = publish_objects(self, store, job)
        if isinstance(store, _Unseen):
            result.plan.append(f"{self}: no Google Cloud credentials, so this plan does not compare with what is "
                               "published there already (every object shows as \"would upload\")")
        return result

    def verify(self, manifest: Manifest, dist: Path, result: PublishResult, *, fine_tune: bool = False):
        from hubpub.destinations.objects import verify_objects

        # read back from the public URL, as a user does (`verify` maps it to an emulator where one is set)
        return verify_objects(self, manifest, dist, result, lambda relative, url: url, fine_tune=fine_tune)


    def reader(self) -> GcsStore:
        return GcsStore(self)


class NoCredentials(PublishError):
    """No Google Cloud credentials to be found."""


class _Unseen:
    """A bucket a dry run cannot see into (no credentials): nothing found, nothing written."""

    def check(self) -> None:
        pass

    def stat(self, key: str) -> None:
        return None


class GcsStore(ReadFileByFile):
    """A bucket through the google-cloud-storage client (ADC; STORAGE_EMULATOR_HOST honoured)."""

    # Resumable uploads go in chunks: an interruption re-sends at most one chunk, and each chunk is
    # held in memory. The size where larger chunks stop being faster (benchmarks/results/upload.json:
    # client_resumable_mb_s_by_chunk_mib).
    CHUNK_BYTES = 128 * 2**20

    def __init__(self, dest: Gcs, *, deadline: float = 300.0, timeout: float = 60.0,
                 chunk_bytes: int | None = None):
        from google.auth.exceptions import DefaultCredentialsError
        from google.cloud import storage
        from google.cloud.storage.retry import DEFAULT_RETRY

        try:
            self.client = storage.Client()
        except DefaultCredentialsError:
            raise NoCredentials(
                "no Google Cloud credentials found: run `gcloud auth application-default login`, set "
                "GOOGLE_APPLICATION_CREDENTIALS, or set STORAGE_EMULATOR_HOST for an emulator") from None
        except OSError as e:
            raise PublishError(f"cannot create the storage client: {e}") from None
        self.dest = dest
        self.bucket = self.client.bucket(dest.bucket)
        # Retries 408, 429, 5xx and connection errors with exponential backoff, until the deadline.
        self.retry = DEFAULT_RETRY.with_deadline(deadline)
        self.timeout = timeout
        self.chunk_bytes = chunk_bytes or self.CHUNK_BYTES

    def _wrap(self, e: Exception, what: str) -> PublishError:
        from google.api_core import exceptions as gexc

        if isinstance(e, gexc.NotFound) and "bucket" in str(e).lower():
            return PublishError(f"gs://{self.dest.bucket}: bucket does not exist")
        if isinstance(e, gexc.Forbidden | gexc.Unauthorized):
            return PublishError(f"gs://{self.dest.bucket}: access denied while {what}: {e.message}")
        return PublishError(f"gs://{self.dest.bucket}: {what} failed: {type(e).__name__}: {e}")

    def check(self) -> None:
        try:
            exists = self.bucket.exists(retry=self.retry, timeout=self.timeout)
        except Exception as e:
            raise self._wrap(e, "looking up the bucket") from None
        if not exists:
            raise PublishError(f"gs://{self.dest.bucket}: bucket does not exist")

    def stat(self, key: str) -> Stat | None:
        try:
            blob = self.bucket.get_blob(key, retry=self.retry, timeout=self.timeout)
        except Exception as e:
            raise self._wrap(e, f"reading gs://{self.dest.bucket}/{key}") from None
        return None if blob is None else Stat(int(blob.size), blob.crc32c, blob.generation)

    def listing(self) -> dict[str, int]:
        prefix = self.dest.key("")
        try:
            blobs = list(self.client.list_blobs(self.dest.bucket, prefix=prefix, retry=self.retry,
                                                timeout=self.timeout))
        except Exception as e:
            raise self._wrap(e, "listing the objects") from None
        return {b.name.removeprefix(prefix): int(b.size) for b in blobs}

    @contextlib.contextmanager
    def local_copy(self, relative: str):
        import tempfile

        with tempfile.TemporaryDirectory(prefix="hubpub-audit-") as tmp:
            path = Path(tmp) / Path(relative).name
            try:  # streamed to the file in chunks, with the client's checksum check
                self.bucket.blob(self.dest.key(relative)).download_to_filename(str(path), retry=self.retry,
                                                                              timeout=self.timeout)
            except Exception as e:
                raise self._wrap(e, f"downloading gs://{self.dest.bucket}/{self.dest.key(relative)}") from None
            yield path

    def upload(self, upload: Upload, key: str, *, replacing: Stat | None, bar, cancel=None) -> int:
        """Upload `key` on condition (absent, or still the generation `replacing` saw); its new generation."""
        from google.cloud.storage.retry import _should_retry

        blob = self.bucket.blob(key, chunk_size=self.chunk_bytes)
        content_type, blob.cache_control = object_headers(upload.relative)
        # Ctrl-C sets `cancel`: no retry starts after it (the one running ends at its timeout at most).
        retry = self.retry.with_predicate(lambda e: not (cancel is not None and cancel.is_set()) and _should_retry(e))
        try:
            with open(upload.source, "rb") as f:
                blob.upload_from_file(_ProgressReader(f, bar, cancel), size=upload.size, checksum="crc32c",
                                      content_type=content_type,
                                      # 0: only if absent; a generation: only that exact version
                                      if_generation_match=replacing.generation if replacing else 0,
                                      retry=retry,
                                      timeout=self.timeout)
        except Cancelled:
            raise
        except Exception as e:
            from google.api_core import exceptions as gexc

            if cancel is not None and cancel.is_set():
                raise Cancelled() from None
            if isinstance(e, gexc.PreconditionFailed):
                if replacing is None:
                    raise Exists() from None
                raise PublishError(f"gs://{self.dest.bucket}/{key}: changed by another publisher while this one "
                                   "ran (precondition failed); not overwriting it, rerun") from None
            raise self._wrap(e, f"uploading gs://{self.dest.bucket}/{key}") from None
        return int(blob.generation)

    def delete(self, key: str, generation: int) -> None:
        """Remove `key` only if it is still that generation: never another publisher's object."""
        with contextlib.suppress(Exception):
            self.bucket.blob(key).delete(if_generation_match=generation, retry=self.retry, timeout=self.timeout)


class _ProgressReader:
    """A file wrapper that moves a byte progress bar as the client reads (and rewinds on retry), and
    stops the upload at its next read once `cancel` is set."""

    def __init__(self, f, bar, cancel=None):
        self._f, self._bar, self._pos, self._cancel = f, bar, 0, cancel

    def read(self, size: int = -1) -> bytes:
        if self._cancel is not None and self._cancel.is_set():
            raise Cancelled()
        data = self._f.read(size)
        self._pos += len(data)
        self._bar.update(len(data))
        return data

    def seek(self, offset: int, whence: int = 0) -> int:
        pos = self._f.seek(offset, whence)
        self._bar.update(pos - self._pos)
        self._pos = pos
        return pos

    def tell(self) -> int:
        return self._f.tell()

    def __getattr__(self, name):
        return getattr(self._f, name)

