"""Commands that document, publish and check: docs, notebooks, site, validate-docs, publish, verify, eval."""

from __future__ import annotations

import logging
from pathlib import Path

import click

from hubpub._tf import import_tensorflow
from hubpub.cli.group import cli
from hubpub.cli.options import (
    PATH,
    SECONDS,
    TEXT,
    byte_size,
    manifest_option,
    notebooks_note,
    notebooks_option,
    public_url_option,
    table,
    verified_note,
)
from hubpub.errors import HubpubError
from hubpub.layout import Dist
from hubpub.manifest import load_manifest

log = logging.getLogger("hubpub")


@cli.command()
@click.argument("handle")
@click.option("--report", "report_path", type=PATH, default=None,
              help="The artifact's build report [default: dist/reports/<artifact>.json].")
@click.option("--fine-tune", is_flag=True, help="Also run one SGD step with trainable=True.")
@click.option("--max-unpacked", default="16G", show_default=True, metavar="SIZE",
              help="Refuse an archive that unpacks to more than this (e.g. 500M, 32G).")
@click.option("--public-key", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              metavar="PUB.pem", help="First check the signature beside HANDLE (HANDLE.sig) with this key.")
@click.option("--identity", default=None, type=TEXT, help="First check a Sigstore signature: the signer's identity.")
@click.option("--issuer", default=None, type=TEXT, help="With --identity: its OIDC issuer.")
def verify(handle: str, report_path: Path | None, fine_tune: bool, max_unpacked: str, public_key: Path | None,
           identity: str | None, issuer: str | None) -> None:
    """Load HANDLE with hub.KerasLayer (a URL, .tar.gz or directory), keras.saving.load_model (a .keras
    file or URL) or onnxruntime (a .onnx file or URL) and compare with the build's record; with a key (or
    a Sigstore identity), check its signature before anything is loaded."""
    from hubpub.destinations import is_bucket_url
    from hubpub.formats import FILE_FORMATS
    from hubpub.verify import check_signature, read_reference, verify_format, verify_handle, verify_keras

    limit = byte_size(max_unpacked)
    if bool(identity) != bool(issuer):
        raise click.UsageError("--identity and --issuer go together")
    if public_key or identity:  # before anything is loaded
        check_signature(handle, public_key=public_key, identity=identity, issuer=issuer, max_bytes=limit)
        click.echo(f"{handle}: signature checked ({f'key {public_key}' if public_key else identity})")
    path = handle.split("?")[0].rstrip("/")
    fmt = next((f for f in FILE_FORMATS if path.endswith(f.suffix)), None)
    if report_path is None:
        parts = path.split("/")
        # .../<artifact>/<version>.tar.gz (published), .../<artifact>.tar.gz (dist/tars) or a directory
        last = parts[-1].removesuffix(".tar.gz").removesuffix(".keras").removesuffix(fmt.suffix if fmt else "")
        name = parts[-2] if len(parts) > 1 and last.isdigit() else last
        report_path = Dist(Path("dist")).report(name)
    if fmt is not None and fine_tune:
        raise click.UsageError(f"--fine-tune trains a SavedModel or a .keras file, not {fmt.title}. "
                               f"Received: {handle}")
    import_tensorflow()
    if fmt is not None:
        result = verify_format(handle, read_reference(report_path), fmt, max_bytes=limit)
        loader = fmt.runner
    elif path.endswith(".keras"):
        result = verify_keras(handle, read_reference(report_path), fine_tune=fine_tune, max_bytes=limit)
        loader = "keras.saving.load_model"
    else:
        result = verify_handle(handle, read_reference(report_path), fine_tune=fine_tune, max_unpacked=limit,
                               read_by_tensorflow=is_bucket_url(handle))
        loader = "hub.KerasLayer"
    click.echo(f"{handle}: loads with {loader}; outputs match the build (max |Δ| {result.max_abs:.2e})")
    if not (public_key or identity):
        click.echo(f"{handle}: signature not checked (give --public-key, or --identity and --issuer)")
    if result.fine_tune:
        ft = result.fine_tune
        click.echo(f"fine-tune: loss {ft['loss']:.4f}, {ft['backbone_weights_changed']}/{ft['backbone_weights']} "
                   "backbone weights changed")


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
@click.option("--sign-key", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              metavar="PRIVATE_KEY.pem", help="Sign every artifact file with this EC key: a .sig beside each.")
@click.option("--sign-cert", type=click.Path(exists=True, dir_okay=False, path_type=Path), multiple=True,
              metavar="CERT.pem", help="With --sign-key: the key's certificate, then its chain (repeatable).")
