"""Errors a user can cause. The CLI prints them as one line each and exits non-zero.

Anything that is not a `HubpubError` is a bug in hubpub and may show a traceback.
"""

from __future__ import annotations


class HubpubError(Exception):
    """Base class for every error caused by input, configuration or the outside world.

    `problems` are further lines, one per problem, printed after the message.
    """

    def __init__(self, message: str, problems: list[str] | None = None):
        self.message = message
        self.problems = list(problems or [])
        super().__init__(message + "".join(f"\n{p}" for p in self.problems))

    def lines(self) -> list[str]:
        return [self.message, *self.problems]


class ManifestError(HubpubError):
    """The manifest is malformed; holds every problem found, each with its location."""

    def __init__(self, path: str, problems: list[str]):
        self.path = path
        super().__init__(f"{path}: {len(problems)} problem(s)", problems)

    def lines(self) -> list[str]:
        return [f"{self.path}: {p}" for p in self.problems]


class CheckpointError(HubpubError):
    """A checkpoint cannot be read, or does not fit the model it is ported into."""


class FetchError(HubpubError):
    """A download failed or its content does not match the expected hash."""


class ParityError(HubpubError):
    """The Keras model and the PyTorch reference disagree beyond the tolerance."""


class ExportError(HubpubError):
    """A SavedModel could not be written or does not reproduce the in-memory model."""


class PackageError(HubpubError):
    """A tarball is not in the TF-Hub layout, or is unsafe to extract."""


class DocsError(HubpubError):
    """A template failed to render, or a rendered doc breaks the tfhub.dev rules."""

    def lines(self) -> list[str]:
        return self.problems or [str(self)]


class PublishError(HubpubError):
    """An upload failed, or would overwrite a published object."""


class VerifyError(HubpubError):
    """A published artifact does not load or does not reproduce its reference outputs."""


class MissingExtraError(HubpubError):
    """An optional dependency (an `extra`) is needed for this operation."""
