"""What makes a rebuild unnecessary: the inputs key of an artifact, the record it matches, and the lock
file of checkpoint hashes."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from hubpub._files import write_atomic
from hubpub.layout import Dist
from hubpub.manifest import Variant
from hubpub.record import (
    BuildRecord,
    RecordError,
    read_record,
)

log = logging.getLogger(__name__)


LOCK_NAME = "collection.lock"


def inputs_key(variant: Variant, kind: str, checkpoint_sha256: str, input_convention: str, parity: bool,
               formats: tuple[str, ...] = ()) -> str:
    """What an artifact's bytes depend on: its manifest entry, the checkpoint, the formats built, hubpub's
    version."""
    import hashlib

    from hubpub import __version__

    # `.keras` and LiteRT have entries of their own in the key (`keras`, `litert`), apart from the other
    # formats' list: the key's layout is part of every record's key, and a build stays up to date only while
    # its key is computed the same way.
    keras_file, litert = "keras" in formats, "litert" in formats
    formats = tuple(f for f in formats if f not in ("keras", "litert"))
    entry = {"name": variant.name, "architecture": variant.architecture.model_dump(),
             "datasets": [(d.key, d.classes) for d in variant.datasets], "num_classes": variant.num_classes,
             "resolution": variant.resolution, "checkpoint_url": variant.checkpoint_url,
             "eval": variant.eval.model_dump(), "version": variant.version}
    blob = json.dumps({"variant": entry, "kind": kind, "checkpoint_sha256": checkpoint_sha256,
                       "hubpub": __version__, "input_convention": input_convention, "parity": parity,
                       "keras": keras_file,
                       "litert": [variant.litert_formats, variant.litert_min_cosine,
                                  [str(p) for p in variant.litert_calibration]] if litert else None,
                       **({"formats": list(formats)} if formats else {})},
                      sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def built_from(variant: Variant, record: BuildRecord) -> bool:
    """Whether `record` was built from this manifest entry by this hubpub: its inputs key is the key of
    `variant` with the record's own checkpoint and input convention, and any choice of the command line
    (parity on or off, the formats built)."""
    from itertools import combinations

    from hubpub.formats import FORMATS

    names = [f.name for f in FORMATS]  # in the order `default_formats` gives them
    choices = [c for n in range(len(names) + 1) for c in combinations(names, n)]
    return record.inputs_key is not None and any(
        inputs_key(variant, record.kind, record.checkpoint.sha256, record.input_convention, parity, formats)
        == record.inputs_key for parity in (True, False) for formats in choices)


def up_to_date(dist: Dist, name: str, key: str) -> BuildRecord | None:
    """The artifact's record if its outputs exist and were built from the same inputs (and with the
    same record schema: an old record means a rebuild)."""
    try:
        record = read_record(dist.report(name))
    except RecordError:
        return None
    tar = dist.tarball(name)
    if (record.inputs_key != key or not tar.is_file() or tar.stat().st_size != record.tarball.size
            or not (dist.saved_model(name) / "saved_model.pb").is_file()):
        return None
    for entry in record.artifact_entries():
        path = dist.root / entry.path
        if not path.is_file() or path.stat().st_size != entry.size:
            return None
    return record


def read_lock(path: Path) -> dict[str, dict]:
    import yaml

    if not path.is_file():
        return {}
    data = yaml.safe_load(path.read_text()) or {}
    return data.get("checkpoints", {}) if isinstance(data, dict) else {}


def write_lock(path: Path, entries: dict[str, dict]) -> None:
    import yaml

    write_atomic(path, "# Checkpoint hashes recorded by hubpub on first download; commit this file.\n"
                 + yaml.safe_dump({"checkpoints": dict(sorted(entries.items()))}, sort_keys=True))


def check_pinned(manifest, variants: list[Variant], lock: dict, lock_path: Path, overrides: dict[str, str]) -> None:
    """Refuse, before any download, a variant whose checkpoint has no sha256 to check it against: neither
    the manifest's `checkpoint.sha256` nor a `collection.lock` entry for the same URL."""
    from hubpub.errors import FetchError

    unpinned = [v.name for v in variants if v.name not in overrides and not v.checkpoint_sha256
                and not (lock.get(v.name, {}).get("url") == v.checkpoint_url and lock[v.name].get("sha256"))]
    if unpinned:
        raise FetchError(
            f"{len(unpinned)} checkpoint(s) not pinned, refused before downloading (require_pinned): "
            f"{', '.join(unpinned[:6])}{', ...' if len(unpinned) > 6 else ''}; give checkpoint.sha256 in "
            f"{manifest.path.name}, or build once where you trust the download and commit {lock_path.name}")
