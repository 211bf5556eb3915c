"""The `hubpub` command line: argument parsing and printing; the work is in the library."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

from hubpub import __version__
from hubpub.errors import HubpubError
from hubpub.layout import Dist
from hubpub.manifest import load_manifest

log = logging.getLogger("hubpub")


EXIT_ERROR = 1  # bad input, configuration or outside world; a failed check
EXIT_USAGE = 2  # the command line itself: unknown option, bad option value
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT)


class _Interrupted(Exception):
    """Ctrl-C, carried past click's own handling (which prints an empty line first)."""


class _Group(click.Group):
    """Every failure a user can cause ends as `error: ...` lines on stderr and a documented exit code."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            raise _Interrupted() from None

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.UsageError as e:
            hint = f" (see `{e.ctx.command_path} --help`)" if e.ctx else ""
            click.echo(f"error: {e.format_message()}{hint}", err=True)
            code = EXIT_USAGE
        except HubpubError as e:
            for line in e.lines():
                click.echo(f"error: {line}", err=True)
            code = EXIT_ERROR
        except click.ClickException as e:  # e.g. a file option that cannot be opened
            click.echo(f"error: {e.format_message()}", err=True)
            code = EXIT_ERROR
        except (_Interrupted, click.Abort, KeyboardInterrupt):
            # Every stage writes atomically: nothing half-written stays under a final name.
            click.echo("error: interrupted; finished files are kept, rerun the command to go on", err=True)
            code = EXIT_INTERRUPTED
        code = code if isinstance(code, int) else 0
        if standalone_mode:
            sys.exit(code)
        return code


def _refuse_empty(value, fail) -> None:
    # `--dest "$UNSET"` must be a mistake, not the manifest's own destination (production)
    if isinstance(value, str) and not value.strip():
        fail("must not be empty (an unset variable?)")


class _Path(click.Path):
    def convert(self, value, param, ctx):
        _refuse_empty(value, lambda msg: self.fail(msg, param, ctx))
        return super().convert(value, param, ctx)


class _Text(click.types.StringParamType):
    def convert(self, value, param, ctx):
        _refuse_empty(value, lambda msg: self.fail(msg, param, ctx))
        return super().convert(value, param, ctx)


class _Seconds(click.types.FloatParamType):
    """A finite number of seconds in [1, 86400]: `nan` would retry forever, `-1` never."""

    name = "seconds"

    def convert(self, value, param, ctx):
        import math

        seconds = super().convert(value, param, ctx)
        if not math.isfinite(seconds) or not 1 <= seconds <= 86400:
            self.fail(f"must be a number of seconds from 1 to 86400; got {value!r}", param, ctx)
        return seconds


PATH, TEXT, SECONDS = _Path(path_type=Path), _Text(), _Seconds()

def format_options(command):
    """`--no-<format>` for each format of `hubpub.formats`; the command takes them as `**skip`."""
    from hubpub.formats import FORMATS

    for fmt in reversed(FORMATS):
        command = click.option(f"--no-{fmt.name}", f"skip_{fmt.name}", is_flag=True,
                               help=f"Build no {fmt.title} ({fmt.suffix}) files.")(command)
    return command


def _skipped(skip: dict) -> tuple[str, ...]:
    return tuple(name.removeprefix("skip_") for name, on in skip.items() if on)


no_keras_option = click.option("--no-keras", is_flag=True, help="Build no Keras 3 (.keras) artifact.")
no_litert_option = click.option("--no-litert", is_flag=True, help="Build no LiteRT (.tflite) files.")
notebooks_option = click.option(
    "--notebooks", "notebooks_out", type=PATH, default=None,
    help="The usage notebooks' folder, a subfolder per destination [default: DIST/notebooks].")
manifest_option = click.option(
    "--manifest", "manifest_path", type=PATH, default="collection.yaml",
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
    # Libraries' own chatter (google.auth warns about each credential source it tries) only with -vv.
    # huggingface_hub's HTTP client (httpx, httpx2 in its 2.x) logs every request at INFO ("HTTP Request: GET ...").
    for noisy in ("tensorflow", "absl", "h5py", "urllib3", "google", "nbclient", "traitlets", "jupyter_client",
                  "httpx", "httpcore", "httpx2", "httpcore2", "filelock"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if verbose > 1 else logging.ERROR)
    for client in ("huggingface_hub", "kagglehub"):  # their warnings matter; their progress lines do not
        logging.getLogger(client).setLevel(logging.DEBUG if verbose > 1 else logging.WARNING)
    if quiet:
        import os

        os.environ["HUBPUB_DISABLE_PROGRESS"] = "1"
        os.environ["TQDM_DISABLE"] = "1"  # the hub clients' own progress bars (kagglehub, huggingface_hub)
    if verbose > 1:
        import os

        os.environ["HUBPUB_NATIVE_LOGS"] = "1"  # TensorFlow's and LiteRT's C++ output too
    ctx.obj = {"verbose": verbose, "quiet": quiet}
    if ctx.invoked_subcommand not in ("validate", "list", "docs", "validate-docs", "site", None):
        from hubpub._tf import import_tensorflow

        import_tensorflow(verbose=verbose > 1)


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
    click.echo(_table(rows))


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

    v = load_manifest(manifest_path).variant(variant)
    _check_sizes(sizes, v.min_input_size)
    report_path = report_path or Dist("dist").parity_report(v.name)
    result = verify_parity_report(v, checkpoint, report_path, sizes=list(sizes) or None, kinds=_kinds(kinds),
                                  input_convention=input_convention)
    rows = [("kind", "size", "max |Δ| out", "max rel", "top-1 agree", "ok")]
    for kind, r in result.items():
        for run in r["runs"]:
            out = run["taps"][run["output"]]
            agree = "-" if run["top1_agreement"] is None else f"{run['top1_agreement']:.0%}"
            rows.append((kind, "x".join(map(str, run["size"])), f"{out['max_abs']:.2e}",
                         f"{out['max_rel']:.2e}", agree, "yes" if run["passed"] else "NO"))
    click.echo(_table(rows))
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
@no_keras_option
@no_litert_option
@format_options
@manifest_option
def build(variant: str, checkpoint: str | None, kinds: str, input_convention: str, out: Path,
          no_parity: bool, no_keras: bool, no_litert: bool, manifest_path: Path, **skip) -> None:
    """Build, port, check parity, export, round-trip and pack both kinds of one variant."""
    from hubpub.pipeline import build_variant, default_formats

    v = load_manifest(manifest_path).variant(variant)
    records = build_variant(v, out, checkpoint=checkpoint, kinds=_kinds(kinds), input_convention=input_convention,
                            parity=not no_parity, on_stage=lambda a, s: log.info("%s: %s", a, s),
                            keras_file=not no_keras, litert=not no_litert, formats=default_formats(_skipped(skip)))
    rows = [("artifact", "params", "tarball", "parity max |Δ|", "round-trip", ".keras vs SavedModel", "seconds")]
    for r in records:
        rows.append((r.artifact, f"{r.parameters / 1e6:.2f}M", f"{r.tarball.size / 2**20:.1f} MiB",
                     f"{r.parity.max_abs:.2e}" if r.parity.max_abs is not None else r.parity.status,
                     f"{r.round_trip.max_abs:.1e}", "-" if r.keras is None else f"{r.keras.max_abs:.1e}",
                     f"{sum(r.timings.values()):.1f}"))
    click.echo(_table(rows))
    dist = Dist(out)
    click.echo(f"wrote {dist.tars}, {dist.saved_models}, {dist.keras_files}, {dist.reports}")


@cli.command()
@click.argument("handle")
@click.option("--report", "report_path", type=PATH, default=None,
              help="The artifact's build report [default: dist/reports/<artifact>.json].")
@click.option("--fine-tune", is_flag=True, help="Also run one SGD step with trainable=True.")
@click.option("--max-unpacked", default="16G", show_default=True, metavar="SIZE",
              help="Refuse an archive that unpacks to more than this (e.g. 500M, 32G).")
def verify(handle: str, report_path: Path | None, fine_tune: bool, max_unpacked: str) -> None:
    """Load HANDLE with hub.KerasLayer (a URL, .tar.gz or directory), keras.saving.load_model (a .keras
    file or URL) or onnxruntime (a .onnx file or URL) and compare with the build's record."""
    from hubpub.formats import FORMATS
    from hubpub.verify import read_reference, verify_format, verify_handle, verify_keras

    limit = _byte_size(max_unpacked)
    path = handle.split("?")[0].rstrip("/")
    fmt = next((f for f in FORMATS if path.endswith(f.suffix)), None)
    if report_path is None:
        parts = path.split("/")
        # .../<artifact>/<version>.tar.gz (published), .../<artifact>.tar.gz (dist/tars) or a directory
        last = parts[-1].removesuffix(".tar.gz").removesuffix(".keras").removesuffix(fmt.suffix if fmt else "")
        name = parts[-2] if len(parts) > 1 and last.isdigit() else last
        report_path = Dist("dist").report(name)
    if fmt is not None:
        if fine_tune:
            raise click.UsageError(f"--fine-tune trains a SavedModel or a .keras file, not {fmt.title}. "
                                   f"Received: {handle}")
        result = verify_format(handle, read_reference(report_path), fmt, max_bytes=limit)
        loader = fmt.runner
    elif path.endswith(".keras"):
        result = verify_keras(handle, read_reference(report_path), fine_tune=fine_tune, max_bytes=limit)
        loader = "keras.saving.load_model"
    else:
        result = verify_handle(handle, read_reference(report_path), fine_tune=fine_tune, max_unpacked=limit)
        loader = "hub.KerasLayer"
    click.echo(f"{handle}: loads with {loader}; outputs match the build (max |Δ| {result.max_abs:.2e})")
    if result.fine_tune:
        ft = result.fine_tune
        click.echo(f"fine-tune: loss {ft['loss']:.4f}, {ft['backbone_weights_changed']}/{ft['backbone_weights']} "
                   "backbone weights changed")


