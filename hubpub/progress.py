"""Progress bars that fall back to nothing when silenced or when output is not a terminal."""

from __future__ import annotations

import os
import sys

from tqdm.auto import tqdm


def progress_enabled() -> bool:
    if os.environ.get("HUBPUB_DISABLE_PROGRESS", "") not in ("", "0"):
        return False
    return sys.stderr.isatty()


def progress_bar(**kwargs) -> tqdm:
    """A tqdm bar on stderr, disabled under HUBPUB_DISABLE_PROGRESS=1 or without a TTY."""
    return tqdm(disable=not progress_enabled(), file=sys.stderr, leave=False, **kwargs)
