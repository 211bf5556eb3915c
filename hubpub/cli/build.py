"""Commands that build: validate, list, verify-parity, build, build-all and the demo."""

from __future__ import annotations

import logging
from pathlib import Path

import click

from hubpub._tf import import_tensorflow
from hubpub.cli.group import cli
from hubpub.cli.options import (
    PATH,
    TEXT,
    check_sizes,
    checkpoint_overrides,
    format_options,
    manifest_option,
    notebooks_note,
    notebooks_option,
    parse_kinds,
    parse_shard,
    public_url_option,
    skipped,
    table,
    verified_note,
)
from hubpub.errors import HubpubError
from hubpub.layout import Dist
from hubpub.manifest import KINDS, load_manifest

log = logging.getLogger("hubpub")


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
    rows = [("artifact", "variant", "kind", "arch", "res", "classes", "params")]  # params "?": known once built
    for v in iter_selected(m, only):
        for a in v.artifacts():
            classes = str(v.num_classes) if a.kind == "classifier" else f"({v.feature_dim}-d)"
            params = v.parameter_count(a.kind)
            rows.append((a.name, v.name, a.kind, v.architecture_name, str(v.resolution), classes,
                         "?" if params is None else f"{params / 1e6:.2f}M"))
    click.echo(table(rows))


@cli.command("verify-parity")
@click.argument("variant")
@click.option("--checkpoint", "checkpoint", required=True, type=TEXT, help="Checkpoint path or http(s) URL.")
@click.option("--size", "sizes", type=(int, int), multiple=True, metavar="H W",
              help="Input size (repeatable); default: native and native+(32, 96).")
@click.option("--kinds", default="classifier,feature-extractor", show_default=True)
@click.option("--input-convention", type=click.Choice(["hub", "normalized"]), default="hub", show_default=True)
@click.option("--report", "report_path", type=PATH, default=None,
              help="JSON report path [default: dist/reports/VARIANT.parity.json].")
@manifest_option
def verify_parity(variant: str, checkpoint: str, sizes, kinds: str, input_convention: str,
                  report_path: Path | None, manifest_path: Path) -> None:
    """Compare the ported Keras model with the PyTorch reference, per stage and on the logits."""
    from hubpub.errors import ParityError
    from hubpub.parity import TOLERANCE
    from hubpub.pipeline import verify_parity_report

    manifest = load_manifest(manifest_path)
    v = manifest.variant(variant)
    check_sizes(sizes, v.min_input_size)
    chosen = parse_kinds(kinds)
    report_path = report_path or Dist(Path("dist")).parity_report(v.name)
    import_tensorflow()
    result = verify_parity_report(v, checkpoint, report_path, sizes=list(sizes) or None, kinds=chosen,
                                  input_convention=input_convention)
    rows = [("kind", "size", "max |Δ| out", "max rel", "top-1 agree", "ok")]
    for kind, r in result.items():
        for run in r["runs"]:
            out = run["taps"][run["output"]]
            agree = "-" if run["top1_agreement"] is None else f"{run['top1_agreement']:.0%}"
            rows.append((kind, "x".join(map(str, run["size"])), f"{out['max_abs']:.2e}",
                         f"{out['max_rel']:.2e}", agree, "yes" if run["passed"] else "NO"))
    click.echo(table(rows))
    click.echo(f"report: {report_path}")
    failed = [k for k, r in result.items() if not r["passed"]]
    if failed:
        raise ParityError(f"{v.name}: parity above tolerance {TOLERANCE:g} for {', '.join(failed)}")


@cli.command()
@click.argument("variant")
@click.option("--checkpoint", default=None, type=TEXT, help="Checkpoint path or URL [default: the manifest's URL].")
@click.option("--kinds", default="classifier,feature-extractor", show_default=True)
@click.option("--input-convention", type=click.Choice(["hub", "normalized"]), default="hub", show_default=True)
@click.option("--out", type=PATH, default="dist", show_default=True)
@click.option("--no-parity", is_flag=True, help="Skip the PyTorch parity check.")
@format_options
@manifest_option
def build(variant: str, checkpoint: str | None, kinds: str, input_convention: str, out: Path,
          no_parity: bool, manifest_path: Path, **skip) -> None:
    """Build, port, check parity, export, round-trip and pack both kinds of one variant."""
    from hubpub.pipeline import build_variant, default_formats

    manifest = load_manifest(manifest_path)
    v = manifest.variant(variant)
    chosen = parse_kinds(kinds)
    formats = default_formats(skipped(skip) + manifest.formats_off)
    import_tensorflow()
    from hubpub._files import folder_lock, full_disk

    with folder_lock(out, "build"):
        try:
            records = build_variant(v, out, checkpoint=checkpoint, kinds=chosen, input_convention=input_convention,
                                    parity=not no_parity, on_stage=lambda a, s: log.info("%s: %s", a, s),
                                    formats=formats)
        except OSError as e:
            if (full := full_disk(e, out)) is not None:
                raise full from None
            raise
    rows = [("artifact", "params", "tarball", "parity max |Δ|", "round-trip", ".keras vs SavedModel", "seconds")]
    for r in records:
        rows.append((r.artifact, f"{r.parameters / 1e6:.2f}M", f"{r.tarball.size / 2**20:.1f} MiB",
                     f"{r.parity.max_abs:.2e}" if r.parity.max_abs is not None else r.parity.status,
                     f"{r.round_trip.max_abs:.1e}", "-" if r.keras is None else f"{r.keras.max_abs:.1e}",
                     f"{sum(r.timings.values()):.1f}"))
    click.echo(table(rows))
    dist = Dist(out)
    folders = dict.fromkeys((dist.root / f).parent for r in records for f in (*r.artifact_files(), r.saved_model))
    click.echo(f"wrote {', '.join(map(str, (*folders, dist.reports)))}")