public_url_option = click.option(
    "--public-url", type=TEXT, default=None, metavar="URL",
    help="The http(s) address the destination is read from [default: the manifest's public_url_base for its "
         "destination, https://storage.googleapis.com/BUCKET/PREFIX for another bucket].")


@cli.command()
@click.option("--template", "model_template", type=TEXT, default="model.md.j2", show_default=True,
              help="Model doc template: a name in the templates folders, or a path to your own.")
@click.option("--templates-dir", type=PATH, default=None,
              help="Your templates, searched first; then templates/ beside the manifest, then hubpub's own.")
@click.option("--dist", type=PATH, default="dist", show_default=True,
              help="Build output holding reports/ (and eval reports).")
@click.option("--out", type=PATH, default=None, help="[default: DIST/docs]")
@click.option("--dest", type=TEXT, default=None, help="Render for this destination [default: the manifest's].")
@public_url_option
@manifest_option
def docs(model_template: str, templates_dir: Path | None, dist: Path, out: Path | None, dest: str | None,
         public_url: str | None, manifest_path: Path) -> None:
    """Render the model, collection and publisher docs, then validate them."""
    from hubpub.destinations import parse, public_url_base
    from hubpub.docs import render_docs

    manifest = load_manifest(manifest_path)
    base = public_url_base(parse(dest or manifest.publish.destination), manifest, public_url)
    result = render_docs(manifest, dist=dist, out=out or Dist(dist).docs, templates_dir=templates_dir,
                         model_template=model_template, public_url_base=base)
    click.echo(f"rendered and validated {len(result.paths)} docs under {result.root}, linking to {base}")
    if result.skipped:
        click.echo(f"{len(result.skipped)} artifacts have no build report yet and no doc: "
                   f"{', '.join(result.skipped[:4])}{', ...' if len(result.skipped) > 4 else ''}")


