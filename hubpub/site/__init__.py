"""The collection website: the docs as static HTML pages a person can browse, published beside the
artifacts (`site/` below the destination).

Plain Jinja2 to HTML rather than a static-site generator: the pages are made from the same context
as the docs (one dict per artifact, the build records), need no build tool, and must render offline
from any static host. MkDocs Material would bring its own search scripts and web fonts to strip
out again. The templates (`hubpub/templates/site/`) render in Jinja2's sandbox with autoescape on;
the model docs' Markdown becomes HTML through markdown-it with raw HTML disabled. Every link inside
the site is relative; downloads point at the published files beside it. No external font, script,
stylesheet or image: the figure is inline SVG drawn here, the copy buttons a few lines of local JS.
"""

from __future__ import annotations

import html
import math
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
from jinja2.sandbox import SandboxedEnvironment

from hubpub._files import cleanup_created_dirs, sync_tree, write_atomic
from hubpub.destinations import of_base
from hubpub.docs import TASKS, Built, collection_context, load_built, model_context, searchpath, template_dirs
from hubpub.doctree import doc_body, model_doc_path
from hubpub.errors import DocsError
from hubpub.formats import FORMATS
from hubpub.layout import Dist
from hubpub.manifest import Manifest
from hubpub.resources import packaged_templates_dir

STATIC = ("site.css", "site.js")
KIND_TITLES = {"classifier": "Image classifier", "feature-extractor": "Feature extractor"}


@dataclass(frozen=True)
class Site:
    root: Path  # the copy to open from the build folder
    pages: tuple[Path, ...]
    upload: Path | None = None  # the copy `publish` uploads, linking to the destination's files

    @property
    def index(self) -> Path:
        return self.root / "index.html"


def html_environment(dirs: list[Path]) -> jinja2.Environment:
    """Sandboxed, StrictUndefined, HTML-escaping; templates looked up in `<dir>/site/`."""
    env = SandboxedEnvironment(loader=jinja2.FileSystemLoader([str(d / "site") for d in dirs]),
                               undefined=jinja2.StrictUndefined, autoescape=True, trim_blocks=True,
                               lstrip_blocks=True)
    env.filters["mib"] = lambda n: f"{n / 2**20:.1f} MiB"
    env.filters["sci"] = lambda x: "n/a" if x is None else f"{x:.1e}"
    env.filters["thousands"] = lambda n: f"{n:,}"
    return env


def markdown_html(text: str, shift: int = 1) -> str:
    """Markdown as HTML (raw HTML in the source escaped), its headings `shift` levels down to sit
    under the page's own."""
    from markdown_it import MarkdownIt

    out = MarkdownIt("commonmark", {"html": False}).enable("table").render(text)
    return re.sub(r"<(/?)h([1-6])>", lambda m: f"<{m.group(1)}h{min(6, int(m.group(2)) + shift)}>", out)


def page_name(artifact: str) -> str:
    return f"models/{artifact}.html"


@dataclass(frozen=True)
class Download:
    format: str
    published: str  # the file's address at the destination, relative to the site's root if beside it
    local: Path  # the same file in the build folder
    size: int
    sha256: str


