"""Checkpoint readers: official or timm `.pth`, `.safetensors`, `.npz`, read lazily.

A `Checkpoint` is a read-only mapping of key -> float32 numpy array that loads one tensor at a
time, and knows every shape without loading, so porting never holds two full copies of a model.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import mmap
import re
import zipfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import numpy as np

from hubpub.errors import CheckpointError

SUFFIXES = {".pth": "pth", ".pt": "pth", ".bin": "pth", ".safetensors": "safetensors", ".npz": "npz"}


class Checkpoint(Mapping[str, np.ndarray]):
    """Lazily loaded tensors of one checkpoint file."""

    def __init__(self, path: Path, file_format: str, shapes: dict[str, tuple[int, ...]],
                 load: Callable[[str], np.ndarray], close: Callable[[], None] = lambda: None,
                 release: Callable[[str], None] = lambda key: None, metadata: dict | None = None):
        self.path = path
        self.metadata = metadata or {}
        self.file_format = file_format
        self._shapes = shapes
        self._load = load
        self._close = close
        self._release = release

    def release(self, key: str) -> None:
        """Hint that `key` will not be read again, so its memory-mapped pages can be dropped."""
        self._release(key)

    def shape(self, key: str) -> tuple[int, ...]:
        return self._shapes[key]

    def __getitem__(self, key: str) -> np.ndarray:
        if key not in self._shapes:
            raise KeyError(key)
        try:
            array = self._load(key)
        except Exception as e:  # the file can be damaged past its header
            raise CheckpointError(f"{self.path}: tensor {key!r} cannot be read: {e}") from None
        return np.asarray(array, dtype=np.float32)

    def __iter__(self) -> Iterator[str]:
        return iter(self._shapes)

    def __len__(self) -> int:
        return len(self._shapes)

    def close(self) -> None:
        self._close()

    def __enter__(self) -> Checkpoint:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_checkpoint(path: str | Path) -> Checkpoint:
    """Open a checkpoint file; the format comes from the suffix, the layout later from the keys."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    file_format = SUFFIXES.get(path.suffix.lower())
    if file_format is None:
        raise CheckpointError(
            f"{path}: unknown checkpoint suffix {path.suffix!r}; expected one of {', '.join(SUFFIXES)}")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: the file is empty (0 bytes); download it again")
    reader = {"pth": _read_pth, "safetensors": _read_safetensors, "npz": _read_npz}[file_format]
    try:
        ckpt = reader(path)
    except CheckpointError:
        raise
    except Exception as e:
        # PyTorch's safe loader refuses a pickle that would import a callable (code) or build an object.
        unsafe = re.search(r"(unsupported GLOBAL [\w.]+|Unsupported global: GLOBAL [\w.]+)", str(e))
        if unsafe:
            raise CheckpointError(
                f"{path}: refused as unsafe: the pickle holds Python code or objects beyond tensors "
                f"({unsafe.group(0)}); "
                "hubpub loads only plain tensors (torch.load weights_only=True)") from None
        # The reader's first sentence says what is wrong; PyTorch follows it with a paragraph of advice.
        reason = str(e).strip().split(". ", 1)[0].splitlines()[0] if str(e).strip() else ""
        raise CheckpointError(
            f"{path}: not a readable {file_format} checkpoint (corrupt or truncated?): "
            f"{type(e).__name__}: {reason}") from None
    if not len(ckpt):
        raise CheckpointError(f"{path}: the checkpoint holds no tensors")
    return ckpt


# safetensors' dtypes numpy reads as they are (little-endian); others go through the library's reader.
_SAFETENSORS_DTYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4", "I16": "<i2",
                       "I8": "i1", "U8": "u1", "BOOL": "?"}


