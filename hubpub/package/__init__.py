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

    gzip through ISA-L (`isal`): standard gzip, 19x faster than zlib here (tiny: 0.15 s against
    2.8 s at level 1) and as small (91.2% of the tar). Float weights barely compress at any level.
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

    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(f".{out_path.name}.{os.getpid()}.tmp")
    try:
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
                    with open(path, "rb") as f:
                        tar.addfile(info, f)
                else:
                    tar.addfile(info)
        digest = raw.digest.hexdigest()
        os.replace(tmp, out_path)
    finally:
        tmp.unlink(missing_ok=True)
    sha_path = out_path.with_name(out_path.name + ".sha256")
    sha_tmp = sha_path.with_name(f".{sha_path.name}.tmp")
    sha_tmp.write_text(f"{digest}  {out_path.name}\n")
    os.replace(sha_tmp, sha_path)
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


def check_tarball(path: str | Path) -> tuple[str, ...]:
    """Check an archive against the Hub rules before publishing; return its member names."""
    path = Path(path)
    try:
        with _open_archive(path) as tar:
            infos = tar.getmembers()
    except (tarfile.TarError, OSError, EOFError, isal_zlib.error) as e:
        raise PackageError(f"{path}: not a readable tar archive: {e}") from None
    members = [(info, info.name.removeprefix("./")) for info in infos if info.name not in ("", ".", "./")]
    names = [name for _, name in members]
    if "saved_model.pb" not in names:
        wrapped = sorted({n.split("/", 1)[0] for n in names if n.endswith("/saved_model.pb")})
        hint = f" (is it wrapped in a folder? top level: {', '.join(wrapped)})" if wrapped else ""
        raise PackageError(f"{path}: no saved_model.pb at the archive root{hint}")
    for info, name in members:
        _check_member(path, info, name)
    return tuple(names)


@contextlib.contextmanager
def _open_archive(path: Path) -> Iterator[tarfile.TarFile]:
    with open(path, "rb") as f:
        gzipped = f.read(2) == b"\x1f\x8b"
    if not gzipped:
        with tarfile.open(path, "r:*") as tar:
            yield tar
        return
    # Reading a gzip tar walks the whole stream; ISA-L decompresses it several times faster.
    with igzip.open(path, "rb") as gz, tarfile.open(fileobj=gz, mode="r:") as tar:
        yield tar


def _check_member(archive: Path, info: tarfile.TarInfo, name: str) -> None:
    if info.issym() or info.islnk():
        raise PackageError(f"{archive}: member {name} is a link; Hub archives may not contain links")
    if name.startswith("/") or ".." in PurePosixPath(name).parts:
        raise PackageError(f"{archive}: member {name} escapes the archive root")
    if not (info.isfile() or info.isdir()):
        raise PackageError(f"{archive}: member {name} is not a regular file or directory")
    if not ALLOWED.match(name.rstrip("/")):
        raise PackageError(f"{archive}: member {name} is not allowed in a Hub archive")


def safe_extract(path: str | Path, dest: str | Path) -> Path:
    """Extract after checking every member: no links, absolute paths or `..`."""
    check_tarball(path)
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    with _open_archive(path) as tar:
        tar.extractall(dest, filter="data")
    return dest