@cli.command()
@click.option("--dist", type=PATH, default="dist", show_default=True)
@click.option("--out", type=PATH, default=None,
              help="[default: DIST/notebooks]; each destination's notebooks go in a folder of their own")
@click.option("--only", multiple=True, help="Glob on artifact names (repeatable).")
@click.option("--execute", "run", is_flag=True, help="Run each on a Jupyter kernel against this build; keep outputs.")
@click.option("--templates-dir", type=PATH, default=None,
              help="Your templates (classify.py.j2, fine_tune.py.j2), searched first.")
@click.option("--dest", type=TEXT, default=None,
              help="Link to the artifacts at this destination [default: the manifest's].")
@public_url_option
@manifest_option
def notebooks(dist: Path, out: Path | None, only: tuple[str, ...], run: bool, templates_dir: Path | None,
              dest: str | None, public_url: str | None, manifest_path: Path) -> None:
    """Write a usage notebook per built artifact (classify, or fine-tune), and optionally execute them."""
    from hubpub.destinations import parse, public_url_base
    from hubpub.notebooks import notebooks_dir, render_notebooks
    from hubpub.pipeline import execute_notebooks

    manifest = load_manifest(manifest_path)
    base = public_url_base(parse(dest or manifest.publish.destination), manifest, public_url)
    written = render_notebooks(manifest, dist=dist, out=out or notebooks_dir(dist),
                               templates_dir=templates_dir, public_url_base=base, only=only)
    if run:
        written = execute_notebooks(dist, written, progress=lambda name: log.info("executing %s", name))
    for nb in written:
        click.echo(f"{nb.path}{' (executed)' if nb.executed else ''}")


