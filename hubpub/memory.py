"""This process's peak memory so far: what Linux keeps as the high-water mark of its resident set
(`VmHWM`). Read at the end of each stage, it says which stage set the build's peak (the first that
reached it); it is never reset, so `getrusage` and `time -v` stay true. Elsewhere: None."""

from __future__ import annotations

from pathlib import Path

_STATUS = Path("/proc/self/status")
# The kernel's figure can fall by a page or two between readings (it counts resident pages per thread and
# adds them up in batches; a clean-clone CI run saw 1237 MiB, then 1236): a peak never falls, so each
# reading is at least the highest before it in this process.
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
