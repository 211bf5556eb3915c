"""A stage skipped when nothing it reads has changed and nothing it wrote has been touched since: what
makes a no-op rerun of a whole collection's notebooks, docs and site cost reading, not rendering."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from hubpub._files import write_json


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

    def recall(self) -> dict | None:
        """The stage's result as stored, if it ran with this key and its files are still as it left them."""
        try:
            memo = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return None
        if memo.get("key") != self.key:
            return None
        for path, (size, mtime) in memo["wrote"].items():
            try:
                st = os.stat(path)
            except OSError:
                return None
            if (st.st_size, st.st_mtime_ns) != (size, mtime):
                return None
        return memo["result"]

    def store(self, wrote: Iterable[Path], result: dict) -> None:
        stats = {str(p): [(st := p.stat()).st_size, st.st_mtime_ns] for p in wrote}
        write_json(self.path, {"key": self.key, "wrote": stats, "result": result})
