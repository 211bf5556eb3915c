"""This process's peak memory so far: what Linux keeps as the high-water mark of its resident set
(`VmHWM`). Read at the end of each stage, it says which stage set the build's peak (the first that
reached it); it is never reset, so `getrusage` and `time -v` stay true. Elsewhere: None."""

from __future__ import annotations

from pathlib import Path

_STATUS = Path("/proc/self/status")


def peak_rss_mb() -> int | None:
    """The process's peak resident set since it started, in MiB."""
    try:
        with _STATUS.open() as f:
            return next(int(line.split()[1]) // 1024 for line in f if line.startswith("VmHWM:"))
    except (OSError, StopIteration, ValueError):
        return None
