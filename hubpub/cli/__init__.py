"""The `hubpub` command line: argument parsing and printing; the work is in the library.

`group` holds the command group and its error handling, `options` what the commands share, and
`build`, `publishing` and `schema` the commands themselves."""

from hubpub.cli import build, publishing, schema  # noqa: F401  (importing them adds their commands to the group)
from hubpub.cli.group import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_USAGE, cli, main

__all__ = ["EXIT_ERROR", "EXIT_INTERRUPTED", "EXIT_USAGE", "cli", "main"]
