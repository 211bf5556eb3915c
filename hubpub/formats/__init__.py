"""The formats an artifact is built in besides its SavedModel and Hub tarball, listed here: each a module
with a `Format` (`base.py` says what it gives). Adding one is that module, one entry in `FORMATS`, and its
template text (`templates/formats/<name>.md.j2`): the build, `--no-<name>`, the record, the docs, the site
and every destination follow from the entry.

The `.keras` file and the LiteRT files have record entries, docs and hub layouts of their own (they came
first: `keras` and `litert` in the record, the Hub's Keras layout, Kaggle's `keras` and `tfLite`
frameworks); a new format's files are the record's `formats` (`in_formats`), as ONNX's are."""

from __future__ import annotations

from hubpub.formats.base import Format, FormatError, FormatJob
from hubpub.formats.keras import Keras
from hubpub.formats.litert import LiteRT
from hubpub.formats.onnx import Onnx

FORMATS: tuple[Format, ...] = (Keras(), LiteRT(), Onnx())

__all__ = ["FILE_FORMATS", "FORMATS", "Format", "FormatError", "FormatJob", "by_name"]

# The formats whose files are the record's generic `formats`, one file each (ONNX).
FILE_FORMATS: tuple[Format, ...] = tuple(f for f in FORMATS if f.in_formats)


def by_name(name: str) -> Format:
    return next(f for f in FORMATS if f.name == name)
