"""Checkpoint download into a cache: streamed, resumed with Range requests, verified by sha256."""

from __future__ import annotations

import hashlib
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

from hubpub._files import cleanup_created_dirs, sha256_file, write_atomic
from hubpub.errors import FetchError
from hubpub.progress import progress_bar

log = logging.getLogger(__name__)

RETRYABLE_STATUS = {408, 429, 500, 502, 503, 504}
CHUNK = 1 << 20
# Small network reads: a read cut short loses its partial chunk, so keep what came before it.
NET_CHUNK = 1 << 16


@dataclass(frozen=True)
class Fetched:
    path: Path
    sha256: str
    downloaded: bool  # False when served from the cache or a local path


def cache_dir() -> Path:
    return Path(os.environ.get("HUBPUB_CACHE") or Path.home() / ".cache" / "hubpub")


def is_url(source: str) -> bool:
    return urlparse(str(source)).scheme in ("http", "https")


def fetch(source: str | Path, *, sha256: str | None = None, cache: Path | None = None,
          retries: int = 4, backoff: float = 0.5, timeout: float = 30.0) -> Fetched:
    """A local path is used in place; an http(s) URL is downloaded once into the cache.

    A partial download resumes where it stopped. If `sha256` is given, a mismatch deletes the
    file and raises `FetchError` showing both hashes.
    """
    source = str(source)
    parsed = urlparse(source)
    if parsed.scheme == "file":
        source = unquote(parsed.path)
    if not is_url(source):
        path = Path(source)
        if not path.is_file():
            raise FetchError(f"{source}: no such checkpoint file")
        digest = known_sha256(path, cache)
        _check(digest, sha256, source, None)
        return Fetched(path, digest, downloaded=False)

    name = Path(unquote(parsed.path)).name or "checkpoint"
    final = (cache or cache_dir()) / hashlib.sha1(source.encode()).hexdigest()[:16] / name
    if final.is_file():
        digest = _cached_sha256(final)
        _check(digest, sha256, source, final)
        return Fetched(final, digest, downloaded=False)
    part = final.with_name(final.name + ".part")
    with cleanup_created_dirs(final.parent):
        final.parent.mkdir(parents=True, exist_ok=True)
        try:
            download(source, part, retries=retries, backoff=backoff, timeout=timeout)
        except BaseException:
            # Bytes received stay for a resume; an empty part file is nothing worth keeping.
            if part.is_file() and part.stat().st_size == 0:
                part.unlink()
            raise
        digest = sha256_file(part)
        _check(digest, sha256, source, part)
    part.replace(final)
    _remember_sha256(final, digest)
    return Fetched(final, digest, downloaded=True)


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _stamp(path: Path) -> str:
    """What changes when a file's bytes may have: its size, modification time and inode."""
    st = path.stat()
    return f"{st.st_size} {st.st_mtime_ns} {st.st_ino}"


def _remember_sha256(path: Path, digest: str, sidecar: Path | None = None) -> None:
    write_atomic(sidecar or _sidecar(path), f"{digest} {_stamp(path)}\n")


def _cached_sha256(path: Path, sidecar: Path | None = None) -> str:
    """The sha256 recorded in `sidecar` (default: beside the file), while the file's size, mtime and
    inode are unchanged; else hashed again and recorded."""
    sidecar = sidecar or _sidecar(path)
    try:
        digest, stamp = sidecar.read_text().split(" ", 1)
        if stamp.strip() == _stamp(path):
            return digest
    except (OSError, ValueError):
        pass
    digest = sha256_file(path)
    _remember_sha256(path, digest, sidecar)
    return digest


def known_sha256(path: Path, cache: Path | None = None) -> str:
    """A local file's sha256, hashed again only when its size, mtime or inode changed (recorded in the
    cache, never beside a user's file): a rerun over unchanged checkpoints reads none of them."""
    key = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:16]
    sidecar = (cache or cache_dir()) / "local-sha256" / key
    try:
        return _cached_sha256(path, sidecar)
    except OSError:  # a read-only cache: hash every time
        return sha256_file(path)


def cached_sha256(url: str, cache: Path | None = None) -> str | None:
    """The sha256 of `url`'s download in the cache (stat-keyed, as `fetch` reads it), if it is there."""
    name = Path(unquote(urlparse(url).path)).name or "checkpoint"
    final = (cache or cache_dir()) / hashlib.sha1(url.encode()).hexdigest()[:16] / name
    return _cached_sha256(final) if final.is_file() else None


def _check(actual: str, expected: str | None, source: str, path: Path | None) -> None:
    if expected and actual != expected:
        if path is not None:
            path.unlink(missing_ok=True)
        raise FetchError(f"{source}: sha256 mismatch: expected {expected}, got {actual}"
                         + (" (the file was deleted)" if path is not None else ""))


def download(url: str, part: Path, *, retries: int = 4, backoff: float = 0.5, timeout: float = 30.0,
             max_bytes: int | None = None, shown_as: str | None = None) -> None:
    """Stream `url` into `part`, resuming with Range requests after a dropped connection.

    Errors name `shown_as` (default: the URL); more than `max_bytes` is refused.
    """
    import requests

    name = shown_as or url

    attempt = 0
    total: int | None = None
    while True:
        have = part.stat().st_size if part.exists() else 0
        headers = {"Range": f"bytes={have}-"} if have else {}
        try:
            with requests.get(url, headers=headers, stream=True, timeout=timeout) as r:
                if r.status_code == 416 and total is not None and have >= total:
                    return
                if r.status_code in RETRYABLE_STATUS:
                    raise _Retryable(f"HTTP {r.status_code}")
                if r.status_code not in (200, 206):
                    raise FetchError(f"{name}: HTTP {r.status_code} {r.reason}")
                if r.status_code == 200 and have:
                    have = 0  # the server ignored the Range header: start over
                length = int(r.headers.get("Content-Length", 0)) or None
                total = (have + length) if length else None
                with open(part, "ab" if have else "wb") as f, progress_bar(
                        total=total, initial=have, unit="B", unit_scale=True, desc=part.stem) as bar:
                    for block in r.iter_content(NET_CHUNK):
                        f.write(block)
                        bar.update(len(block))
                        if max_bytes is not None and f.tell() > max_bytes:
                            raise FetchError(f"{name}: larger than the limit of {max_bytes:,} bytes")
            size = part.stat().st_size
            if total is not None and size < total:
                raise _Retryable(f"connection closed at {size} of {total} bytes")
            return
        except (_Retryable, requests.ConnectionError, requests.Timeout,
                requests.exceptions.ChunkedEncodingError) as e:
            attempt += 1
            if attempt > retries:
                raise FetchError(f"{name}: download failed after {retries} retries: {e}") from None
            wait = backoff * 2 ** (attempt - 1)
            log.info("%s: %s; retrying in %.1fs (%d/%d)", name, e, wait, attempt, retries)
            time.sleep(wait)


class _Retryable(Exception):
    pass

