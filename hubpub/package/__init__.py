"""Hub-layout tarballs: reproducible, allow-listed, written atomically; and safe extraction.

The archive root is the SavedModel root (no wrapping folder). Members are sorted, owned by 0:0
with empty owner names, stamped with a fixed mtime, and gzipped with no name or timestamp in the
header, so the same SavedModel always gives the same bytes.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from isal import igzip, isal_zlib

from hubpub._files import atomic_path, write_sha256
from hubpub.errors import PackageError

# What TF-Hub accepts at the archive root (directories included as entries).
ALLOWED = re.compile(
    r"^(saved_model\.pb|keras_metadata\.pb|fingerprint\.pb|variables|variables/variables\.[\w.-]+"
    r"|assets|assets/[\w.-][\w./-]*|assets\.extra|assets\.extra/[\w.-][\w./-]*)$")
FIXED_MTIME = 946684800  # 2000-01-01T00:00:00Z: any constant keeps archives reproducible


@dataclass(frozen=True)
class PackResult:
    path: Path
    sha256: str
    size: int
    members: tuple[str, ...]


def _members(root: Path) -> list[Path]:
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(dirnames) + sorted(filenames):
            out.append(Path(dirpath) / name)
    return sorted(out, key=lambda p: p.relative_to(root).as_posix())


def pack(saved_model_dir: str | Path, out_path: str | Path, *, compresslevel: int = 1) -> PackResult:
    """Tar.gz `saved_model_dir` in the Hub layout at `out_path` and write `<out_path>.sha256`.

    gzip through ISA-L (`isal`): standard gzip, many times faster than zlib and as small at level 1
    (benchmarks/results/build.json: the pack within the build's time). Float weights barely compress at
    any level.
    """
    root, out_path = Path(saved_model_dir), Path(out_path)
    if not (root / "saved_model.pb").is_file():
        raise PackageError(f"{root}: not a SavedModel directory (no saved_model.pb)")
    names = []
    for path in _members(root):
        name = path.relative_to(root).as_posix()
        if path.is_symlink():
            raise PackageError(f"{root}: {name} is a symlink; a Hub archive may not contain links")
        if not ALLOWED.match(name) or any(part.startswith(".") for part in PurePosixPath(name).parts):
            raise PackageError(f"{root}: {name} is not allowed in a Hub archive "
                               "(saved_model.pb, variables/variables.*, assets/*, fingerprint.pb only)")
        names.append(name)

    with atomic_path(out_path) as tmp:
        with open(tmp, "wb") as f, \
                igzip.GzipFile(filename="", mode="wb", fileobj=(raw := _Hashing(f)), mtime=0,
                               compresslevel=compresslevel) as gz, \
                tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for name in names:
                path = root / name
                info = tar.gettarinfo(str(path), arcname=name)
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                info.mtime = FIXED_MTIME
                info.mode = 0o755 if info.isdir() else 0o644
                info.pax_headers = {}
                if info.isfile():
                    with open(path, "rb") as member:
                        tar.addfile(info, member)
                else:
                    tar.addfile(info)
        digest = raw.digest.hexdigest()
    write_sha256(out_path, digest)
    return PackResult(out_path, digest, out_path.stat().st_size, tuple(names))


class _Hashing:
    """A write-only file that hashes what goes through it: no second read of the archive."""

    def __init__(self, f):
        self._f = f
        self.digest = hashlib.sha256()

    def write(self, data) -> int:
        self.digest.update(data)
        return self._f.write(data)

    def flush(self) -> None:
        self._f.flush()


# The largest unpacked archive (tarball or .keras zip) accepted by default (`verify --max-unpacked`): several
# times the largest model a manifest here describes (ConvNeXt XL), so only a crafted archive reaches it.
DEFAULT_MAX_UNPACKED = 16 * 2**30


def check_tarball(path: str | Path, *, max_unpacked: int | None = None, max_members: int = 100_000,
                  shown_as: str | None = None) -> tuple[str, ...]:
    """Check an archive against the Hub rules before publishing or loading it; return its member names.

    With `max_unpacked`, an archive whose members add up to more bytes is refused as soon as the
    headers say so, before anything is extracted. Errors name `shown_as` (default: the path).
    """
    path = Path(path)
    shown = shown_as or str(path)
    members: list[tuple[tarfile.TarInfo, str]] = []
    unpacked = 0
    try:
        with _open_archive(path) as tar:
            for info in tar:  # streamed: a bomb is stopped at the header that crosses the limit
                if info.name not in ("", ".", "./"):
                    members.append((info, info.name.removeprefix("./")))
                unpacked += info.size
                if max_unpacked is not None and unpacked > max_unpacked:
                    raise PackageError(f"{shown}: unpacks to more than {max_unpacked:,} bytes (at member "
                                       f"{info.name}); refused before extracting (raise the limit with "
                                       "--max-unpacked if the model really is this large)")
                if len(members) > max_members:
                    raise PackageError(f"{shown}: more than {max_members:,} members; not a SavedModel archive")
            # Read to the end, so the gzip trailer's CRC and length are checked here, not by the extraction
            # after gigabytes were written; bytes after the tar's end count against the limit too.
            while block := tar.fileobj.read(1 << 20):
                unpacked += len(block)
                if max_unpacked is not None and unpacked > max_unpacked:
                    raise PackageError(f"{shown}: unpacks to more than {max_unpacked:,} bytes (after the tar's "
                                       "end); refused before extracting")
    except (tarfile.TarError, EOFError) as e:
        raise PackageError(f"{shown}: not a readable tar archive: {e}") from None
    except (FileNotFoundError, IsADirectoryError, PermissionError) as e:
        raise PackageError(f"{shown}: cannot read it: {e.strerror}") from None
    # gzip's own checks: a damaged or crafted stream. isal's stub declares `error` an instance; it is a class.
    except (OSError, isal_zlib.error) as e:  # type: ignore[misc]
        raise PackageError(f"{shown}: not a valid gzip stream ({e}) after {unpacked:,} unpacked bytes; damaged or "
                           "crafted, refused before extracting") from None
    for info, name in members:
        _check_safe(shown, info, name)
    names = [name for _, name in members]
    if "saved_model.pb" not in names:
        wrapped = sorted({n.split("/", 1)[0] for n in names if n.endswith("/saved_model.pb")})
        hint = f" (is it wrapped in a folder? top level: {', '.join(wrapped)})" if wrapped else ""
        raise PackageError(f"{shown}: no saved_model.pb at the archive root{hint}")
    for name in names:
        if not ALLOWED.match(name.rstrip("/")):
            raise PackageError(f"{shown}: member {name} is not allowed in a Hub archive")
    return tuple(names)


@contextlib.contextmanager
def _open_archive(path: str | Path) -> Iterator[tarfile.TarFile]:
    with open(path, "rb") as f:
        gzipped = f.read(2) == b"\x1f\x8b"
    if not gzipped:
        with tarfile.open(path, "r:*") as tar:
            yield tar
        return
    # Reading a gzip tar walks the whole stream; ISA-L decompresses it several times faster.
    with igzip.open(path, "rb") as gz, tarfile.open(fileobj=gz, mode="r:") as tar:
        yield tar


def _check_safe(archive: str, info: tarfile.TarInfo, name: str) -> None:
    if info.issym() or info.islnk():
        raise PackageError(f"{archive}: member {name} is a link; Hub archives may not contain links")
    if name.startswith("/") or ".." in PurePosixPath(name).parts:
        raise PackageError(f"{archive}: member {name} escapes the archive root")
    if not (info.isfile() or info.isdir()):
        raise PackageError(f"{archive}: member {name} is not a regular file or directory")


def safe_extract(path: str | Path, dest: str | Path) -> Path:
    """Extract after checking every member: no links, absolute paths or `..`."""
    check_tarball(path)
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    with _open_archive(path) as tar:
        tar.extractall(dest, filter="data")
    return dest