@cli.command()
@click.option("--dist", type=PATH, default="dist", show_default=True)
@click.option("--out", type=PATH, default=None, help="[default: DIST/site]")
@click.option("--templates-dir", type=PATH, default=None,
              help="Your templates: site/index.html.j2, site/model.html.j2, site/site.css, site/site.js.")
@click.option("--dest", type=TEXT, default=None,
              help="Link to the artifacts at this destination [default: the manifest's].")
@public_url_option
@manifest_option
def site(dist: Path, out: Path | None, templates_dir: Path | None, dest: str | None, public_url: str | None,
         manifest_path: Path) -> None:
    """Render the collection website from the build and its docs (render the docs first)."""
    from hubpub.destinations import parse, public_url_base
    from hubpub.site import render_site

    manifest = load_manifest(manifest_path)
    base = public_url_base(parse(dest or manifest.publish.destination), manifest, public_url)
    result = render_site(manifest, dist=dist, out=out, templates_dir=templates_dir, public_url_base=base)
    click.echo(f"{len(result.pages)} pages under {result.root}; open {result.index.resolve().as_uri()} (its downloads "
               f"are this build's files; `publish` uploads the copy in {result.upload}, linking to {base})")


@cli.command("validate-docs")
@click.argument("directory", type=PATH)
@click.option("--manifest", "manifest_path", type=PATH, default=None,
              help="Check the Colab links against this manifest's notebooks [default: collection.yaml, if present].")
@notebooks_option
def validate_docs_cmd(directory: Path, manifest_path: Path | None, notebooks_out: Path | None) -> None:
    """Check a docs tree against the tfhub.dev rules, and that every Colab link opens a notebook of the
    artifact it documents."""
    from hubpub.docs.validate import validate_docs
    from hubpub.notebooks import check_colab_links, checkout_notebooks

    found = validate_docs(directory)
    counts = ", ".join(f"{sum(d.kind == k for d in found)} {k}" for k in ("publisher", "collection", "module", "lite"))
    links = ""
    if manifest_path is None and not Path("collection.yaml").is_file():
        if any(d.metadata.get("colab") for d in found):
            log.warning("warning: Colab links not checked: no manifest (give --manifest)")
    else:
        manifest = load_manifest(manifest_path or "collection.yaml")
        folders = [notebooks_out] if notebooks_out else [f for f in (checkout_notebooks(manifest),) if f]
        check = check_colab_links(found, manifest, folders)
        for warning in check.warnings():
            log.warning("warning: %s", warning)
        links = f"; {len(check.checked)} Colab links open a notebook of their artifact"
    click.echo(f"{directory}: ok: {len(found)} docs ({counts}){links}")


@cli.command()
@click.option("--dist", type=PATH, default="dist", show_default=True)
@click.option("--dest", type=TEXT, default=None,
              help="gs://BUCKET/PREFIX, a local directory, kaggle://OWNER/MODEL or hf://ORG [default: the manifest's].")
@public_url_option
@click.option("--dry-run", is_flag=True, help="Print the plan; change nothing.")
@click.option("--force", is_flag=True, help="Overwrite published artifact files whose content differs.")
@click.option("--jobs", type=click.IntRange(1, 64), default=4, show_default=True, help="Parallel uploads.")
@click.option("--deadline", type=SECONDS, default=300.0, show_default=True,
              help="Seconds to keep retrying a failing request (408, 429, 5xx, connection errors); 1 to 86400.")
