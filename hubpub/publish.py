"""Publish tarballs, their .sha256 files and the docs to GCS or a local directory.

Published model versions are immutable: an artifact object that exists with the same bytes (crc32c
and size) is "already published"; with other bytes it is an error unless forced. Docs describe a
version and are not part of it, so a changed doc is "updated" in place (tfhub.dev took doc fixes for
published versions too).

Two publishers may run at once (shards of one collection, say). Every write is conditional: a new
object only if still absent (`if_generation_match=0`; in a directory a hard link, which fails on an
existing name), an update only of the generation that was read. The loser of a race on a name finds
the same bytes ("already published") or other bytes (an error: nothing is overwritten). After each
upload the stored crc32c and size are compared with the local file; a bad object is deleted only if it
is still the generation this publisher wrote, never another's.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import google_crc32c

from hubpub._files import cleanup_created_dirs, temp_name
from hubpub.destination import Destination, public_url_base
from hubpub.errors import PublishError
from hubpub.layout import Dist
from hubpub.manifest import Manifest
from hubpub.package import check_tarball
from hubpub.progress import progress_bar
from hubpub.record import RecordError, read_record

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Upload:
    source: Path
    relative: str  # object name below the destination's prefix
    size: int
    crc32c: str  # base64 of the big-endian CRC32C, as GCS reports it
    public_url: str
    artifact: str | None = None  # None for a doc
    random_weights: bool = False  # a demo artifact: never to a bucket

    @property
    def mutable(self) -> bool:
        """Docs are updated in place; every artifact file is immutable."""
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
    generation: int | None


def crc32c_of(path: Path) -> str:
    checksum = google_crc32c.Checksum()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            checksum.update(block)
    return base64.b64encode(checksum.digest()).decode()


# --------------------------------------------------------------------------- planning


def plan_publish(manifest: Manifest, dist: Path, base: str) -> list[Upload]:
    """Every tarball (+ .sha256) with a build report, and every rendered doc, with its object name
    and its public URL below `base`."""
    uploads: list[Upload] = []
    layout = Dist(dist)
    for artifact in manifest.artifacts():
        tar = layout.tarball(artifact.name)
        if not layout.report(artifact.name).is_file() or not tar.is_file():
            continue
        try:
            record = read_record(layout.report(artifact.name))
        except RecordError as e:
            raise PublishError(str(e)) from None
        files = [(tar, artifact.asset_object),
                 (layout.tarball_sha256(artifact.name), artifact.asset_object + ".sha256")]
        if record.keras is not None:
            files += [(layout.keras(artifact.name), artifact.keras_object),
                      (layout.keras_sha256(artifact.name), artifact.keras_object + ".sha256")]
        files += [(layout.root / lite.path, artifact.litert_object(lite.format)) for lite in record.litert]
        if record.litert and (labels := layout.litert_files / f"{artifact.name}.labels.txt").is_file():
            files.append((labels, f"{artifact.name}/{artifact.version}.labels.txt"))
        for source, relative in files:
            if not source.is_file():
                raise PublishError(f"{source}: missing; rebuild {artifact.name}")
            uploads.append(Upload(source, relative, source.stat().st_size, crc32c_of(source),
                                  f"{base}/{relative}", artifact.name, record.random_weights))
        if record.tarball.size != tar.stat().st_size or (
                record.keras is not None and record.keras.size != layout.keras(artifact.name).stat().st_size) or any(
                lite.size != (layout.root / lite.path).stat().st_size for lite in record.litert):
            raise PublishError(f"{tar}: does not match its build report; rebuild {artifact.name}")
    for folder, prefix, pattern in ((layout.docs, "docs/", "*.md"), (layout.site_upload, "site/", "*")):
        for path in sorted(folder.rglob(pattern)) if folder.is_dir() else []:
            if path.is_file():
                relative = prefix + path.relative_to(folder).as_posix()
                uploads.append(Upload(path, relative, path.stat().st_size, crc32c_of(path), f"{base}/{relative}"))
    return uploads


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


def check_docs_against_plan(manifest: Manifest, dist: Path, uploads: list[Upload], base: str, dest: Destination,
                            found, fix: str = "", notebooks: Path | None = None) -> None:
    """Docs must validate, their Colab links must open this build's notebooks (in `notebooks`, default
    the manifest's place for them), and each asset-path must be an object this publish uploads or
    finds published at `dest`, read from `base`. `found(relative)` says whether an object exists at
    `dest` already; `fix` is the command that renders the docs for this destination."""
    from hubpub.docs.validate import validate_docs

    docs_root = Dist(dist).docs
    if not docs_root.is_dir():
        raise PublishError(f"{docs_root}: no rendered docs; run `hubpub docs` first")
    urls = {u.public_url for u in uploads if u.artifact}
    docs = validate_docs(docs_root)
    colab = _check_notebooks(docs, manifest, dist, dest, notebooks, fix)
    for doc in docs:
        for asset in doc.metadata.get("asset-path", []):
            if asset in urls:
                continue
            relative = asset.removeprefix(base + "/") if asset.startswith(base + "/") else None
            if relative is None:
                raise PublishError(
                    f"{doc.path}: asset-path {asset} is not below {base}, where {dest} is read from; nothing was "
                    f"uploaded. Render the docs for this destination: {fix or f'hubpub docs --dest {dest}'}")
            if not found(relative):
                raise PublishError(f"{doc.path}: asset-path {asset} matches no tarball being published or already "
                                   f"published to {dest}; nothing was uploaded. Build it, or re-render the docs")
    return colab


def _check_notebooks(docs, manifest: Manifest, dist: Path, dest: Destination, notebooks: Path | None,
                     fix: str):
    """Every Colab link opens a notebook of its artifact for this destination: the build's own
    (`notebooks`, default DIST/notebooks), else one the checkout holds already."""
    from hubpub.notebooks import check_colab_links, checkout_notebooks

    folders = [notebooks or Dist(dist).notebooks] + [f for f in (checkout_notebooks(manifest),) if f is not None]
    rendering = fix.replace("hubpub docs", "hubpub notebooks", 1) + " --execute"
    check = check_colab_links(docs, manifest, folders, fix=rendering)
    for warning in check.warnings():
        log.warning("warning: %s", warning)
    return check


def finish_notebooks(check, manifest: Manifest, random_weights: bool, result: PublishResult) -> None:
    """After a publish: the notebooks its docs link, copied into the manifest's checkout (never a demo's
    random-weight ones), where a commit and push publishes them."""
    from hubpub.notebooks import publish_notebooks

    if check is not None and not random_weights:
        result.notebooks = publish_notebooks(check, manifest)


def _publish_to_hub(manifest: Manifest, dist: Path, dest: Destination, base: str, *, force: bool, dry_run: bool,
                    notebooks: Path | None, public: bool) -> PublishResult:
    from hubpub.docs.validate import validate_docs
    from hubpub.hubs import built_artifacts

    fix = f"hubpub docs --dest {dest}"
    if not Dist(dist).docs.is_dir():
        raise PublishError(f"{Dist(dist).docs}: no rendered docs; run `{fix}` first")
    built = built_artifacts(manifest, dist, base, fix)
    colab = _check_notebooks(validate_docs(Dist(dist).docs), manifest, dist, dest, notebooks, fix)
    if dest.hub == "kaggle":
        from hubpub.hubs.kaggle import plan_kaggle, publish_kaggle

        result = publish_kaggle(plan_kaggle(manifest, built, dist, dest, public=public), force=force, dry_run=dry_run)
    else:
        from hubpub.hubs.hf import plan_hf, publish_hf

        result = publish_hf(plan_hf(manifest, built, dist, dest, public=public), force=force, dry_run=dry_run)
    if not dry_run:
        finish_notebooks(colab, manifest, any(b.record.random_weights for b in built), result)
    return result


# --------------------------------------------------------------------------- stores


class LocalStore:
    """A directory with the same semantics as a bucket: no overwrite, atomic writes."""

    def __init__(self, dest: Destination):
        self.root = dest.path

    def check(self) -> None:
        if self.root.exists() and not self.root.is_dir():
            raise PublishError(f"{self.root}: the destination is a file, not a directory")
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            probe = temp_name(self.root / "write-test")
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as e:
            raise PublishError(f"{self.root}: cannot write to the destination: {e.strerror or e}") from None

    def stat(self, key: str) -> Stat | None:
        path = self.root / key
        try:
            st = path.stat()
        except (FileNotFoundError, NotADirectoryError):  # absent, or a file stands where its folder goes
            return None
        # the inode stands for a generation: a file replaced by another writer is another inode
        return Stat(st.st_size, crc32c_of(path), st.st_ino) if path.is_file() else None

    def upload(self, upload: Upload, key: str, *, replacing: Stat | None, bar, cancel=None) -> int:
        """Write `key`; a new one only if it is still absent (a hard link fails atomically on an existing
        name, where check-then-rename would race another publisher). Returns its generation (inode)."""
        target = self.root / key
        tmp = temp_name(target)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            with open(upload.source, "rb") as src, open(tmp, "wb") as dst:
                while block := src.read(1 << 20):
                    if cancel is not None and cancel.is_set():
                        raise Cancelled()
                    dst.write(block)
                    bar.update(len(block))
            generation = os.stat(tmp).st_ino
            if replacing is None:
                try:
                    os.link(tmp, target)
                except FileExistsError:
                    raise Exists() from None
            else:
                os.replace(tmp, target)
            return generation
        except OSError as e:
            raise PublishError(f"{target}: cannot write: {e.strerror or e}") from None
        finally:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)

    def delete(self, key: str, generation: int) -> None:
        """Remove `key` if it is still the file of that generation (best effort: a directory has no
        conditional delete; the window is one stat)."""
        path = self.root / key
        with contextlib.suppress(FileNotFoundError, NotADirectoryError):
            if path.stat().st_ino == generation:
                path.unlink()


class Cancelled(Exception):
    """An upload stopped because the user pressed Ctrl-C."""


class Exists(Exception):
    """A new object's name was taken meanwhile, by another publisher: nothing was overwritten."""


