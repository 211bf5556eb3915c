"""Render the model, collection and publisher docs from Jinja2 templates, then validate them.

Templates are data, shared and reviewed like docs: they render in Jinja2's sandbox (no attribute
access to Python internals), may include only templates from the templates folders, and run under
`StrictUndefined`, so a misspelt variable is an error naming it and the template line. Every value
printed must be a single line, so no manifest string can inject a metadata line or a heading; prose
goes through the `md` filter, which escapes Markdown.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import cast

import jinja2
from jinja2.exceptions import SecurityError
from jinja2.sandbox import SandboxedEnvironment

from hubpub import __version__
from hubpub._files import cleanup_created_dirs, sync_tree, write_atomic
from hubpub.destinations import artifact_links, notebooks_folder, where
from hubpub.docs.validate import validate_docs, vocabularies
from hubpub.doctree import PUBLISHED_DOCS, collection_doc_path, lite_doc_name, lite_doc_path, model_doc_path
from hubpub.errors import DocsError
from hubpub.families import Family
from hubpub.formats import by_name
from hubpub.layout import Dist
from hubpub.manifest import Artifact, Manifest
from hubpub.record import BuildRecord, RecordError, read_records
from hubpub.resources import packaged_templates_dir
from hubpub.signing import doc_values as signing_doc_values

TASKS = {"classifier": "image-classification", "feature-extractor": "image-feature-vector"}
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]<>#|!])")




def template_dirs(manifest_path: Path | None = None, templates_dir: Path | None = None) -> list[Path]:
    """Where templates are looked up, first match wins: `--templates-dir` (or `$HUBPUB_TEMPLATES`),
    a `templates/` folder beside the manifest, then the templates hubpub ships. A user's folder
    only needs the templates it changes."""
    dirs = []
    user = templates_dir or os.environ.get("HUBPUB_TEMPLATES")
    if user:
        if not Path(user).is_dir():
            source = "--templates-dir" if templates_dir else "the environment variable HUBPUB_TEMPLATES"
            raise DocsError(f"{user}: templates folder not found (given by {source})")
        dirs.append(Path(user))
    if manifest_path is not None and (beside := Path(manifest_path).parent / "templates").is_dir():
        dirs.append(beside)
    dirs.append(packaged_templates_dir())
    return dirs


def markdown_escape(value) -> str:
    return _MD_SPECIAL.sub(r"\\\1", str(value))


def _single_line(value):
    if isinstance(value, str) and ("\n" in value or "\r" in value):
        raise ValueError(f"refusing to print a multi-line value into a doc: {value[:40]!r}")
    return value


def environment(templates_dirs: Path | list[Path]) -> jinja2.Environment:
    """A sandboxed environment loading only from `templates_dirs` (first match wins)."""
    dirs = [templates_dirs] if isinstance(templates_dirs, str | Path) else templates_dirs
    env = SandboxedEnvironment(
        loader=jinja2.FileSystemLoader([str(d) for d in dirs]), undefined=jinja2.StrictUndefined,
        trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True, autoescape=False,
        finalize=_single_line)
    env.filters["md"] = markdown_escape
    # A value inside code (a snippet, a notebook cell) is written as a Python string literal, never pasted
    # between quotes: a manifest string can then never end the literal and run as code.
    env.filters["py"] = lambda value: json.dumps(str(value))
    env.filters["mib"] = lambda n: f"{n / 2**20:.1f} MiB"
    env.filters["sci"] = lambda x: "n/a" if x is None else f"{x:.1e}"
    env.filters["thousands"] = lambda n: f"{n:,}"
    return env


def searchpath(env: jinja2.Environment) -> list[str]:
    """The folders `env` loads templates from: hubpub's environments load from folders only."""
    return cast(jinja2.FileSystemLoader, env.loader).searchpath


def render(env: jinja2.Environment, template: str, context: dict) -> str:
    """Render one template; errors name the template, the line and the variable."""
    try:
        text = env.get_template(template).render(**context)
    except jinja2.TemplateNotFound as e:
        searched = ", ".join(searchpath(env))
        raise DocsError(f"{template}: template {e.name!r} not found in the templates folders ({searched}); "
                        "a template can include only templates inside them") from None
    except jinja2.TemplateSyntaxError as e:
        raise DocsError(f"{e.filename or template}:{e.lineno}: template syntax error: {e.message}") from None
    except SecurityError as e:
        raise DocsError(f"{template}:{_template_line(e, template)}: refused by the template sandbox: {e}") from None
    except (jinja2.UndefinedError, ValueError, TypeError, ArithmeticError, LookupError, AttributeError) as e:
        raise DocsError(f"{template}:{_template_line(e, template)}: {e}") from None
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip("\n") + "\n"


