"""Reading a `.keras` file as its users read it (`keras.saving.load_model`, safe mode, no custom
objects), after bounding the zip: the `.keras` format's check, `hubpub verify`, and a user's own model
read as a checkpoint (the `keras` family) all load through here."""

from __future__ import annotations

import zipfile
from pathlib import Path

from hubpub.errors import HubpubError
from hubpub.package import DEFAULT_MAX_UNPACKED


class KerasFileError(HubpubError):
    """A Keras model file does not load as its users load it."""


# Keras parses config.json and metadata.json whole, in memory: a real model's are kilobytes to a few MB.
MAX_KERAS_JSON = 64 * 2**20
MAX_KERAS_MEMBERS = 10_000


def check_keras_zip(path: Path, *, max_unpacked: int = DEFAULT_MAX_UNPACKED, shown_as: str | None = None) -> None:
    """Bound a `.keras` zip before Keras reads it, from its directory (zipfile reads no more than a member's
    declared size): its members and their unpacked total, and the JSON Keras parses in memory."""
    shown = shown_as or str(path)
    try:
        with zipfile.ZipFile(path) as z:
            members = z.infolist()
    except (zipfile.BadZipFile, OSError) as e:
        raise KerasFileError(f"{shown}: not a .keras file (a zip archive of config and weights): {e}") from None
    if len(members) > MAX_KERAS_MEMBERS:
        raise KerasFileError(f"{shown}: {len(members):,} zip members; a .keras file has a handful")
    total = 0
    for m in members:
        total += m.file_size
        if total > max_unpacked:
            raise KerasFileError(f"{shown}: unpacks to more than {max_unpacked:,} bytes (at member {m.filename}); "
                                 "refused before loading (raise the limit with --max-unpacked if the model really "
                                 "is this large)")
        if m.filename in ("config.json", "metadata.json") and m.file_size > MAX_KERAS_JSON:
            raise KerasFileError(f"{shown}: {m.filename} unpacks to {m.file_size:,} bytes; Keras reads it whole "
                                 f"into memory, and a model's is at most a few MB (refused above {MAX_KERAS_JSON:,})")


def load_keras_file(path: Path | str, *, shown_as: str | None = None, max_unpacked: int = DEFAULT_MAX_UNPACKED):
    """`keras.saving.load_model` as a consumer calls it: safe mode, no custom objects, after
    `check_keras_zip`. One error line."""
    import keras

    if Path(path).is_file():
        if not zipfile.is_zipfile(path):  # Keras would say "File not found"
            raise KerasFileError(f"{shown_as or path}: not a .keras file (a zip archive of config and weights)")
        check_keras_zip(Path(path), max_unpacked=max_unpacked, shown_as=shown_as)
    try:
        return keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as e:  # Keras raises many types for a wrong, damaged or foreign file
        first = (str(e).strip().splitlines() or [""])[0].replace(str(path), shown_as or str(path))
        raise KerasFileError(f"{shown_as or path}: keras.saving.load_model cannot load it: "
                             f"{type(e).__name__}: {first}") from None
