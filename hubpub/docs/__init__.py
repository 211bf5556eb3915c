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
from dataclasses import dataclass
from pathlib import Path

import jinja2
from jinja2.exceptions import SecurityError
from jinja2.sandbox import SandboxedEnvironment

from hubpub import __version__
from hubpub._files import cleanup_created_dirs, write_atomic
from hubpub.docs.validate import validate_docs
from hubpub.errors import DocsError
from hubpub.manifest import Artifact, Hierarchical, Manifest
from hubpub.resources import packaged_templates_dir

DATASET_IDS = {"imagenet-1k": "imagenet-ilsvrc-2012-cls", "imagenet-21k": "imagenet-21k"}
DATASET_NAMES = {"imagenet-1k": "ImageNet-1k", "imagenet-21k": "ImageNet-21k"}
TASKS = {"classifier": "image-classification", "feature-extractor": "image-feature-vector"}
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]<>#|!])")


# Where a published doc lives below the destination: `publish` uploads the rendered tree under `docs/`.
PUBLISHED_DOCS = "docs/assets/docs"


def template_dirs(manifest_path: Path | None = None, templates_dir: Path | None = None) -> list[Path]:
    """Where templates are looked up, first match wins: `--templates-dir` (or `$HUBPUB_TEMPLATES`),
    a `templates/` folder beside the manifest, then the templates hubpub ships. A user's folder
    only needs the templates it changes."""
    dirs = []
    user = templates_dir or os.environ.get("HUBPUB_TEMPLATES")
    if user:
        if not Path(user).is_dir():
            raise DocsError(f"{user}: templates folder not found")
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
    env.filters["mib"] = lambda n: f"{n / 2**20:.1f} MiB"
    env.filters["sci"] = lambda x: "n/a" if x is None else f"{x:.1e}"
    env.filters["thousands"] = lambda n: f"{n:,}"
    return env


def render(env: jinja2.Environment, template: str, context: dict) -> str:
    """Render one template; errors name the template, the line and the variable."""
    try:
        text = env.get_template(template).render(**context)
    except jinja2.TemplateNotFound as e:
        searched = ", ".join(env.loader.searchpath)
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


def display_name(architecture: str) -> str:
    """`tiny` -> ConvNeXt-T, `iso_base` -> isotropic ConvNeXt-B, as the paper names them."""
    short = {"tiny": "T", "small": "S", "base": "B", "large": "L", "xlarge": "XL"}
    iso = architecture.startswith("iso_")
    core = architecture.removeprefix("iso_")
    return ("isotropic " if iso else "") + f"ConvNeXt-{short.get(core, core)}"


def _architecture_summary(arch) -> dict:
    if isinstance(arch, Hierarchical):
        return {"family": "hierarchical", "depths": list(arch.depths), "dims": list(arch.dims)}
    return {"family": "isotropic", "depth": arch.depth, "dim": arch.dim, "patch_size": arch.patch_size}


def model_doc_path(publisher: str, artifact: Artifact) -> str:
    """A model doc's path below `assets/docs/`."""
    return f"{publisher}/models/{artifact.name}/{artifact.version}.md"


def _links(manifest: Manifest, artifact: Artifact, public_url_base: str) -> dict:
    """Where a reader finds the artifact: its tarball and doc at the destination, and its TF-Hub handle."""
    pub = manifest.publisher.handle
    return {"asset_url": f"{public_url_base}/{artifact.asset_object}",
            "doc_url": f"{public_url_base}/{PUBLISHED_DOCS}/{model_doc_path(pub, artifact)}",
            "tfhub_url": f"https://tfhub.dev/{pub}/{artifact.name}/{artifact.version}"}


def model_context(manifest: Manifest, artifact: Artifact, report: dict, eval_report: dict | None = None, *,
                  public_url_base: str | None = None) -> dict:
    v = artifact.variant
    base = public_url_base or manifest.publish.public_url_base
    dataset_kind = "21k-1k" if v.finetune and v.pretrain != v.finetune else (
        "21k" if v.dataset == "imagenet-21k" else "1k")
    return {
        "hubpub_version": __version__,
        "publisher": manifest.publisher.model_dump(),
        "collection": manifest.collection.model_dump(),
        "docs": manifest.docs.model_dump(),
        "colab": manifest.docs.colab.get(artifact.kind),
        "artifact": {"name": artifact.name, "kind": artifact.kind, "version": artifact.version,
                     "task": TASKS[artifact.kind], **_links(manifest, artifact, base),
                     "output_name": report["output"]["name"], "output_dim": report["output"]["dim"]},
        "variant": {"name": v.name, "architecture": v.architecture_name, "display": display_name(v.architecture_name),
                    "arch": _architecture_summary(v.architecture), "resolution": v.resolution,
                    "num_classes": v.num_classes, "pretrain": DATASET_NAMES[v.pretrain],
                    "finetune": DATASET_NAMES[v.finetune] if v.finetune else None,
                    "dataset_kind": dataset_kind, "top1": v.top1, "description": v.description,
                    "eval": v.eval.model_dump(), "checkpoint_url": v.checkpoint_url,
                    "resize_to": int(v.resolution / v.eval.crop_pct)},
        "datasets": [DATASET_IDS[d] for d in v.datasets],
        "report": report,
        "eval_report": eval_report,
    }