def _template_line(error: Exception, template: str):
    return next((f.lineno for f in reversed(traceback.extract_tb(error.__traceback__))
                 if f.filename.endswith(template)), "?")


def _links(manifest: Manifest, artifact: Artifact, public_url_base: str) -> dict:
    """Where a reader finds the artifact at the destination (`hubpub.destinations`), and its TF-Hub name."""
    pub = manifest.publisher.handle
    links = artifact_links(public_url_base, pub, artifact, f"{PUBLISHED_DOCS}/{model_doc_path(pub, artifact)}")
    return {**asdict(links), "litert_prefix": links.litert_prefix}


def _family(family: Family) -> dict:
    d = family.docs
    return {"name": family.name, "title": d.title, "paper": d.paper, "references": list(d.references),
            "code": d.code, "ported": family.converter is not None}


def model_context(manifest: Manifest, artifact: Artifact, record: BuildRecord, eval_report: dict | None = None, *,
                  public_url_base: str | None = None) -> dict:
    v = artifact.variant
    arch, family = v.architecture, v.family
    base = public_url_base or manifest.publish.public_url_base
    links = _links(manifest, artifact, base)
    if v.finetune and v.finetune != v.pretrain:
        trained = f"pre-trained on {v.pretrain.title} and fine-tuned on {v.finetune.title}"
    else:
        trained = f"trained on {v.dataset.title}"
    return {
        "hubpub_version": __version__,
        "publisher": manifest.publisher.model_dump(),
        "collection": manifest.collection.model_dump(),
        "docs": manifest.docs.model_dump(),
        "family": _family(family) | ({"paper": arch.paper} if arch.paper else {}),
        "network_architecture": manifest.docs.network_architecture or family.docs.network_architecture,
        # the license is stated in the text always; as metadata only with an id the validator knows
        "license": {"id": v.license, "tag": v.license if v.license in vocabularies()["license"] else None},
        "colab": manifest.colab_url(artifact, notebooks_folder(base)),
        "signing": signing_doc_values(manifest.signing),  # None unless the manifest's `signing:` signs
        "artifact": {"name": artifact.name, "kind": artifact.kind, "version": artifact.version,
                     "task": TASKS[artifact.kind], **links,
                     "output_name": record.output.name, "output_dim": record.output.dim,
                     "features": family.docs.features or f"the output of its layer `{arch.feature_layer}`"},
        "variant": {"name": v.name, "architecture": v.architecture_name, "display": arch.display_name(
                        v.architecture_name), "summary": arch.doc_summary(v.architecture_name),
                    "resolution": v.resolution, "num_classes": v.num_classes, "trained": trained,
                    "dataset": v.dataset.title, "classes_note": v.dataset.classes_note, "top1": v.top1,
                    "description": v.description, "eval": v.eval.model_dump(), "checkpoint_url": v.checkpoint_url,
                    "checkpoint_name": v.checkpoint_url.replace("\\", "/").rsplit("/", 1)[-1],
                    "resize_to": int(v.resolution / v.eval.crop_pct), "mean": list(family.normalization(arch)[0]),
                    "feature_layer": arch.feature_layer,
                    "std": list(family.normalization(arch)[1])},
        "datasets": [d.tfhub_id for d in v.datasets if d.tfhub_id],
        "report": record,
        "eval_report": eval_report,
        "litert": [{**asdict(f), "url": f"{links['litert_prefix']}{f.format}.tflite",
                    "doc": lite_doc_name(artifact, f.format)} for f in record.litert],
        # the formats of `hubpub.formats`, each rendered by its own `formats/<name>.md.j2`
        "formats": [{**asdict(f), **by_name(f.format).doc_values(), "title": by_name(f.format).title,
                     "url": links["formats"].get(f.format), "handle": links["format_handles"].get(f.format),
                     "source": links["keras_source"]} for f in record.formats],
    }


def collection_context(manifest: Manifest, built: list[tuple[Artifact, BuildRecord]],
                       eval_reports: dict[str, dict], *, public_url_base: str | None = None) -> dict:
    base = public_url_base or manifest.publish.public_url_base
    rows = []
    for artifact, record in built:
        v = artifact.variant
        rows.append({"name": artifact.name, "kind": artifact.kind, "variant": v.name,
                     **_links(manifest, artifact, base),
                     "resolution": v.resolution, "top1": v.top1, "parameters": record.parameters,
                     "datasets": " → ".join(d.title for d in v.datasets),
                     "ours_top1": (eval_reports.get(artifact.name) or {}).get("top1"),
                     "random_weights": record.random_weights})
    families = {a.variant.family.name: _family(a.variant.family) for a, _ in built}
    archs = {manifest.docs.network_architecture or a.variant.family.docs.network_architecture for a, _ in built}
    return {"hubpub_version": __version__, "publisher": manifest.publisher.model_dump(),
            "collection": manifest.collection.model_dump(), "docs": manifest.docs.model_dump(),
            "public_url_base": base, "where": where(base), "families": list(families.values()),
            "network_architectures": sorted(a for a in archs if a),
            "classifiers": [r for r in rows if r["kind"] == "classifier"],
            "feature_extractors": [r for r in rows if r["kind"] == "feature-extractor"],
            "tasks": sorted({TASKS[a.kind] for a, _ in built}),
            "datasets": sorted({d.tfhub_id for a, _ in built for d in a.variant.datasets if d.tfhub_id}),
            "random_weights": any(r["random_weights"] for r in rows)}