def render_site(manifest: Manifest, *, dist: Path, out: Path | None = None, templates_dir: Path | None = None,
                public_url_base: str | None = None, built: Built | None = None) -> Site:
    """A collection page and one page per built artifact, from the rendered docs in `dist/docs`
    (render them first, for the same destination) and the build records.

    Two copies, which differ only in where their download links point: `out` (default DIST/site) is the
    one to open from the build folder, its downloads the build's own files; DIST/site-upload is the one
    `publish` uploads beside the artifacts, its downloads where they are published."""
    layout = Dist(dist)
    out = Path(out) if out is not None else layout.site
    built = built or load_built(dist)
    reports, evals = built.records, built.evals
    pairs = [(a, reports[a.name]) for a in manifest.artifacts() if a.name in reports]
    if not pairs:
        raise DocsError(f"{layout.reports}: no build report; run `hubpub build-all` first")
    env = html_environment(template_dirs(manifest.path, templates_dir))
    base = public_url_base or manifest.publish.public_url_base
    beside = of_base(base) is None  # a URL base: the site sits beside the artifacts; a hub has its own addresses
    coll = collection_context(manifest, pairs, evals, public_url_base=base)
    rows, models = [], []
    docs_root = layout.docs / "assets" / "docs"
    for artifact, record in pairs:
        ctx = model_context(manifest, artifact, record, evals.get(artifact.name), public_url_base=base)
        doc = docs_root / model_doc_path(manifest.publisher.handle, artifact)
        if not doc.is_file():
            raise DocsError(f"{doc}: no rendered doc for {artifact.name}; run `hubpub docs` first")
        a = ctx["artifact"]
        downloads = [Download("TF2 SavedModel (tar.gz), for hub.KerasLayer",
                              f"../../{artifact.asset_object}" if beside else a["asset_url"],
                              layout.tarball(artifact.name), record.tarball.size, record.tarball.sha256)]
        for fmt in FORMATS:
            downloads += [Download(what, published, layout.root / path, size, sha256)
                          for what, published, path, size, sha256 in fmt.downloads(artifact, record, a, beside)]
        hubs = [{"name": name, "url": url} for name, url in _hub_links(manifest, artifact)]
        row: dict[str, Any] = {"name": artifact.name, "kind": artifact.kind, "kind_title": KIND_TITLES[artifact.kind],
               "dataset": artifact.variant.dataset.title, "trained": " → ".join(d.title for d in
                                                                                artifact.variant.datasets),
               "resolution": artifact.variant.resolution, "parameters": record.parameters,
               "top1": artifact.variant.top1, "ours_top1": (evals.get(artifact.name) or {}).get("top1"),
               "parity": record.parity.max_abs, "page": page_name(artifact.name),
               "gmacs": (lambda m: m / 1e9 if m else None)(artifact.variant.architecture.macs(
                   artifact.variant.resolution, artifact.variant.num_classes if artifact.kind == "classifier"
                   else 0)),
               "random_weights": record.random_weights}
        rows.append(row)
        models.append((artifact, {**ctx, "row": row, "hubs": hubs, "doc_html": markdown_html(doc_body(doc)),
                                  "root": "../"}, downloads))
    datasets = sorted({r["dataset"] for r in rows})
    index = env.get_template("index.html.j2").render(
        **coll, rows=rows, kinds=KIND_TITLES, dataset_names=datasets, root="",
        figures=[f for f in (top1_figure(rows, "parameters", "parameters", lambda x: f"{x / 1e6:g}M"),
                             top1_figure(rows, "gmacs", "GMACs (multiply-accumulates)", lambda x: f"{x:g}"))
                 if f],
        tasks_list=sorted({TASKS[a.kind] for a, _ in pairs}))

    def pages(local: bool) -> dict[str, str]:
        out_pages = {"index.html": index}
        for artifact, ctx, downloads in models:
            page_dir = (out / page_name(artifact.name)).parent
            links = [{"format": d.format, "size": d.size, "sha256": d.sha256, "href": _href(d, page_dir, local, base)}
                     for d in downloads]
            out_pages[page_name(artifact.name)] = env.get_template("model.html.j2").render(**ctx, downloads=links)
        return out_pages

    local = pages(local=True)
    _write_tree(env, out, local)
    _write_tree(env, layout.site_upload, pages(local=False))
    return Site(out, tuple(sorted(out / p for p in local)), layout.site_upload)


def _href(d: Download, page_dir: Path, local: bool, base: str) -> str:
    """A download link: the build's own file (the copy to open from dist/, when the file is here; a
    collect step gathers records only), else where it is published (relative when beside the site)."""
    if local and d.local.is_file():
        return Path(os.path.relpath(d.local.resolve(), page_dir.resolve())).as_posix()
    if local and d.published.startswith("../../"):
        return f"{base}/{d.published.removeprefix('../../')}"
    return d.published


def _write_tree(env: jinja2.Environment, out: Path, pages: dict[str, str]) -> None:
    """The pages and static files into `out`, replacing it whole; nothing of it on an error."""
    with cleanup_created_dirs(out):
        staging = out.with_name(out.name + ".tmp")
        shutil.rmtree(staging, ignore_errors=True)
        try:
            for name, text in pages.items():
                write_atomic(staging / name, text)
            (staging / "assets").mkdir(exist_ok=True)
            for name in STATIC:
                shutil.copyfile(_static(env, name), staging / "assets" / name)
            sync_tree(staging, out)  # an unchanged page keeps its file and mtime
        finally:
            shutil.rmtree(staging, ignore_errors=True)