def collection_context(manifest: Manifest, built: list[tuple[Artifact, dict]],
                       eval_reports: dict[str, dict], *, public_url_base: str | None = None) -> dict:
    base = public_url_base or manifest.publish.public_url_base
    rows = []
    for artifact, report in built:
        v = artifact.variant
        rows.append({"name": artifact.name, "kind": artifact.kind, "variant": v.name,
                     **_links(manifest, artifact, base),
                     "resolution": v.resolution, "top1": v.top1, "parameters": report["parameters"],
                     "datasets": " → ".join(DATASET_NAMES[d] for d in v.datasets),
                     "ours_top1": (eval_reports.get(artifact.name) or {}).get("top1"),
                     "random_weights": report.get("random_weights", False)})
    datasets = sorted({DATASET_IDS[d] for a, _ in built for d in a.variant.datasets})
    return {"hubpub_version": __version__, "publisher": manifest.publisher.model_dump(),
            "collection": manifest.collection.model_dump(), "docs": manifest.docs.model_dump(),
            "public_url_base": base,
            "classifiers": [r for r in rows if r["kind"] == "classifier"],
            "feature_extractors": [r for r in rows if r["kind"] == "feature-extractor"],
            "tasks": sorted({TASKS[a.kind] for a, _ in built}), "datasets": datasets,
            "random_weights": any(r["random_weights"] for r in rows)}


@dataclass(frozen=True)
class RenderResult:
    root: Path
    paths: tuple[Path, ...]
    skipped: tuple[str, ...]  # artifacts without a build report


def load_reports(dist: Path, suffix: str = ".json") -> dict[str, dict]:
    reports = {}
    folder = dist / "reports"
    for path in sorted(folder.glob(f"*{suffix}")) if folder.is_dir() else []:
        name = path.name.removesuffix(suffix)
        if suffix == ".json" and "." in name:  # *.eval.json, *.parity.json
            continue
        try:
            reports[name] = json.loads(path.read_text())
        except ValueError as e:
            raise DocsError(f"{path}: unreadable report: {e}") from None
    return reports


def render_docs(manifest: Manifest, *, dist: Path, out: Path, templates_dir: Path | None = None,
                model_template: str = "model.md.j2", public_url_base: str | None = None) -> RenderResult:
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
        env.loader = jinja2.FileSystemLoader([str(own.parent), *env.loader.searchpath])
        model_template = own.name
    elif model_template not in env.list_templates():
        raise DocsError(f"model template {model_template!r} not found: neither a file nor a template in "
                        f"{', '.join(env.loader.searchpath)}")
    reports = load_reports(dist)
    evals = load_reports(dist, ".eval.json")
    built = [(a, reports[a.name]) for a in manifest.artifacts() if a.name in reports]
    skipped = [a.name for a in manifest.artifacts() if a.name not in reports]
    if not built:
        raise DocsError(f"{dist}/reports: no build report for any artifact of {manifest.path}; "
                        "run `hubpub build` first")

    pub = manifest.publisher.handle
    files: dict[str, str] = {f"{pub}/{pub}.md": render(env, "publisher.md.j2", {
        "publisher": manifest.publisher.model_dump(), "collection": manifest.collection.model_dump()})}
    for artifact, report in built:
        try:
            ctx = model_context(manifest, artifact, report, evals.get(artifact.name), public_url_base=public_url_base)
        except (KeyError, TypeError) as e:
            raise DocsError(f"{dist}/reports/{artifact.name}.json: the build report lacks {e}; "
                            f"rebuild {artifact.variant.name}") from None
        files[model_doc_path(pub, artifact)] = render(env, model_template, ctx)
    files[f"{pub}/collections/{manifest.collection.name}/{manifest.collection.version}.md"] = render(
        env, "collection.md.j2", collection_context(manifest, built, evals, public_url_base=public_url_base))

    final = out / "assets" / "docs"
    with cleanup_created_dirs(out):
        staging = out / ".docs.tmp"
        shutil.rmtree(staging, ignore_errors=True)
        try:
            for rel, text in files.items():
                write_atomic(staging / rel, text)
            validate_docs(staging, shown_as=final)
            target = final / pub
            final.mkdir(parents=True, exist_ok=True)
            if target.exists():
                shutil.rmtree(target)
            (staging / pub).rename(target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return RenderResult(final, tuple(sorted(final / rel for rel in files)), tuple(skipped))
