"""The formats an artifact is built in besides its SavedModel, listed here: each a module with a `Format`
(`base.py` says what it gives). Adding one is that module, one entry in `FORMATS`, and its template text
(`templates/formats/<name>.md.j2`): the build, the record, the docs, the site and every destination
follow from the entry.

The SavedModel and its Hub tarball, the Keras 3 file and the LiteRT files came before this seam and are
built by their own modules (`export`, `package`, `keras_artifact`, `litert`)."""

from __future__ import annotations

from hubpub.formats.base import Format, FormatError, FormatJob
from hubpub.formats.onnx import Onnx

FORMATS: tuple[Format, ...] = (Onnx(),)

__all__ = ["FORMATS", "Format", "FormatError", "FormatJob", "by_name"]


def by_name(name: str) -> Format:
    return next(f for f in FORMATS if f.name == name)