class _StageProgress:
    """A variants bar with the current stage, or one log line per stage when bars are off."""

    def __init__(self):
        from hubpub.progress import progress_bar, progress_enabled

        self.enabled = progress_enabled()
        self.bar = progress_bar(desc="variants", unit="variant")

    def __call__(self, name: str, stage: str) -> None:
        if stage == "done" or stage.startswith("FAILED"):
            self.bar.update(1)
        if self.enabled:
            self.bar.set_postfix_str(f"{name}: {stage}")
        else:
            log.info("%s: %s", name, stage)

    def close(self) -> None:
        self.bar.close()


def _print_collection(result, kinds: tuple[str, ...], out: Path, *, verified: bool = True) -> None:
    """build-all's result on the terminal: the table, each failure, and what was rendered and published
    (and, with `verified`, the artifact checked downstream)."""
    if not result.summary.artifacts:
        click.echo(result.docs_note)
        return
    rows = [("artifact", "status", "params", "tarball", "parity max |Δ|", "seconds")]
    for r in result.summary.artifacts:
        if r.status == "failed":
            rows.append((r.artifact, "FAILED", "-", "-", "-", f"{r.seconds:.1f}"))
            continue
        rows.append((r.artifact, r.status + (" (random weights)" if r.random_weights else ""),
                     f"{r.parameters / 1e6:.2f}M", f"{r.tarball_size / 2**20:.1f} MiB",
                     "-" if r.parity_max_abs is None else f"{r.parity_max_abs:.1e}", f"{r.seconds:.1f}"))
    click.echo(table(rows))
    for r in result.summary.artifacts:
        if r.status == "failed" and r.kind == kinds[0]:
            click.echo(f"error: {r.variant}: {r.error}", err=True)
    if result.docs is not None:
        click.echo(f"docs: {len(result.docs.paths)} rendered and validated under {result.docs.root}, "
                   f"linking to {result.public_url_base}")
    else:
        click.echo(f"docs: {result.docs_note}")
    if result.site is not None:
        click.echo(f"site: {len(result.site.pages)} pages, open {result.site.index.resolve().as_uri()}")
    if result.notebooks:
        ran = sum(nb.executed for nb in result.notebooks)
        click.echo(f"notebooks: {len(result.notebooks)} in {result.notebooks[0].path.parent} ({ran} executed)")
    click.echo(f"report: {Dist(out).build_report}")
    if result.published is not None:
        click.echo(f"published to {result.published.destination}: {result.published.summary()}")
        notebooks_note(result.published)
        if verified:
            verified_note(result.published)


@cli.command("build-all")
@manifest_option
@click.option("--out", type=PATH, default="dist", show_default=True)
@click.option("--only", multiple=True, help="Glob on variant names (repeatable).")
@click.option("--kinds", default="classifier,feature-extractor", show_default=True)
@click.option("--jobs", type=click.IntRange(1, 64), default=1, show_default=True, help="Worker processes.")
@click.option("--shard", default=None, type=TEXT, metavar="K/N",
              help="Build only shard K of N (1-based), e.g. in a CI matrix; `auto`: the shard a Kubernetes "
              "Indexed Job or GitLab's parallel says.")
@click.option("--scheduler", default=None, type=TEXT, envvar="HUBPUB_SCHEDULER", metavar="ADDRESS",
              help="Build on a Dask cluster: tcp://HOST:PORT, or local:N for N worker processes here.")
@click.option("--force", is_flag=True, help="Rebuild even what is up to date.")
@click.option("--checkpoint", "checkpoints", multiple=True, metavar="VARIANT=PATH_OR_URL",
              help="Use this checkpoint instead of the manifest's URL (repeatable).")
@click.option("--input-convention", type=click.Choice(["hub", "normalized"]), default="hub", show_default=True)
@click.option("--no-parity", is_flag=True, help="Skip the PyTorch parity check.")
@format_options
@click.option("--publish", "publish_dest", type=TEXT, default=None, metavar="DEST",
              help="Then publish to gs://BUCKET/PREFIX or DIR (the docs link there).")
@public_url_option
@notebooks_option
@click.option("--execute-notebooks", is_flag=True, help="Run the usage notebooks against this build; keep outputs.")
@click.option("--collect", is_flag=True, help="Build nothing: render the notebooks, docs and site of the records "
              "gathered in OUT/reports (every shard's), and publish those with --publish.")
