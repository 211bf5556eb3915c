"""The `hubpub` command line: argument parsing and printing; the work is in the library."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

from hubpub import __version__
from hubpub.errors import HubpubError
from hubpub.manifest import load_manifest

log = logging.getLogger("hubpub")


class _Group(click.Group):
    """Turns a user-caused `HubpubError` into one line per problem and exit code 1."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except HubpubError as e:
            for line in e.lines():
                click.echo(f"error: {line}", err=True)
            ctx.exit(1)


manifest_option = click.option(
    "--manifest", "manifest_path", type=click.Path(path_type=Path), default="collection.yaml",
    show_default=True, help="The collection manifest.")


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="hubpub")
@click.option("-v", "--verbose", count=True, help="More log output (repeat for debug).")
@click.option("-q", "--quiet", is_flag=True, help="Only errors; no progress bars.")
@click.pass_context
def cli(ctx: click.Context, verbose: int, quiet: bool) -> None:
    """Build, document, verify and publish a TF-Hub style model collection."""
    level = logging.ERROR if quiet else (logging.DEBUG if verbose > 1 else logging.INFO)
    logging.basicConfig(level=level, format="%(message)s", stream=sys.stderr, force=True)
    if quiet:
        import os

        os.environ["HUBPUB_DISABLE_PROGRESS"] = "1"
    ctx.obj = {"verbose": verbose, "quiet": quiet}


@cli.command()
@manifest_option
def validate(manifest_path: Path) -> None:
    """Check the manifest; print a one-line summary, or every problem with its place."""
    m = load_manifest(manifest_path)
    click.echo(
        f"{manifest_path}: ok: publisher {m.publisher.handle}, collection {m.collection.name}, "
        f"{len(m.architectures)} architectures, {len(m.variants)} variants, "
        f"{len(m.artifacts())} artifacts"
    )


@cli.command("list")
@manifest_option
@click.option("--only", multiple=True, help="Glob on variant names (repeatable).")
def list_(manifest_path: Path, only: tuple[str, ...]) -> None:
    """Print the artifacts: variants x kinds, with resolution, classes and parameters."""
    from hubpub.manifest import iter_selected

    m = load_manifest(manifest_path)
    rows = [("artifact", "variant", "kind", "arch", "res", "classes", "params")]
    for v in iter_selected(m, only):
        for a in v.artifacts():
            classes = str(v.num_classes) if a.kind == "classifier" else f"({v.feature_dim}-d)"
            rows.append((a.name, v.name, a.kind, v.architecture_name, str(v.resolution), classes,
                         f"{v.parameter_count(a.kind) / 1e6:.2f}M"))
    click.echo(_table(rows))


def _table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main() -> None:
    cli(prog_name="hubpub")

