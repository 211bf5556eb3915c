"""File helpers shared by the stages: hashing, atomic writes, and no empty folders left behind."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import socket
import threading
from collections.abc import Iterator
from pathlib import Path


def sha256_file(path: Path, block_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(block_size):
            digest.update(block)
    return digest.hexdigest()


_HOST = socket.gethostname()


def temp_name(path: Path) -> Path:
    """The one temp name for `path`: hidden, beside it (same file system), per host, process and thread (two
    publishers in one process write the same name at once; cluster workers share a folder)."""
    return path.with_name(f".{path.name}.{_HOST}.{os.getpid()}.{threading.get_native_id()}.tmp")


def temp_prefix(what: str) -> str:
    """The prefix of a stage's temp folder (`tempfile`), with its process's id: a build-all that stops a worker
    removes what the worker could not."""
    return f"hubpub-{what}-{os.getpid()}-"


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temp path to write a file or a folder to; it replaces `path` only if the block succeeds.

    A crash or an error leaves the previous `path` (or nothing) and no temp file behind.
    """
    path = Path(path)
    tmp = temp_name(path)
    _remove(tmp)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        yield tmp
        if tmp.is_dir() and path.is_dir():  # a folder cannot replace a non-empty folder in one step
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        _remove(tmp)


def write_atomic(path: str | Path, data: str | bytes) -> Path:
    """Write text (UTF-8, LF) or bytes to `path` atomically."""
    path = Path(path)
    with atomic_path(path) as tmp:
        if isinstance(data, str):
            tmp.write_text(data, encoding="utf-8", newline="\n")
        else:
            tmp.write_bytes(data)
    return path


def sha256_sidecar(path: Path) -> Path:
    """The `.sha256` beside a file: `<digest>  <name>`, as `sha256sum -c` reads it."""
    return path.with_name(path.name + ".sha256")


def write_sha256(path: Path, digest: str) -> Path:
    return write_atomic(sha256_sidecar(path), f"{digest}  {path.name}\n")


def write_if_changed(path: str | Path, data: str | bytes) -> bool:
    """`write_atomic` unless `path` already holds these bytes (its mtime then stays); True if written."""
    path = Path(path)
    raw = data.encode() if isinstance(data, str) else data
    try:
        if path.stat().st_size == len(raw) and path.read_bytes() == raw:
            return False
    except OSError:
        pass
    write_atomic(path, raw)
    return True


def sync_tree(source: Path, target: Path) -> int:
    """Make `target` hold exactly the files of `source` (a staging folder, consumed): a file whose bytes
    are already there is left as it is, the others are moved in, and files `source` lacks are removed.
    Returns how many files were written."""
    wanted = {p.relative_to(source) for p in source.rglob("*") if p.is_file()}
    written = 0
    for rel in sorted(wanted):
        src, dst = source / rel, target / rel
        try:
            same = dst.is_file() and dst.stat().st_size == src.stat().st_size and dst.read_bytes() == src.read_bytes()
        except OSError:
            same = False
        if not same:
            dst.parent.mkdir(parents=True, exist_ok=True)
            if dst.is_dir():
                shutil.rmtree(dst)
            os.replace(src, dst)
            written += 1
    for path in sorted(target.rglob("*"), reverse=True) if target.is_dir() else ():
        rel = path.relative_to(target)
        if path.is_file() and rel not in wanted:
            path.unlink()
        elif path.is_dir() and not any(path.iterdir()):
            path.rmdir()
    return written