class NoCredentials(PublishError):
    """No Google Cloud credentials to be found."""


class _Unseen:
    """A destination a dry run cannot see into (no credentials): nothing found, nothing written."""

    def check(self) -> None:
        pass

    def stat(self, key: str) -> None:
        return None


class GcsStore:
    """A bucket through the google-cloud-storage client (ADC; STORAGE_EMULATOR_HOST honoured)."""

    # Resumable uploads go in chunks: an interruption re-sends at most one chunk, and each chunk is
    # held in memory. Measured on fake-gcs-server with 500 MiB: 8 MiB chunks ~14 MB/s, 64 MiB ~50,
    # 128 MiB ~90 (no faster beyond).
    CHUNK_BYTES = 128 * 2**20

    def __init__(self, dest: Destination, *, deadline: float = 300.0, timeout: float = 60.0,
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


# --------------------------------------------------------------------------- publishing


@dataclass
class PublishResult:
    destination: Destination
    public_url_base: str
    outcomes: list[Outcome] = field(default_factory=list)
    plan: list[str] = field(default_factory=list)  # a hub's plan in words: model, variations, files, metadata
    site_url: str | None = None  # the collection site's page, when the site was published
    visibility: str = ""  # on a hub: "private" or "public"
    notebooks: list[Path] = field(default_factory=list)  # copied into the checkout: commit and push them


def open_store(dest: Destination, *, deadline: float = 300.0, timeout: float = 60.0, chunk_bytes: int | None = None):
    if dest.is_gcs:
        return GcsStore(dest, deadline=deadline, timeout=timeout, chunk_bytes=chunk_bytes)
    return LocalStore(dest)


def destination_url(manifest: Manifest, dest: Destination, override: str | None = None) -> str:
    """The public URL base of `dest` for this manifest (see `hubpub.destination.public_url_base`)."""
    return public_url_base(dest, manifest_destination=manifest.publish.destination,
                           manifest_url_base=manifest.publish.public_url_base, override=override)


def publish(manifest: Manifest, dist: Path, dest: Destination, *, public_url: str | None = None, force: bool = False,
            dry_run: bool = False, jobs: int = 4, deadline: float = 300.0, timeout: float = 60.0,
            chunk_bytes: int | None = None, notebooks: Path | None = None, public: bool = False,
            artifacts_only: bool = False) -> PublishResult:
    """Check everything first, then upload what is missing or changed (docs); raise before touching
    anything on a conflict. A refused publish leaves no folder it created. On a hub (Kaggle, the HF
    Hub) models are private unless `public` or the manifest's `publish.public`. `artifacts_only` (a
    shard's publish) uploads the artifact files and no docs or site: those come once, at the end."""
    base = destination_url(manifest, dest, public_url)
    if dest.is_hub:
        if artifacts_only:
            raise PublishError(f"{dest}: a hub takes a whole collection, pages included; publish there once")
        return _publish_to_hub(manifest, dist, dest, base, force=force, dry_run=dry_run, notebooks=notebooks,
                               public=public or manifest.publish.public)
    uploads = plan_publish(manifest, dist, base)
    if artifacts_only:
        uploads = [u for u in uploads if u.artifact]
    if not uploads:
        raise PublishError(f"{dist}: nothing to publish (no tarballs with build reports, no docs); run a build first")
    if dest.is_gcs:
        random = sorted({u.artifact for u in uploads if u.random_weights})
        if random:
            raise PublishError(f"refusing to publish random-weight (demo) artifacts to {dest}: {', '.join(random)}")
    try:
        store = open_store(dest, deadline=deadline, timeout=timeout, chunk_bytes=chunk_bytes)
    except NoCredentials:
        if not dry_run:
            raise
        store = _Unseen()  # a dry run plans without credentials, as on the hubs; it cannot compare
    with cleanup_created_dirs(dest.path) if dest.path else contextlib.nullcontext():
        if dest.is_gcs or not dry_run:  # a dry run creates no local folder
            store.check()
        fix = f"hubpub docs --dest {dest}" + (f" --public-url {public_url}" if public_url else "")
        existing = {u.relative: s for u in uploads if (s := store.stat(dest.key(u.relative))) is not None}
        colab = None if artifacts_only else check_docs_against_plan(
            manifest, dist, uploads, base, dest, lambda relative: store.stat(dest.key(relative)) is not None, fix,
            notebooks)
        result = _publish_checked(store, dest, base, uploads, existing, force=force, dry_run=dry_run, jobs=jobs)
    if isinstance(store, _Unseen):
        result.plan.append(f"{dest}: no Google Cloud credentials, so this plan does not compare with what is "
                           "published there already (every object shows as \"would upload\")")
    if not dry_run:
        finish_notebooks(colab, manifest, any(u.random_weights for u in uploads), result)
    return result


def _publish_checked(store, dest: Destination, base: str, uploads: list[Upload], existing: dict, *, force: bool,
                     dry_run: bool, jobs: int) -> PublishResult:
    result = PublishResult(dest, base, site_url=f"{base}/site/index.html" if any(
        u.relative == "site/index.html" for u in uploads) else None)
    todo: list[tuple[Upload, Stat | None]] = []
    conflicts = []
    for u in uploads:
        stat = existing.get(u.relative)
        if stat is None:
            todo.append((u, None))
        elif (stat.size, stat.crc32c) == (u.size, u.crc32c):
            result.outcomes.append(Outcome(u, "already published"))
        elif u.mutable or force:
            todo.append((u, stat))
        else:
            conflicts.append(f"{dest.key(u.relative)} exists with different content "
                             f"(size {stat.size} vs {u.size}, crc32c {stat.crc32c} vs {u.crc32c})")
    if conflicts:
        raise PublishError(f"{dest}: published versions are immutable; nothing was uploaded. Use --force to "
                           "overwrite, or bump collection.model_version:", conflicts)
    for u, _ in todo:  # hubpub's own Hub-layout check, before anything leaves the machine
        if u.relative.endswith(".tar.gz"):
            check_tarball(u.source)
    if dry_run:
        result.outcomes += [Outcome(u, "would upload" if g is None else "would update" if u.mutable
                                    else "would overwrite") for u, g in todo]
        return result

    total = sum(u.size for u, _ in todo)
    with progress_bar(total=total, unit="B", unit_scale=True, desc=f"upload to {dest}") as bar:
        outcomes, errors = _upload_all(store, dest, todo, bar, jobs)
    result.outcomes += outcomes
    if errors:
        done = [dest.key(o.upload.relative) for o in result.outcomes if o.status != "already published"]
        raise PublishError(
            f"{dest}: {len(errors)} of {len(todo)} upload(s) failed; {len(done)} succeeded and stay published "
            "(rerun to upload the rest)",
            errors + [f"uploaded: {key}" for key in done])
    order = {u.relative: i for i, u in enumerate(uploads)}
    result.outcomes.sort(key=lambda o: order[o.upload.relative])
    return result


# After Ctrl-C, how long the uploads get to stop at their next read or retry and remove their temp files.
CANCEL_GRACE_SECONDS = 3.0


def _upload_all(store, dest: Destination, todo: list[tuple[Upload, Stat | None]], bar,
                jobs: int) -> tuple[list[Outcome], list[str]]:
    """Upload in `jobs` threads; (outcomes, errors). Ctrl-C stops them all within seconds: no new upload
    or retry starts, running ones stop at their next read, and the process does not wait for a request
    stuck on the network (daemon threads: an unfinished GCS upload makes no object, a directory's leaves
    its temp file removed)."""
    import queue
    import threading

    cancel, work, done = threading.Event(), queue.SimpleQueue(), queue.SimpleQueue()
    for item in todo:
        work.put(item)

    def worker() -> None:
        while not cancel.is_set():
            try:
                u, replacing = work.get_nowait()
            except queue.Empty:
                return
            try:
                done.put(("ok", _upload_one(store, dest, u, replacing, bar, cancel)))
            except PublishError as e:
                done.put(("error", str(e)))
            except Cancelled:
                done.put(("cancelled", u.relative))
            except BaseException as e:  # a bug: carried to the caller's thread
                done.put(("bug", e))

    threads = [threading.Thread(target=worker, daemon=True, name=f"upload-{i}") for i in range(max(1, jobs))]
    for thread in threads:
        thread.start()
    outcomes, errors = [], []
    try:
        for _ in todo:
            kind, value = done.get()  # Ctrl-C interrupts the wait
            if kind == "bug":
                raise value
            (outcomes if kind == "ok" else errors).append(value)
    except KeyboardInterrupt:
        cancel.set()
        for thread in threads:
            thread.join(timeout=CANCEL_GRACE_SECONDS / len(threads))
        raise
    return outcomes, errors


def _upload_one(store, dest: Destination, u: Upload, replacing: Stat | None, bar, cancel=None) -> Outcome:
    """Upload one object, then read back what is stored. Two publishers racing on a name: one uploads, the
    other finds the same bytes (already published) or other bytes (an error; nothing overwritten)."""
    key = dest.key(u.relative)
    try:
        ours = store.upload(u, key, replacing=replacing, bar=bar, cancel=cancel)
    except Exists:
        stat = store.stat(key)
        if stat is not None and (stat.size, stat.crc32c) == (u.size, u.crc32c):
            return Outcome(u, "already published", "by a publish running beside this one")
        raise PublishError(f"{key}: published meanwhile by another publisher, with other bytes; not overwriting "
                           "(published versions are immutable)") from None
    stat = store.stat(key)
    if stat is not None and stat.generation != ours:
        raise PublishError(f"{key}: replaced by another publisher while this one ran; left as it is")
    if stat is None or (stat.size, stat.crc32c) != (u.size, u.crc32c):
        store.delete(key, ours)  # only our own generation: never another writer's object
        raise PublishError(f"{key}: stored object does not match the local file "
                           f"(size {stat and stat.size} vs {u.size}, crc32c {stat and stat.crc32c} vs {u.crc32c}); "
                           "the bad object was deleted")
    if replacing is None:
        return Outcome(u, "uploaded")
    return Outcome(u, "updated" if u.mutable else "overwritten")


def verify_published(manifest: Manifest, dist: Path, dest: Destination, result: PublishResult,
                     *, fine_tune: bool = False):
    """hub.KerasLayer on one published tarball, compared with its build record: read back from the
    bucket at its public URL, or from the destination directory."""
    from hubpub.verify import read_reference, verify_handle

    if dest.is_hub:
        return _verify_on_hub(dist, dest, result, fine_tune=fine_tune)
    tar = next((o.upload for o in result.outcomes if o.upload.relative.endswith(".tar.gz")), None)
    if tar is not None:
        artifact, relative, url = tar.artifact, tar.relative, tar.public_url
    else:  # docs only (the collect step): the first artifact they document, where the shards published it
        found = next((a for a in manifest.artifacts() if Dist(dist).report(a.name).is_file()), None)
        if found is None:
            raise PublishError("nothing published to verify")
        artifact, relative = found.name, found.asset_object
        url = f"{result.public_url_base}/{relative}"
    record = read_reference(Dist(dist).report(artifact))
    handle = url if dest.is_gcs else str(dest.path / dest.key(relative))
    return verify_handle(handle, record, fine_tune=fine_tune)


def _verify_on_hub(dist: Path, dest: Destination, result: PublishResult, *, fine_tune: bool):
    """Download one published SavedModel as its users do (kagglehub, huggingface_hub), then
    hub.KerasLayer on it, compared with its build record."""
    import tempfile

    from hubpub.verify import read_reference, verify_handle

    saved = next((o.upload for o in result.outcomes if o.upload.relative.startswith(("tensorFlow2/", "saved_model"))),
                 None) or next((o.upload for o in result.outcomes if o.upload.artifact), None)
    if saved is None:
        raise PublishError("nothing published to verify")
    record = read_reference(Dist(dist).report(saved.artifact))
    with tempfile.TemporaryDirectory(prefix="hubpub-verify-hub-") as tmp:
        if dest.hub == "kaggle":
            from hubpub.hubs.kaggle import download_variation

            handle = f"{dest.owner}/{dest.model}/{saved.relative}"
            folder = download_variation(handle, Path(tmp))
        else:
            from hubpub.hubs.hf import download_repo

            handle = saved.relative
            folder = download_repo(handle, Path(tmp)) / "saved_model"
        checked = verify_handle(str(folder), record, fine_tune=fine_tune)
    return type(checked)(saved.public_url, checked.max_abs, checked.fine_tune)
