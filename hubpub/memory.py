"""This process's memory: its peak so far, what Linux keeps as the high-water mark of its resident set
(`VmHWM`; read at the end of each stage, it says which stage set the build's peak, the first that reached
it; never reset, so `getrusage` and `time -v` stay true; elsewhere None), and the allocator setting a
build runs with (`large_blocks_to_the_os`)."""

from __future__ import annotations

import contextlib
import ctypes
import platform
from pathlib import Path

_STATUS = Path("/proc/self/status")
# The kernel's figure can fall by a page or two between readings (it counts resident pages per thread and
# adds them up in batches): a peak never falls, so each reading is at least the highest before it in this
# process.
_highest = [0]


def peak_rss_mb() -> int | None:
    """The process's peak resident set since it started, in MiB."""
    try:
        with _STATUS.open() as f:
            peak = next(int(line.split()[1]) // 1024 for line in f if line.startswith("VmHWM:"))
    except (OSError, StopIteration, ValueError):
        return None
    _highest[0] = max(_highest[0], peak)
    return _highest[0]


# glibc's mallopt parameter (malloc.h); other C libraries have no such switch, or another number for it.
_M_MMAP_THRESHOLD = -3
LARGE_BLOCK = 1 << 20
ARENA_BLOCK = 32 << 20  # the highest threshold glibc's own rule reaches
_threshold = [0]  # what this process last set (0: glibc's own rule still applies)


def large_blocks_to_the_os() -> bool:
    """From now on in this process, every block of 1 MiB or more gets its own mapping, handed back to the
    system when freed. glibc's default raises that threshold (up to 32 MiB) each time such a block is
    freed, so a model's weights, once freed, stay in the allocator's per-thread arenas, where the next
    copy (the `.keras` check's model, the round trip's reload) cannot always reuse them: ConvNeXt large
    at 384 px peaked 3.14x its weights above TensorFlow's baseline with glibc's default, 2.03x with this
    (benchmarks/bench_stage_memory.py). True where it took effect (glibc)."""
    return _set_threshold(LARGE_BLOCK)


@contextlib.contextmanager
def large_blocks_reused():
    """Within: blocks up to 32 MiB come from the arenas again, as glibc's default does once large blocks
    have been freed, for work that makes and frees many of them (LiteRT's converter: ConvNeXt tiny's four
    conversions took 52 s that way, 71 s with each block mapped fresh). After: as before."""
    before = _threshold[0]
    if not before:
        yield
        return
    _set_threshold(ARENA_BLOCK)
    try:
        yield
    finally:
        _set_threshold(before)


def _set_threshold(size: int) -> bool:
    if platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    if mallopt(_M_MMAP_THRESHOLD, size) != 1:
        return False
    _threshold[0] = size
    return True
