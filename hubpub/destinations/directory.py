"""A local directory with a bucket's semantics (no overwrite, atomic writes), read from the address it
is served from (`--public-url`, or the manifest's `public_url_base` for its own destination)."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from hubpub._files import temp_name
from hubpub.destinations.base import Destination, PublishJob, PublishResult, Stat, Upload
from hubpub.destinations.links import url_links
from hubpub.destinations.objects import Cancelled, Exists, ReadFileByFile, crc32c_of, publish_objects
from hubpub.errors import PublishError

if TYPE_CHECKING:
    from hubpub.manifest.values import Artifact, Manifest


# Hidden (a listing skips dot files), so it is neither audited nor counted as a published file.
RECORD = ".hubpub-publish.json"


@dataclass(frozen=True)
class Directory(Destination):
    """A folder of this machine (or a mounted share), served from an address given beside it."""

    path: Path
    title: ClassVar[str] = "a directory"
    form: ClassVar[str] = "a local directory"  # how its address is written

    @classmethod
    def parse(cls, text: str) -> Directory | None:
        if "://" in text:
            return None
        if not text.strip():
            raise PublishError("the destination is empty: give a bucket, a directory or a hub")
        return cls(Path(text))

    def __str__(self) -> str:
        return str(self.path)

    def same_as(self, other: Destination) -> bool:
        return isinstance(other, Directory) and self.path.resolve() == other.path.resolve()

    def own_url_base(self) -> str:
        raise PublishError(f"{self}: a local destination has no public URL of its own; pass --public-url with "
                           "the http(s) address it will be served from (the docs link there)")

    def links(self, base: str, publisher: str, artifact: Artifact, doc_path: str):
        return url_links(base, publisher, artifact, doc_path)

    def publish(self, job: PublishJob) -> PublishResult:
        return publish_objects(self, LocalStore(self.path), job, local_root=self.path)

    def reader(self) -> LocalStore:
        return LocalStore(self.path)

    def keep_record(self, record: dict) -> None:
        from hubpub._files import write_json

        write_json(self.path / RECORD, record)

    def publish_record(self) -> dict:
        import json

        try:
            with open(self.path / RECORD, "rb") as f:
                record = json.loads(f.read(1 << 20))
        except (OSError, ValueError):
            return {}
        return record if isinstance(record, dict) else {}

    def verify(self, manifest: Manifest, dist: Path, result: PublishResult, *, fine_tune: bool = False):
        from hubpub.destinations.objects import verify_objects

        return verify_objects(self, manifest, dist, result, lambda relative, url: str(self.path / relative),
                              fine_tune=fine_tune)


class LocalStore(ReadFileByFile):
    """A directory with the same semantics as a bucket: no overwrite, atomic writes."""

    def __init__(self, root: Path):
        self.root = root
        self._made: set[Path] = set()  # the folders this publish made, so only those are removed on failure
        self._folders = threading.Lock()

    def _make_folder(self, folder: Path) -> None:
        missing = [f for f in (folder, *folder.parents) if f.is_relative_to(self.root) and not f.exists()]
        folder.mkdir(parents=True, exist_ok=True)
        self._made.update(missing)

    def _drop_empty_folders(self, folder: Path) -> None:
        """No empty folder is left by files that did not land. Any upload that fails tries, not only the one
        that made the folder: uploads run at once, and the last to fail is the one that finds it empty."""
        while folder in self._made:
            try:
                folder.rmdir()
            except OSError:  # another upload's file is in it, or landed: it stays
                return
            self._made.discard(folder)
            folder = folder.parent

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

    def check_room(self, size: int) -> None:
        """Refuse before writing anything when the folder's file system has not `size` bytes free."""
        free = shutil.disk_usage(self.root).free
        if size > free:
            raise PublishError(f"{self.root}: no room for this publish: it writes {size:,} bytes, and its file "
                               f"system has {free:,} free (nothing was uploaded)")

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
            with self._folders:  # the folder and its temp file at once: a folder with a file in it is not dropped
                self._make_folder(target.parent)
                out = open(tmp, "wb")  # noqa: SIM115 -- closed by the with below
            with open(upload.source, "rb") as src, out as dst:
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
            with contextlib.suppress(OSError):  # before the folder: it must be empty to go
                tmp.unlink(missing_ok=True)
            with self._folders:
                self._drop_empty_folders(target.parent)
            if e.errno in (errno.ENOSPC, errno.EDQUOT):  # out of bytes, or of file entries (inodes)
                room = os.statvfs(self.root)
                raise PublishError(f"{target}: cannot write: no space left on the file system of {self.root} "
                                   f"({room.f_bavail * room.f_frsize:,} bytes and {room.f_favail:,} file entries "
                                   f"free, {upload.size:,} bytes to write); nothing was left under its name") from None
            raise PublishError(f"{target}: cannot write: {e.strerror or e}") from None
        finally:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)

    def listing(self) -> dict[str, int]:
        """Every regular file below the root (dot files aside); what else stands there (a symbolic link, a
        FIFO, a folder that cannot be read) goes to `strange`, never followed or opened."""
        if not self.root.is_dir():
            raise PublishError(f"{self.root}: no such directory")
        found, self.strange = {}, {}

        def unreadable(error: OSError) -> None:
            self.strange[Path(error.filename).relative_to(self.root).as_posix()] = \
                f"cannot be read: {error.strerror or error}"

        for folder, dirs, files in os.walk(self.root, onerror=unreadable):
            for name in sorted(dirs + files):
                path = Path(folder) / name
                relative = path.relative_to(self.root).as_posix()
                try:
                    st = os.lstat(path)
                except OSError as e:
                    self.strange[relative] = f"cannot be read: {e.strerror or e}"
                    continue
                if stat.S_ISLNK(st.st_mode):
                    self.strange[relative] = (f"a symbolic link (to {os.readlink(path)}): publish writes none, "
                                              "and an audit does not follow it")
                elif stat.S_ISREG(st.st_mode):
                    if not name.startswith("."):
                        found[relative] = st.st_size
                elif not stat.S_ISDIR(st.st_mode):
                    self.strange[relative] = "not a regular file (a FIFO, a socket or a device): not read"
        return dict(sorted(found.items()))

    @contextlib.contextmanager
    def local_copy(self, relative: str):
        yield self.root / relative  # already here: nothing to download

    def delete(self, key: str, generation: int) -> None:
        """Remove `key` if it is still the file of that generation (best effort: a directory has no
        conditional delete; the window is one stat)."""
        path = self.root / key
        with contextlib.suppress(FileNotFoundError, NotADirectoryError):
            if path.stat().st_ino == generation:
                path.unlink()
