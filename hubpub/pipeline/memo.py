"""A stage skipped when nothing it reads has changed and nothing it wrote has been touched since: what
makes a no-op rerun of a whole collection's notebooks, docs and site cost reading, not rendering."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from hubpub._files import write_json

T = TypeVar("T")


def files_below(*folders: Path) -> list[Path]:
    return sorted(p for folder in folders if folder.is_dir() for p in folder.rglob("*") if p.is_file())


@dataclass(frozen=True)
class Memo:
    """What a stage read (`key`: a hash of its settings and of the bytes of every file it reads) and what
    it wrote, kept in `path` (DIST/.stages/<stage>.json)."""

    path: Path
    key: str

    @classmethod
    def of(cls, dist_root: Path, stage: str, settings: list, reads: Iterable[Path]) -> Memo:
        from hubpub import __version__

        digest = hashlib.sha256(json.dumps([stage, __version__, *map(str, settings)]).encode())
        for path in sorted(reads):
            digest.update(f"\0{path}\0".encode())
            digest.update(path.read_bytes())
        return cls(dist_root / ".stages" / f"{stage}.json", digest.hexdigest())

    def recall(self, parse: Callable[[dict], T]) -> T | None:
        """The stage's result as stored, read by `parse`, if it ran with this key and its files are still as it
        left them. A memo that cannot be read or is not of this form (edited, truncated, a folder) means the
        stage runs again."""
        try:
            memo = json.loads(self.path.read_text(encoding="utf-8"))
            if not isinstance(memo, dict) or memo.get("key") != self.key:
                return None
            for path, (size, mtime) in memo["wrote"].items():
                st = os.stat(path)
                if (st.st_size, st.st_mtime_ns) != (size, mtime):
                    return None
            return parse(memo["result"])
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None

    def store(self, wrote: Iterable[Path], result: dict) -> None:
        stats = {str(p): [(st := p.stat()).st_size, st.st_mtime_ns] for p in wrote}
        if self.path.is_dir() and not self.path.is_symlink():  # not ours to keep: a memo is a file
            shutil.rmtree(self.path)
        write_json(self.path, {"key": self.key, "wrote": stats, "result": result})