@click.option("--no-verify", is_flag=True, help="Skip loading one published artifact with hub.KerasLayer.")
@click.option("--public", is_flag=True, help="On Kaggle or the HF Hub: make the models public [default: the "
              "manifest's publish.public, else private].")
@notebooks_option
@manifest_option
def publish(dist: Path, dest: str | None, public_url: str | None, dry_run: bool, force: bool, jobs: int,
            deadline: float, no_verify: bool, public: bool, notebooks_out: Path | None, manifest_path: Path) -> None:
    """Publish the artifacts, docs and site to a bucket, a folder, Kaggle Models or the HF Hub; artifacts are
    immutable unless forced, docs and pages are updated."""
    from hubpub.destinations import parse
    from hubpub.publish import publish as run_publish
    from hubpub.publish import verify_published

    manifest = load_manifest(manifest_path)
    destination = parse(dest or manifest.publish.destination)
    result = run_publish(manifest, dist, destination, public_url=public_url, force=force, dry_run=dry_run, jobs=jobs,
                         deadline=deadline, notebooks=notebooks_out, public=public)
    for line in result.plan:
        click.echo(line)
    rows = [("object", "size", "status", "public URL")]
    for o in result.outcomes:
        rows.append((destination.key(o.upload.relative), f"{o.upload.size:,}", o.status, o.upload.public_url))
    click.echo(_table(rows))
    click.echo(f"{destination}: {_counts(result)}" + (f" ({result.visibility})" if result.visibility else ""))
    if result.site_url:
        click.echo(f"site: {result.site_url}")
    _notebooks_note(result)
    if not dry_run and not no_verify:
        v = verify_published(manifest, dist, destination, result)
        click.echo(f"verified: {v.handle} loads with hub.KerasLayer and matches its build (max |Δ| {v.max_abs:.1e})")


def _notebooks_note(result) -> None:
    if result.notebooks:
        click.echo(f"notebooks: {len(result.notebooks)} written to {result.notebooks[0].parent}: commit and push "
                   "them, so each doc's Colab link opens its notebook")


def _counts(result) -> str:
    counts: dict[str, int] = {}
    for o in result.outcomes:
        counts[o.status] = counts.get(o.status, 0) + 1
    return ", ".join(f"{n} {status}" for status, n in counts.items())


@cli.command("eval")
@click.argument("artifact_or_url")
@click.option("--data", type=PATH, required=True,
              help="ImageNet-style folder: class subfolders named by WordNet id.")
@click.option("--labels", "labels_file", type=PATH, default=None,
              help="Instead of subfolders: lines '<image path relative to --data> <wnid or class index>'.")
@click.option("--limit", type=click.IntRange(1), default=None, help="Evaluate the first N images only.")
@click.option("--batch-size", type=click.IntRange(1), default=32, show_default=True)
@click.option("--dist", type=PATH, default="dist", show_default=True)
@manifest_option
def eval_cmd(artifact_or_url: str, data: Path, labels_file: Path | None, limit: int | None, batch_size: int,
             dist: Path, manifest_path: Path) -> None:
    """Top-1/top-5 of a classifier (artifact name, directory or URL) with the official preprocessing."""
    from hubpub.eval import evaluate_artifact

    name, result, path, dataset = evaluate_artifact(load_manifest(manifest_path), artifact_or_url, data, dist=dist,
                                                    labels_file=labels_file, limit=limit, batch_size=batch_size)
    if dataset.unknown:
        click.echo(f"skipped {sum(dataset.unknown.values())} files in {len(dataset.unknown)} classes unknown to "
                   f"the model: {', '.join(list(dataset.unknown)[:5])}", err=True)
    click.echo(f"{name}: top-1 {result.top1:.2f}%  top-5 {result.top5:.2f}%  on {result.images} images "
               f"({len(result.corrupt)} corrupt and {sum(result.unknown.values())} unknown-class files skipped), "
               f"{result.images / result.seconds:.1f} img/s")
    click.echo(f"report: {path}")


MAX_PARITY_SIZE = 4096


def _check_sizes(sizes: tuple[tuple[int, int], ...], minimum: int) -> None:
    for h, w in sizes:
        if not (minimum <= h <= MAX_PARITY_SIZE and minimum <= w <= MAX_PARITY_SIZE):
            raise click.BadParameter(f"{h} {w}: height and width must be between {minimum} (the model's total "
                                     f"stride) and {MAX_PARITY_SIZE} pixels", param_hint="--size")