def write_json(path: str | Path, data) -> Path:
    """Write JSON atomically, keys sorted, so equal data gives equal bytes."""
    return write_atomic(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


@contextlib.contextmanager
def cleanup_created_dirs(path: str | Path) -> Iterator[Path]:
    """Around work that creates `path` (and maybe its parents): on an error, remove the folders
    this block created if they are still empty, so a failed command leaves nothing behind."""
    path = Path(path)
    missing = []
    p = path
    while not p.exists() and p != p.parent:
        missing.append(p)
        p = p.parent
    try:
        yield path
    except BaseException:
        for folder in missing:  # deepest first
            with contextlib.suppress(OSError):
                folder.rmdir()  # only when empty
        raise


def in_finalizer(frame) -> bool:
    """Whether `frame` (a signal handler's) runs inside a `__del__`, where Python ignores an exception raised
    (TensorFlow's objects have finalizers, run by the garbage collector): a handler raises it again after."""
    while frame is not None:
        if frame.f_code.co_name == "__del__":
            return True
        frame = frame.f_back
    return False


_children: set = set()
_children_lock = threading.Lock()


@contextlib.contextmanager
def _tracked(child, grace: float):
    """`child` among those `end_children` ends while the block runs; ended (`_end`) on an interrupt or error."""
    with _children_lock:
        _children.add(child)
    try:
        yield child
    except BaseException:
        _end(child, grace)
        raise
    finally:
        with _children_lock:
            _children.discard(child)


def run_child(command: list[str], *, env: dict | None = None, grace: float = 2.0):
    """`command` run to its end with its output captured, as `subprocess.run`; on an interrupt while
    it runs, the child is ended (SIGTERM, then SIGKILL after `grace` seconds) and waited for before the
    interrupt goes on, so no child outlives its caller's temp folders. `end_children` ends those run
    from other threads (a build's formats beside its main thread) when that thread is interrupted."""
    import subprocess

    child = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    with _tracked(child, grace):
        out, err = child.communicate()
    return subprocess.CompletedProcess(command, child.returncode, out, err)


@contextlib.contextmanager
def started_child(command: list[str], *, env: dict | None = None, stderr=None, grace: float = 2.0):
    """`command` started with pipes to its stdin and stdout (text), for a caller that talks to it; ended
    as `run_child`'s are (on leaving the block, on an interrupt, or by `end_children` from another thread)."""
    import subprocess

    child = subprocess.Popen(command, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr,
                             text=True)
    with _tracked(child, grace):
        yield child
        with contextlib.suppress(OSError):
            assert child.stdin is not None
            child.stdin.close()  # the end of its input: a child serving requests exits
        try:
            child.wait(grace)
        except subprocess.TimeoutExpired:
            _end(child, grace)


def end_children(grace: float = 2.0) -> None:
    """End every child `run_child` is running, in any thread (their callers then see a killed child)."""
    with _children_lock:
        running = list(_children)
    for child in running:
        _end(child, grace)


def _end(child, grace: float) -> None:
    import subprocess

    if child.poll() is None:
        child.terminate()
        try:
            child.wait(grace)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


_HELD: set[Path] = set()


@contextlib.contextmanager
def folder_lock(folder: Path, what: str) -> Iterator[None]:
    """Hold `folder/.hubpub.lock` while the block runs, so a second hubpub writing into `folder` stops at
    once with one line (`HubpubError`) instead of sweeping or replacing the first one's files. Re-entrant
    in one process; released by the system when the process dies, whatever the way."""
    import fcntl

    from hubpub.errors import HubpubError

    folder = Path(folder).resolve()
    if folder in _HELD:
        yield
        return
    made = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / ".hubpub.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
            raise HubpubError(f"{folder} is in use by another hubpub {what} ({holder}); wait for it to finish, "
                              "or give another folder") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {_HOST}".encode(), 0)
        _HELD.add(folder)
        try:
            yield
        finally:
            _HELD.discard(folder)
            if made and [p.name for p in folder.iterdir()] == [path.name]:  # a failed first run leaves no folder
                path.unlink()
                folder.rmdir()
    finally:
        os.close(fd)


# Below this much free space an OSError while writing is taken for a full disk: the libraries that write
# the model files (HDF5, TensorFlow) say it without an errno ("16384 requested and 9184 written").
FULL_DISK_BYTES = 64 * 2**20


def full_disk(error: BaseException, folder: Path):
    """A `HubpubError` saying the disk of `folder` is full, if that is what `error` (an OSError) means; else None."""
    import errno

    from hubpub.errors import HubpubError

    if not isinstance(error, OSError):
        return None
    probe = Path(folder).resolve()
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        free = shutil.disk_usage(probe).free
    except OSError:
        return None
    if error.errno not in (errno.ENOSPC, errno.EDQUOT) and free >= FULL_DISK_BYTES:
        return None
    where = getattr(error, "filename", None) or folder
    return HubpubError(f"{where}: no space left on the device ({free / 2**20:.1f} MiB free under {probe}); free "
                       "some space or give another --out, then rerun: finished files are kept")
