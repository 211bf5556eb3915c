"""Publishing to an object store: a bucket or a directory, where every file of a collection is an object
below a prefix (`<artifact>/<version>.<ext>`, `docs/`, `site/`) read from one URL base.

The flow both share: plan every object with its crc32c, check the docs' asset-paths against the plan and
the store, compare with what is stored, refuse any artifact object holding other bytes (unless forced:
published versions are immutable), then upload in parallel. Every write is conditional (a new object only
if still absent, an update only of the generation that was read): of two publishers racing on a name, one
uploads and the other finds the same bytes ("already published") or other bytes (an error: nothing is
overwritten). After each upload the stored crc32c and size are compared with the local file; a bad object
is deleted only if it is still the generation this publisher wrote. Ctrl-C stops every upload within
seconds (`_upload_all`).
"""

from __future__ import annotations

import base64
import contextlib
import logging
import posixpath
from pathlib import Path
from typing import TYPE_CHECKING, Any

import google_crc32c

from hubpub._files import cleanup_created_dirs
from hubpub.destinations.base import Destination, Outcome, PublishJob, PublishResult, Stat, Upload
from hubpub.errors import PublishError
from hubpub.formats import FORMATS
from hubpub.layout import Dist
from hubpub.package import check_tarball
from hubpub.progress import progress_bar
from hubpub.signing import SUFFIX as SIGNATURE
from hubpub.signing import fresh_signature

if TYPE_CHECKING:
    from hubpub.manifest.values import Manifest

log = logging.getLogger(__name__)


class ReadFileByFile:
    """What a bucket or a directory answers as a `Reader` (`hubpub audit`) beyond listing and reading files."""

    strange: dict[str, str] = {}  # noqa: RUF012 - entries that are no file publish writes (a directory's symlinks)

    def check_room(self, size: int) -> None:
        """A store with a known amount of free space refuses a publish that cannot fit; a bucket has no limit."""

    def local_folder(self, folder: str):
        raise PublishError(f"{folder}: a bucket or a directory is read file by file")

    def key_of(self, url: str) -> None:
        return None  # `hubpub audit` maps URLs below the collection's base itself

    def close(self) -> None:
        pass


class Cancelled(Exception):
    """An upload stopped because the user pressed Ctrl-C."""


class Exists(Exception):
    """A new object's name was taken meanwhile, by another publisher: nothing was overwritten."""


def crc32c_of(path: Path) -> str:
    checksum = google_crc32c.Checksum()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            checksum.update(block)
    return base64.b64encode(checksum.digest()).decode()



def plan_objects(manifest: Manifest, dist: Path, base: str, records: dict, *, signed: bool = False,
                 sidecars: Path | None = None) -> list[Upload]:
    """Every tarball (+ .sha256) with a build report, and every rendered doc, with its object name
    and its public URL below `base`; with `signed`, each file's `.sig` (else a `.sig` left in dist/ by an
    earlier signed publish stays there). Each `.sha256` is written again into `sidecars` naming the file
    as published (`1.tar.gz`, not the dist's `<artifact>.tar.gz`), so `sha256sum -c` works beside it."""
    uploads: list[Upload] = []
    layout = Dist(dist)
    for artifact in manifest.artifacts():
        tar = layout.tarball(artifact.name)
        record = records.get(artifact.name)
        if record is None or not tar.is_file():
            continue
        files = [(tar, artifact.asset_object),
                 (layout.tarball_sha256(artifact.name), artifact.asset_object + ".sha256")]
        for fmt in FORMATS:  # each format's files as a bucket holds them, with their .sha256
            files += fmt.objects(artifact, record, layout)
        signatures = [(sig, relative + SIGNATURE) for source, relative in files
                      if signed and (sig := fresh_signature(source))]
        for source, relative in files + signatures:
            if not source.is_file():
                raise PublishError(f"{source}: missing; rebuild {artifact.name}")
            if relative.endswith(SHA256) and sidecars is not None:
                source = _renamed_sidecar(source, relative, sidecars)
            uploads.append(Upload(source, relative, source.stat().st_size, crc32c_of(source),
                                  f"{base}/{relative}", artifact.name, record.random_weights))
        if any(f.size != (layout.root / f.path).stat().st_size for f in record.artifact_entries()):
            raise PublishError(f"{tar}: does not match its build report; rebuild {artifact.name}")
    for folder, prefix, pattern in ((layout.docs, "docs/", "*.md"), (layout.site_upload, "site/", "*")):
        for path in sorted(folder.rglob(pattern)) if folder.is_dir() else []:
            if path.is_file():
                relative = prefix + path.relative_to(folder).as_posix()
                uploads.append(Upload(path, relative, path.stat().st_size, crc32c_of(path), f"{base}/{relative}"))
    return uploads


SHA256 = ".sha256"


def _renamed_sidecar(source: Path, relative: str, folder: Path) -> Path:
    """A copy of a `.sha256` naming the file as `relative` publishes it."""
    from hubpub._files import write_if_changed

    with open(source, "rb") as f:
        digest = (f.read(1024).decode("ascii", "replace").split() or [""])[0]
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise PublishError(f"{source}: not a sha256 sidecar (`<digest>  <name>`); rebuild its artifact")
    name = posixpath.basename(relative.removesuffix(SHA256))
    write_if_changed(folder / relative, f"{digest}  {name}\n")
    return folder / relative


# What a bucket serves each object as: pages and docs change (short cache), versioned artifacts never do.
CONTENT_TYPES = {".html": "text/html; charset=utf-8", ".css": "text/css; charset=utf-8",
                 ".js": "text/javascript; charset=utf-8", ".md": "text/markdown; charset=utf-8",
                 ".svg": "image/svg+xml", ".png": "image/png", ".gz": "application/gzip",
                 ".keras": "application/zip", ".sha256": "text/plain; charset=utf-8",
                 ".tflite": "application/octet-stream", ".txt": "text/plain; charset=utf-8",
                 SIGNATURE: "application/json"}