def _byte_size(text: str) -> int:
    """`16G`, `500M`, `1024` -> bytes."""
    units = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}
    number, unit = text.strip().upper().rstrip("IB") or "0", ""
    if number[-1:] in units:
        number, unit = number[:-1], number[-1]
    try:
        value = int(float(number) * units[unit])
    except ValueError:
        raise click.BadParameter(f"expected a size like 16G, 500M or 1048576; got {text!r}") from None
    if value <= 0:
        raise click.BadParameter(f"must be positive; got {text!r}")
    return value


def _shard(text: str | None) -> tuple[int, int] | None:
    if not text:
        return None
    try:
        k, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise click.BadParameter(f"expected K/N, like 2/8; got {text!r}", param_hint="--shard") from None
    if not 1 <= k <= n:
        raise click.BadParameter(f"K must be between 1 and N; got {text!r}", param_hint="--shard")
    return k, n


def _checkpoint_overrides(items: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for item in items:
        name, sep, source = item.partition("=")
        if not sep or not name or not source:
            raise click.BadParameter(f"expected VARIANT=PATH_OR_URL; got {item!r}", param_hint="--checkpoint")
        out[name] = source
    return out


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


def _build_all(manifest_path: Path, out: Path, *, only: tuple[str, ...], kinds: str, jobs: int = 1,
               shard: str | None = None, force: bool = False, checkpoints: tuple[str, ...] = (),
               input_convention: str = "hub", no_parity: bool = False, publish_dest: str | None = None,
               public_url: str | None = None, no_keras: bool = False, no_litert: bool = False,
               notebooks: Path | None = None, execute_notebooks: bool = False, collect: bool = False,
               require_pinned: bool = False, skip_formats: tuple[str, ...] = ()):
    """build-all's arguments to the library and its result to the terminal; shared with the demo."""
    from hubpub.pipeline import build_collection, default_formats

    if collect and (shard or checkpoints or force):
        raise click.UsageError("--collect builds nothing: it takes no --shard, --checkpoint or --force")
    manifest = load_manifest(manifest_path)
    progress = _StageProgress()
    try:
        result = build_collection(manifest, out, only=only, kinds=_kinds(kinds), jobs=jobs, shard=_shard(shard),
                                  collect=collect, require_pinned=require_pinned,
                                  formats=None if collect else default_formats(skip_formats),
                                  force=force, checkpoints=_checkpoint_overrides(checkpoints),
                                  input_convention=input_convention, parity=not no_parity,
                                  publish_dest=publish_dest, public_url=public_url, progress=progress,
                                  keras_file=not no_keras, litert=not no_litert, notebooks=notebooks,
                                  execute=execute_notebooks)
    finally:
        progress.close()
    if not result.summary.artifacts:
        click.echo(result.docs_note)
        return manifest, result
    rows = [("artifact", "status", "params", "tarball", "parity max |Δ|", "seconds")]
    for r in result.summary.artifacts:
        if r.status == "failed":
            rows.append((r.artifact, "FAILED", "-", "-", "-", f"{r.seconds:.1f}"))
            continue
        rows.append((r.artifact, r.status + (" (random weights)" if r.random_weights else ""),
                     f"{r.parameters / 1e6:.2f}M", f"{r.tarball_size / 2**20:.1f} MiB",
                     "-" if r.parity_max_abs is None else f"{r.parity_max_abs:.1e}", f"{r.seconds:.1f}"))
    click.echo(_table(rows))
    first_kind = kinds.split(",")[0].strip()
    for r in result.summary.artifacts:
        if r.status == "failed" and r.kind == first_kind:
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
        click.echo(f"published to {result.published.destination}: {_counts(result.published)}")
        _notebooks_note(result.published)
    return manifest, result


@cli.command("build-all")
@manifest_option
@click.option("--out", type=PATH, default="dist", show_default=True)
@click.option("--only", multiple=True, help="Glob on variant names (repeatable).")
@click.option("--kinds", default="classifier,feature-extractor", show_default=True)
@click.option("--jobs", type=click.IntRange(1, 64), default=1, show_default=True, help="Worker processes.")
@click.option("--shard", default=None, type=TEXT, metavar="K/N",
              help="Build only shard K of N (1-based), e.g. in a CI matrix.")
@click.option("--force", is_flag=True, help="Rebuild even what is up to date.")
@click.option("--checkpoint", "checkpoints", multiple=True, metavar="VARIANT=PATH_OR_URL",
              help="Use this checkpoint instead of the manifest's URL (repeatable).")
@click.option("--input-convention", type=click.Choice(["hub", "normalized"]), default="hub", show_default=True)
@click.option("--no-parity", is_flag=True, help="Skip the PyTorch parity check.")
@no_keras_option
@no_litert_option
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
def build_all_cmd(manifest_path, out, only, kinds, jobs, shard, force, checkpoints, input_convention, no_parity,
                  no_keras, no_litert, publish_dest, public_url, notebooks_out, execute_notebooks, collect,
                  require_pinned, no_verify, **skip) -> None:
    """Build every artifact of the collection: incremental, resumable, parallel, shardable."""
    manifest, result = _build_all(manifest_path, out, only=only, kinds=kinds, jobs=jobs, shard=shard, force=force,
                                  checkpoints=checkpoints, input_convention=input_convention, no_parity=no_parity,
                                  publish_dest=publish_dest, public_url=public_url, no_keras=no_keras,
                                  no_litert=no_litert, notebooks=notebooks_out, execute_notebooks=execute_notebooks,
                                  collect=collect, require_pinned=require_pinned, skip_formats=_skipped(skip))
    if result.summary.failed:
        failed = result.summary.failed
        raise HubpubError(f"{len(failed)} variant(s) failed: {', '.join(failed)}")
    if result.published is not None and not no_verify:  # as `publish` does
        from hubpub.publish import verify_published

        v = verify_published(manifest, out, result.published.destination, result.published)
        click.echo(f"verified: {v.handle} loads with hub.KerasLayer and matches its build (max |Δ| {v.max_abs:.1e})")


# The demo publishes to a local folder; its docs link to where `python -m http.server` serves it.
DEMO_PUBLIC_URL = "http://localhost:8000"


@cli.command()
@click.option("--out", type=PATH, default="dist", show_default=True)
@click.option("--variant", default=None, type=TEXT, help="[default: the manifest's first variant]")
@manifest_option
def demo(out: Path, variant: str | None, manifest_path: Path) -> None:
    """Offline end-to-end run: random official-format checkpoint -> build-all -> docs -> publish -> verify
    -> usage notebooks, executed."""
    import time

    from hubpub.destinations import parse
    from hubpub.pipeline import demo_checkpoint
    from hubpub.publish import verify_published

    start = time.perf_counter()
    manifest = load_manifest(manifest_path)
    v = manifest.variant(variant) if variant else manifest.variants[0]
    ckpt, made = demo_checkpoint(v, out)
    click.echo(f"1. {'wrote' if made else 'reusing'} a random-weight checkpoint in the official layout: {ckpt}")
    click.echo(f"2-3. build-all {v.name} (both kinds), usage notebooks written and executed, docs rendered and "
               "validated")
    dist = Dist(out)
    # Random-weight notebooks go to dist/, never into the checkout the manifest's `notebooks` names.
    manifest, result = _build_all(manifest_path, out, only=(v.name,), kinds="classifier,feature-extractor",
                                  checkpoints=(f"{v.name}={ckpt}",), publish_dest=str(dist.published),
                                  public_url=DEMO_PUBLIC_URL, notebooks=dist.notebooks, execute_notebooks=True)
    if result.summary.failed:
        raise HubpubError(f"the demo build failed: {', '.join(result.summary.failed)}")
    click.echo(f"4. published to the local destination {dist.published}")
    checked = verify_published(manifest, out, parse(str(dist.published)), result.published,
                               fine_tune=True)
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
               f"`python -m http.server 8000 -d {dist.published}`")


def _kinds(text: str) -> tuple[str, ...]:
    from hubpub.manifest import KINDS

    kinds = tuple(k.strip() for k in text.split(",") if k.strip())
    bad = [k for k in kinds if k not in KINDS]
    if bad or not kinds:
        raise click.BadParameter(f"kinds must be among {', '.join(KINDS)}; got {text!r}", param_hint="--kinds")
    return kinds


def _table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main() -> None:
    cli(prog_name="hubpub")