@dataclass(frozen=True)
class RenderResult:
    root: Path
    paths: tuple[Path, ...]
    skipped: tuple[str, ...]  # artifacts without a build report


@dataclass(frozen=True)
class Built:
    """What a dist folder holds for the docs, notebooks, site and publish: every artifact's build record
    and `hubpub eval`'s reports. Read once per command (`load_built`) and handed to each stage."""

    records: dict[str, BuildRecord]
    evals: dict[str, dict]


def load_built(dist: Path) -> Built:
    """The build records of every artifact built into `dist`, and their eval reports; a record of an older
    hubpub is an error that says to rebuild, never a doc rendered from misread numbers."""
    folder = Dist(dist).reports
    try:
        records = read_records(folder)
    except RecordError as e:
        raise DocsError(str(e)) from None
    evals = {}
    for path in sorted(folder.glob("*.eval.json")) if folder.is_dir() else []:
        try:
            evals[path.name.removesuffix(".eval.json")] = json.loads(path.read_text())
        except ValueError as e:
            raise DocsError(f"{path}: unreadable eval report: {e}") from None
    return Built(records, evals)


def render_docs(manifest: Manifest, *, dist: Path, out: Path, templates_dir: Path | None = None,
                model_template: str = "model.md.j2", public_url_base: str | None = None,
                built: Built | None = None) -> RenderResult:
    """Render docs for every artifact with a build report in `dist`, validate, then move into `out`.

    Links point below `public_url_base` (default: the manifest's): where the artifacts are published.
    Nothing is written under `out` unless every doc renders and the whole tree validates, and a
    failure leaves no folder it created.
    """
    if out.exists() and not out.is_dir():
        raise DocsError(f"{out}: --out is a file, not a folder")
    env = environment(template_dirs(manifest.path, templates_dir))
    own = Path(model_template)
    if own.suffix and own.is_file():  # a user's own template, given by path; its folder is searched first
        env.loader = jinja2.FileSystemLoader([str(own.parent), *searchpath(env)])
        model_template = own.name
    elif model_template not in env.list_templates():
        raise DocsError(f"model template {model_template!r} not found: neither a file nor a template in "
                        f"{', '.join(searchpath(env))}")
    built = built or load_built(dist)
    reports, evals = built.records, built.evals
    pairs = [(a, reports[a.name]) for a in manifest.artifacts() if a.name in reports]
    skipped = [a.name for a in manifest.artifacts() if a.name not in reports]
    if not pairs:
        raise DocsError(f"{Dist(dist).reports}: no build report for any artifact of {manifest.path}; "
                        "run `hubpub build` first")

    pub = manifest.publisher.handle
    files: dict[str, str] = {f"{pub}/{pub}.md": render(env, "publisher.md.j2", {
        "publisher": manifest.publisher.model_dump(), "collection": manifest.collection.model_dump()})}
    for artifact, report in pairs:
        ctx = model_context(manifest, artifact, report, evals.get(artifact.name), public_url_base=public_url_base)
        files[model_doc_path(pub, artifact)] = render(env, model_template, ctx)
        for lite in ctx["litert"]:
            files[lite_doc_path(pub, artifact, lite["format"])] = render(env, "lite.md.j2", {**ctx, "lite": lite})
    files[collection_doc_path(pub, manifest.collection.name)] = render(
        env, "collection.md.j2", collection_context(manifest, pairs, evals, public_url_base=public_url_base))

    final = out / "assets" / "docs"
    with cleanup_created_dirs(out):
        staging = out / ".docs.tmp"
        shutil.rmtree(staging, ignore_errors=True)
        try:
            for rel, text in files.items():
                write_atomic(staging / rel, text)
            validate_docs(staging, shown_as=final)
            sync_tree(staging / pub, final / pub)  # an unchanged doc keeps its file and mtime
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return RenderResult(final, tuple(sorted(final / rel for rel in files)), tuple(skipped))