SHORT_CACHE, LONG_CACHE = "public, max-age=300", "public, max-age=31536000, immutable"


def object_headers(relative: str) -> tuple[str, str]:
    """(Content-Type, Cache-Control) of a published object."""
    content_type = CONTENT_TYPES.get(Path(relative).suffix, "application/octet-stream")
    mutable = relative.startswith(("docs/", "site/"))
    return content_type, SHORT_CACHE if mutable else LONG_CACHE


def check_asset_paths(job: PublishJob, dest: Destination, uploads: list[Upload], found) -> None:
    """Each doc's asset-path must be an object this publish uploads, or one `found(relative)` at the
    store already, read from the job's URL base."""
    base, urls = job.base, {u.public_url for u in uploads if u.artifact}
    for doc in job.docs:
        for asset in doc.metadata.get("asset-path", []):
            if asset in urls:
                continue
            relative = asset.removeprefix(base + "/") if asset.startswith(base + "/") else None
            if relative is None:
                raise PublishError(
                    f"{doc.path}: asset-path {asset} is not below {base}, where {dest} is read from; nothing was "
                    f"uploaded. Render the docs for this destination: {job.fix}")
            if not found(relative):
                raise PublishError(f"{doc.path}: asset-path {asset} matches no tarball being published or already "
                                   f"published to {dest}; nothing was uploaded. Build it, or re-render the docs")


def publish_objects(dest: Destination, store, job: PublishJob, *, local_root: Path | None = None) -> PublishResult:
    """The whole flow for a store (`LocalStore`, `GcsStore`); `local_root` is a directory destination's
    folder, left as it was if the publish is refused."""
    uploads = plan_objects(job.manifest, job.dist, job.base, job.records, signed=job.signed,
                           sidecars=Dist(job.dist).published_sha256)
    if job.artifacts_only:
        uploads = [u for u in uploads if u.artifact]
    if not uploads:
        raise PublishError(f"{job.dist}: nothing to publish (no tarballs with build reports, no docs); run a build "
                           "first")
    with cleanup_created_dirs(local_root) if local_root else contextlib.nullcontext():
        if not (job.dry_run and local_root):  # a dry run creates no local folder
            store.check()
        existing = {u.relative: s for u in uploads if (s := store.stat(dest.key(u.relative))) is not None}
        if not job.artifacts_only:
            check_asset_paths(job, dest, uploads, lambda relative: store.stat(dest.key(relative)) is not None)
        return _publish_checked(store, dest, job.base, uploads, existing, force=job.force, dry_run=job.dry_run,
                                jobs=job.jobs)


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

    store.check_room(sum(u.size for u, _ in todo))  # a directory: its free space, before anything is written
    # The artifact files first, the docs and pages that link them only once every one has landed: a failed
    # publish leaves no doc pointing at a file that is not there.
    files, pages = [t for t in todo if not t[0].mutable], [t for t in todo if t[0].mutable]
    with progress_bar(total=sum(u.size for u, _ in todo), unit="B", unit_scale=True, desc=f"upload to {dest}") as bar:
        for batch in (files, pages):
            outcomes, errors = _upload_all(store, dest, batch, bar, jobs)
            result.outcomes += outcomes
            if errors:
                _failed(dest, result, errors, batch, pages if batch is files else [])
    order = {u.relative: i for i, u in enumerate(uploads)}
    result.outcomes.sort(key=lambda o: order[o.upload.relative])
    return result


def _failed(dest: Destination, result: PublishResult, errors: list[str], batch: list, held_back: list) -> None:
    """One error line: how many failed and the first reason; what did upload is logged (it stays published)."""
    done = [dest.key(o.upload.relative) for o in result.outcomes if o.status != "already published"]
    for key in done:
        log.info("uploaded: %s", key)
    others = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    held = f"; the {len(held_back)} docs and pages were not uploaded" if held_back else ""
    raise PublishError(f"{dest}: {len(errors)} of {len(batch)} upload(s) failed: {errors[0]}{others}; {len(done)} "
                       f"uploaded and stay published{held} (rerun to upload the rest)")


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

    cancel = threading.Event()
    work: queue.SimpleQueue[tuple[Upload, Stat | None]] = queue.SimpleQueue()
    done: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()  # (kind of end, its value)
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
    outcomes: list[Outcome] = []
    errors: list[str] = []
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


def verify_objects(dest: Destination, manifest: Manifest, dist: Path, result: PublishResult, handle, *,
                   fine_tune: bool = False):
    """hub.KerasLayer on one published tarball, compared with its build record; `handle(relative, url)`
    is what a user loads it from (the public URL of a bucket, a directory's file)."""
    from hubpub.verify import read_reference, verify_handle

    tar = next((o.upload for o in result.outcomes if o.upload.relative.endswith(".tar.gz")), None)
    if tar is not None:
        artifact, relative, url = tar.artifact, tar.relative, tar.public_url
        assert artifact is not None  # a tarball is always an artifact's
    else:  # docs only (the collect step): the first artifact they document, where the shards published it
        found = next((a for a in manifest.artifacts() if Dist(dist).report(a.name).is_file()), None)
        if found is None:
            raise PublishError("nothing published to verify")
        artifact, relative = found.name, found.asset_object
        url = f"{result.public_url_base}/{relative}"
    return verify_handle(handle(relative, url), read_reference(Dist(dist).report(artifact)), fine_tune=fine_tune)