def _read_safetensors(path: Path) -> Checkpoint:
    """The library opens the file and checks its header against it (offsets in bounds, no gaps); the
    tensors are then read from the file with plain reads. The library's numpy reader copies each tensor
    out of a mapping of the whole file, whose pages stay resident until it is closed: porting ConvNeXt
    large held the checkpoint's 0.79 GB a second time that way (benchmarks/bench_stage_memory.py)."""
    import json
    import struct

    from safetensors import safe_open

    handle = safe_open(str(path), framework="numpy")
    shapes = {k: tuple(handle.get_slice(k).get_shape()) for k in handle.keys()}  # noqa: SIM118
    f = open(path, "rb")  # noqa: SIM115 - closed with the checkpoint
    (length,) = struct.unpack("<Q", f.read(8))
    header = json.loads(f.read(length))  # as the library has just read and checked it
    start = 8 + length

    def load(key: str) -> np.ndarray:
        entry = header[key]
        dtype = _SAFETENSORS_DTYPES.get(entry["dtype"])
        if dtype is None:
            return handle.get_tensor(key)
        begin, end = entry["data_offsets"]
        array = np.empty(shapes[key], dtype)
        if end > begin:
            f.seek(start + begin)
            # numpy's stubs give ndarray the buffer protocol only from Python 3.12 on; it has it on 3.11 too.
            if f.readinto(memoryview(array.reshape(-1).view(np.uint8))) != end - begin:  # type: ignore[arg-type]
                raise CheckpointError(f"{path}: tensor {key!r} is cut short (truncated file?)")
        return array

    return Checkpoint(path, "safetensors", shapes, load, f.close, metadata=handle.metadata())


def _read_npz(path: Path) -> Checkpoint:
    npz = np.load(path, allow_pickle=False)
    shapes = {}
    with zipfile.ZipFile(path) as zf:
        for info in zf.infolist():
            key = info.filename.removesuffix(".npy")
            with zf.open(info) as f:
                major, _ = np.lib.format.read_magic(f)
                read_header = (np.lib.format.read_array_header_1_0 if major == 1
                               else np.lib.format.read_array_header_2_0)
                shape, _, _ = read_header(f)
            shapes[key] = tuple(shape)
    return Checkpoint(path, "npz", shapes, lambda k: npz[k], npz.close)


def _read_pth(path: Path) -> Checkpoint:
    from hubpub._torch import require_torch

    torch = require_torch()
    mapped = True
    try:
        # mmap: tensors stay on disk until ported, one at a time.
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError as e:
        if "mmap" not in str(e):
            raise
        mapped = False  # legacy (non-zip) format: loaded into anonymous memory
        obj = torch.load(path, map_location="cpu", weights_only=True)
    state = obj
    if isinstance(obj, dict):
        for key in ("model", "state_dict", "model_ema"):
            if isinstance(obj.get(key), dict):
                state = obj[key]
                break
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(
            f"{path}: expected a state_dict, or a dict holding one under 'model'; "
            f"found {type(obj).__name__} with keys {list(obj)[:5] if isinstance(obj, dict) else '-'}")
    shapes = {k: tuple(v.shape) for k, v in state.items()}
    return Checkpoint(path, "pth", shapes, lambda k: state[k].detach().float().numpy(),
                      # Dropping pages is only safe for a file mapping: anonymous memory would be zeroed.
                      release=(lambda k: _drop_pages(state[k])) if mapped else (lambda k: None))


_PAGE = mmap.PAGESIZE
_MADV_DONTNEED = 4


def _drop_pages(tensor) -> None:
    """Drop a ported tensor's pages from a private read-only file mapping (torch mmap=True).

    Without this, every tensor read stays resident until the whole file is closed, and porting
    holds two full copies of the weights. A dropped page would be re-read from the file if touched.
    """
    if _libc is None or tensor.numel() == 0:
        return
    start = tensor.data_ptr() & ~(_PAGE - 1)
    end = tensor.data_ptr() + tensor.numel() * tensor.element_size()
    _libc.madvise(ctypes.c_void_p(start), ctypes.c_size_t(end - start), _MADV_DONTNEED)


_libc: ctypes.CDLL | None
try:
    _libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
except OSError:  # pragma: no cover - not glibc/musl: keep the pages
    _libc = None
