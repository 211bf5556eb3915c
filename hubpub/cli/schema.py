"""`hubpub schema`: the manifest's JSON Schema, for editors and other validators."""

from __future__ import annotations

import click

from hubpub.cli.group import cli


@cli.command()
def schema() -> None:
    """Print the manifest's JSON Schema (collection.schema.json). Point an editor at it with a first line
    `# yaml-language-server: $schema=collection.schema.json` in the manifest; `hubpub validate` checks
    what a schema cannot (architectures, datasets, destinations)."""
    from hubpub.manifest.json_schema import shipped

    click.echo(shipped(), nl=False)