def _static(env: jinja2.Environment, name: str) -> Path:
    for folder in searchpath(env):
        if (Path(folder) / name).is_file():
            return Path(folder) / name
    return packaged_templates_dir() / "site" / name


def _hub_links(manifest: Manifest, artifact) -> list[tuple[str, str | None]]:
    """The artifact's pages on the hubs the manifest lists (`publish.hubs`)."""
    from hubpub.destinations import parse

    hubs = [parse(h) for h in manifest.publish.hubs]
    return [(hub.title, hub.links(str(hub), manifest.publisher.handle, artifact, "").page_url) for hub in hubs]


def top1_figure(rows: list[dict], key: str, label: str, tick) -> str | None:
    """Top-1 against `key` (parameters, GMACs) for the classifiers with a published top-1 and a known
    `key`, as inline SVG with a log x axis, like the ConvNeXt paper's Figure 1."""
    points = [r for r in rows if r["kind"] == "classifier" and r["top1"] and r[key]]
    if not points:
        return None
    w, h, left, right, top, bottom = 640, 360, 60, 20, 20, 50
    xs = [math.log10(r[key]) for r in points]
    ys = [r["top1"] for r in points]
    pad = max(0.25, 0.05 * (max(xs) - min(xs)))  # at least half a decade: room for 1-2-5 ticks
    x0, x1 = min(xs) - pad, max(xs) + pad
    y0, y1 = math.floor(min(ys)) - 1, math.ceil(max(ys)) + 1

    def sx(v):
        return left + (v - x0) / (x1 - x0 or 1) * (w - left - right)

    def sy(v):
        return h - bottom - (v - y0) / (y1 - y0 or 1) * (h - top - bottom)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}" role="img" class="figure" '
             f'aria-labelledby="fig-{key}"><title id="fig-{key}">ImageNet top-1 accuracy (published) against '
             f'{label}, for the {len(points)} image classifiers</title>',
             f'<line x1="{left}" y1="{h - bottom}" x2="{w - right}" y2="{h - bottom}" class="axis"/>',
             f'<line x1="{left}" y1="{top}" x2="{left}" y2="{h - bottom}" class="axis"/>']
    for y in range(int(y0), int(y1) + 1):
        if (y - int(y0)) % max(1, (int(y1) - int(y0)) // 5) == 0:
            parts.append(f'<text x="{left - 8}" y="{sy(y) + 4:.1f}" class="tick" text-anchor="end">{y}</text>')
    for exp in range(math.floor(x0), math.ceil(x1) + 1):
        for m in (1, 2, 5):
            v = math.log10(m) + exp
            if x0 <= v <= x1:
                parts.append(f'<text x="{sx(v):.1f}" y="{h - bottom + 18}" class="tick" text-anchor="middle">'
                             f'{tick(m * 10 ** exp)}</text>')
    parts.append(f'<text x="{(left + w - right) / 2}" y="{h - 8}" class="label" text-anchor="middle">'
                 f'{label} (log scale)</text>')
    parts.append(f'<text x="14" y="{(top + h - bottom) / 2}" class="label" text-anchor="middle" '
                 f'transform="rotate(-90 14 {(top + h - bottom) / 2})">top-1 %</text>')
    for r, x, y in zip(points, xs, ys, strict=True):
        name = html.escape(r["name"])
        parts.append(f'<a href="{html.escape(r["page"])}"><circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="5" '
                     f'class="point"><title>{name}: {y}% top-1, {r["parameters"] / 1e6:.1f}M parameters'
                     + (f', {r["gmacs"]:.2f} GMACs' if r["gmacs"] else "") + '</title></circle></a>')
        parts.append(f'<text x="{sx(x) + 7:.1f}" y="{sy(y) - 6:.1f}" class="point-label">{name}</text>')
    parts.append("</svg>")
    return "\n".join(parts)