@click.option("--sign", "sign_with", type=click.Choice(["sigstore"]), default=None,
              help="Sign keyless with Sigstore (an OIDC identity, e.g. in CI).")
@notebooks_option
@manifest_option
def publish(dist: Path, dest: str | None, public_url: str | None, dry_run: bool, force: bool, jobs: int,
            deadline: float, no_verify: bool, public: bool, sign_key: Path | None, sign_cert: tuple[Path, ...],
            sign_with: str | None, notebooks_out: Path | None, manifest_path: Path) -> None:
    """Publish the artifacts, docs and site to a bucket, a folder, Kaggle Models or the HF Hub; artifacts are
    immutable unless forced, docs and pages are updated."""
    from hubpub.destinations import parse
    from hubpub.publish import publish as run_publish
    from hubpub.signing import Signer

    if sign_key and sign_with:
        raise click.UsageError("--sign-key or --sign sigstore, not both")
    signer = Signer(key=sign_key, certificates=sign_cert, sigstore=True) if sign_with else None
    if sign_key or sign_cert:
        signer = Signer(key=sign_key, certificates=sign_cert)
    manifest = load_manifest(manifest_path)
    destination = parse(dest or manifest.publish.destination)
    result = run_publish(manifest, dist, destination, public_url=public_url, force=force, dry_run=dry_run, jobs=jobs,
                         deadline=deadline, notebooks=notebooks_out, public=public, verify=not no_verify,
                         signer=signer)
    for line in result.plan:
        click.echo(line)
    rows = [("object", "size", "status", "public URL")]
    for o in result.outcomes:
        rows.append((destination.key(o.upload.relative), f"{o.upload.size:,}", o.status, o.upload.public_url))
    click.echo(table(rows))
    click.echo(f"{destination}: {result.summary()}" + (f" ({result.visibility})" if result.visibility else ""))
    if result.site_url:
        click.echo(f"site: {result.site_url}")
    notebooks_note(result)
    verified_note(result)


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


@cli.command()
@click.argument("dest")
@public_url_option
@click.option("--public-key", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              metavar="PUB.pem", help="Check every artifact file's .sig with this key.")
@click.option("--identity", default=None, type=TEXT, help="Check Sigstore signatures: the signer's identity.")
@click.option("--issuer", default=None, type=TEXT, help="With --identity: its OIDC issuer.")
@click.option("--load", is_flag=True, help="Also load one artifact of each kind and format, as its users do.")
@click.option("--checkout", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="The repository checkout the docs' Colab links open notebooks from [default: where the publish "
                   "recorded its notebooks (a local directory's), else .].")
@click.option("--notebooks", "notebooks_dir", type=click.Path(exists=True, file_okay=False, path_type=Path),
              default=None, help="Instead: a build's notebooks folder, a subfolder per destination "
                                 "(DIST/notebooks).")
def audit(dest: str, public_url: str | None, public_key: Path | None, identity: str | None, issuer: str | None,
          load: bool, checkout: Path | None, notebooks_dir: Path | None) -> None:
    """Check a published collection as a whole (DEST: a directory, gs://, kaggle:// or hf://): every artifact
    file against its published sha256 and signature, every doc's asset-path and links, every Colab link's
    notebook, every link of the site."""
    from hubpub.audit import audit as run_audit
    from hubpub.destinations import parse
    from hubpub.progress import progress_bar

    if bool(identity) != bool(issuer):
        raise click.UsageError("--identity and --issuer go together")
    destination = parse(dest)
    with progress_bar(desc="audit", unit="file") as bar:
        def progress(relative: str) -> None:
            bar.set_postfix_str(relative, refresh=False)
            bar.update(1)

        result = run_audit(destination, public_url=public_url, public_key=public_key, identity=identity,
                           issuer=issuer, load=load, checkout=checkout, notebooks=notebooks_dir,
                           progress=progress)
    if result.problems:
        click.echo(table([("file", "problem"), *((p.file, p.what) for p in result.problems)]))
    signatures = (f"{result.signatures} signatures checked" if public_key or identity
                  else "signatures not checked (give --public-key, or --identity and --issuer)")
    click.echo(f"{destination}: {result.files} files, {result.artifacts} artifact files against their .sha256, "
               f"{signatures}, {result.links} links" + (f", {len(result.loaded)} loaded" if load else ""))
    if result.problems:
        raise HubpubError(f"{len(result.problems)} problem(s) at {destination}")