@click.option("--require-pinned", is_flag=True, help="Refuse to download a checkpoint without a sha256 "
              "(checkpoint.sha256 or collection.lock), before any download.")
@click.option("--no-verify", is_flag=True, help="With --publish: skip loading one published artifact.")
def build_all_cmd(manifest_path, out, only, kinds, jobs, shard, scheduler, force, checkpoints, input_convention,
                  no_parity, publish_dest, public_url, notebooks_out, execute_notebooks, collect,
                  require_pinned, no_verify, **skip) -> None:
    """Build every artifact of the collection: incremental, resumable, parallel, shardable, or on a Dask
    cluster."""
    from hubpub.pipeline import build_collection, default_formats, parse_scheduler

    if collect and (shard or checkpoints or force):
        raise click.UsageError("--collect builds nothing: it takes no --shard, --checkpoint or --force")
    if scheduler is not None:
        try:
            scheduler = parse_scheduler(scheduler)
        except ValueError as e:
            raise click.BadParameter(str(e), param_hint="--scheduler (or HUBPUB_SCHEDULER)") from None
        explicit_jobs = click.get_current_context().get_parameter_source("jobs") != click.core.ParameterSource.DEFAULT
        for given, option in ((shard, "--shard"), (collect, "--collect"), (explicit_jobs, "--jobs")):
            if given:
                raise click.UsageError(f"--scheduler {scheduler} takes no {option}: the cluster's workers run "
                                       "every selected variant")
    progress = _StageProgress()
    kinds = parse_kinds(kinds)
    try:
        manifest = load_manifest(manifest_path)
        result = build_collection(manifest, out, only=only, kinds=kinds, jobs=jobs, scheduler=scheduler,
                                  shard=parse_shard(shard), collect=collect, require_pinned=require_pinned,
                                  formats=None if collect else default_formats(skipped(skip) + manifest.formats_off),
                                  force=force,
                                  checkpoints=checkpoint_overrides(checkpoints), input_convention=input_convention,
                                  parity=not no_parity, publish_dest=publish_dest, public_url=public_url,
                                  progress=progress,
                                  notebooks=notebooks_out, execute=execute_notebooks, verify=not no_verify)
    finally:
        progress.close()
    _print_collection(result, kinds, out)
    if result.summary.failed:
        failed = result.summary.failed
        raise HubpubError(f"{len(failed)} variant(s) failed: {', '.join(failed)}")


@cli.command()
@click.option("--out", type=PATH, default="dist", show_default=True)
@click.option("--variant", default=None, type=TEXT, help="[default: the manifest's first variant]")
@manifest_option
def demo(out: Path, variant: str | None, manifest_path: Path) -> None:
    """Offline end-to-end run: random official-format checkpoint -> build-all -> docs -> publish -> verify
    -> usage notebooks, executed."""
    import time

    from hubpub.demo import DEMO_PUBLIC_URL, run_demo

    start = time.perf_counter()

    def said(checkpoint: Path, made: bool) -> None:
        click.echo(f"1. {'wrote' if made else 'reusing'} a random-weight checkpoint in the official layout: "
                   f"{checkpoint}")
        click.echo("2-3. build-all (both kinds), usage notebooks written and executed, docs rendered and validated")

    progress = _StageProgress()
    try:
        done = run_demo(load_manifest(manifest_path), out, variant=variant, progress=progress, on_checkpoint=said)
    finally:
        progress.close()
    result, dist = done.collection, Dist(out)
    _print_collection(result, KINDS, out, verified=False)  # step 5 says it, fine-tuning included
    checked = result.published.verified if result.published is not None else None
    # The demo publishes, verifies and fine-tunes (run_demo), or has raised.
    assert checked is not None and checked.fine_tune is not None
    click.echo(f"4. published to the local destination {dist.published}")
    click.echo(f"5. verified: {checked.handle} loads with hub.KerasLayer, matches the build "
               f"(max |Δ| {checked.max_abs:.1e}), and fine-tunes (loss {checked.fine_tune['loss']:.3f})")
    click.echo(f"6. usage notebooks, executed against this build (each doc's Colab link names one): "
               f"{', '.join(str(nb.path) for nb in result.notebooks)}; check the links with "
               f"`hubpub validate-docs {dist.docs} --notebooks {dist.notebooks}`")
    if result.site is not None:
        click.echo(f"   the collection site: open {result.site.index.resolve().as_uri()} (as published: "
                   f"{(dist.published / 'site' / 'index.html').resolve().as_uri()})")
    click.echo(f"7. done in {time.perf_counter() - start:.0f}s: tarballs in {dist.tars}, .keras files in "
               f"{dist.keras_files}, docs in {dist.docs}, report {dist.build_report}")
    click.echo(f"   the docs link to {DEMO_PUBLIC_URL}: serve the destination there with "
               f"`python -m http.server 8000 -d {dist.published}`, then open {DEMO_PUBLIC_URL}/site/index.html")
