"""Usage notebooks: rendered per artifact from templates (Jinja2, sandboxed, like the docs), written with
nbformat, and executed on a real Jupyter kernel against the built artifact.

A template is a Python file in percent format: `# %%` starts a code cell, `# %% [markdown]` a Markdown
cell (its lines lose their leading `# `), `# %% tags=["parameters"]` the cell that names the handle.
Execution runs a copy whose parameter cell points at the local artifact served over loopback HTTP;
the stored notebook keeps the published handle and gets the outputs.

Where they go: `DIST/notebooks/<destination>/<artifact>.ipynb`, a folder per destination
(`hubpub.destinations.notebooks_folder`), like everything else a build writes. With the manifest's
`notebooks: {github, branch, path}`, each doc's Colab link opens `path/<destination>/<artifact>.ipynb`
in that repository; `publish` checks every link against the notebooks it is about to publish and
copies them into that folder of the checkout (commit and push them to publish). A trial build into
another folder never touches the checkout.
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hubpub._files import write_atomic, write_if_changed
from hubpub.errors import HubpubError

TEMPLATES = {"classifier": "classify.py.j2", "feature-extractor": "fine_tune.py.j2"}
_CELL = re.compile(r"^# %%(?: \[(?P<kind>markdown)\])?(?: tags=\[(?P<tags>[^\]]*)\])?\s*$")


class NotebookError(HubpubError):
    """A notebook template does not render, or a cell fails when the notebook runs."""


@dataclass(frozen=True)
class ColabCheck:
    """What `check_colab_links` found: links it followed to a notebook, links it cannot check (not in
    the manifest's repository), and linked notebooks that were never executed."""

    checked: tuple[str, ...]
    unchecked: tuple[str, ...]
    unexecuted: tuple[Path, ...]
    found: tuple[tuple[Path, str], ...] = ()  # each linked notebook and its place below `notebooks.path`

    def warnings(self) -> list[str]:
        out = []
        if self.unchecked:
            out.append(f"{len(self.unchecked)} Colab link(s) point outside the manifest's `notebooks` repository "
                       f"(e.g. {self.unchecked[0]}); hubpub cannot check them")
        if self.unexecuted:
            out.append(f"{len(self.unexecuted)} linked notebook(s) have no outputs yet (e.g. {self.unexecuted[0]}); "
                       "run `hubpub notebooks --execute`")
        return out


def checkout_root(manifest_path: Path) -> Path:
    """The git checkout holding the manifest (the nearest folder upwards with `.git`), else its folder."""
    start = Path(manifest_path).resolve().parent
    return next((d for d in (start, *start.parents) if (d / ".git").exists()), start)


def notebooks_dir(dist: Path) -> Path:
    """Where a build writes its notebooks: a folder per destination below `DIST/notebooks`."""
    from hubpub.layout import Dist

    return Dist(dist).notebooks


def checkout_notebooks(manifest) -> Path | None:
    """The folder of the manifest's checkout that the Colab links open (`notebooks.path`), if it names one."""
    return checkout_root(manifest.path) / manifest.notebooks.path if manifest.notebooks else None


def check_colab_links(docs, manifest, folders: list[Path], *, fix: str = "hubpub notebooks --execute") -> ColabCheck:
    """Follow every model doc's Colab link into the manifest's repository: the notebook must exist in the
    first of `folders` that has it (each laid out like `notebooks.path`: `<destination>/<artifact>.ipynb`)
    and name the doc's artifact (its asset-path). A dead link is a `DocsError` naming the doc, the URL
    and `fix`, the command that writes the notebooks."""
    from hubpub.errors import DocsError

    settings = manifest.notebooks
    repo = (f"https://colab.research.google.com/github/{settings.github}/blob/{settings.branch}/"
            if settings else None)
    checked, unchecked, unexecuted, dead, found = [], [], [], [], []
    for doc in docs:
        for url in doc.metadata.get("colab", []):
            if repo is None or not url.startswith(repo + settings.path + "/"):
                unchecked.append(url)
                continue
            inside = url.removeprefix(repo + settings.path + "/")
            candidates = [Path(f) / inside for f in folders]
            path = next((c for c in candidates if c.is_file()), candidates[0] if candidates else Path(inside))
            problem = _notebook_problem(path, doc.metadata.get("asset-path", []))
            if problem:
                dead.append(f"{doc.path}: Colab link {url} is dead: {problem}; write the notebooks with `{fix}`")
                continue
            checked.append(url)
            found.append((path, inside))
            if not _has_outputs(path):
                unexecuted.append(path)
    if dead:
        raise DocsError(dead[0], dead)
    return ColabCheck(tuple(checked), tuple(unchecked), tuple(unexecuted), tuple(found))


def publish_notebooks(check: ColabCheck, manifest) -> list[Path]:
    """Copy the notebooks the published docs link into the manifest's checkout, where a commit publishes
    them (`notebooks.path/<destination>/`); those already there with the same bytes are left. Returns
    the files written."""
    target = checkout_notebooks(manifest)
    written: list[Path] = []
    if target is None:  # no checkout to publish them from
        return written
    for source, inside in check.found:
        dest = target / inside
        data = source.read_bytes()
        if source.resolve() != dest.resolve() and (not dest.is_file() or dest.read_bytes() != data):
            written.append(write_atomic(dest, data))
    return written


def _read_notebook(path: Path) -> dict:
    """A notebook file as its JSON (nbformat 4), read without the notebooks extra: publishing checks links."""
    import json

    nb = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(nb, dict) or nb.get("nbformat") != 4 or not isinstance(nb.get("cells"), list):
        raise ValueError("not an nbformat 4 notebook")
    return nb


def _source(cell: dict) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else str(source)


def _notebook_problem(path: Path, handles: list[str]) -> str | None:
    if not path.is_file():
        return f"no notebook at {path}"
    try:
        nb = _read_notebook(path)
    except (OSError, ValueError) as e:  # any reason it is not a notebook: say which
        return f"{path} is not a notebook ({type(e).__name__})"
    text = "\n".join(_source(c) for c in nb["cells"])
    missing = [h for h in handles if h not in text]
    return f"{path} does not mention the artifact's handle {missing[0]}" if missing else None


def _has_outputs(path: Path) -> bool:
    return "executed_from" in _read_notebook(path).get("metadata", {}).get("hubpub", {})


@dataclass(frozen=True)
class Notebook:
    artifact: str
    path: Path
    executed: bool = False


def render_notebooks(manifest, *, dist: Path, out: Path, templates_dir: Path | None = None,
                     public_url_base: str | None = None, only: tuple[str, ...] = (), built=None) -> list[Notebook]:
    """One notebook per built artifact (`<out>/<destination>/<artifact>.ipynb`), from the template of its
    kind, loading from the destination read from `public_url_base`."""
    from fnmatch import fnmatchcase

    from hubpub.destinations import notebooks_folder
    from hubpub.docs import environment, load_built, model_context, render, template_dirs
    from hubpub.extras import require

    require("notebooks", "writing the usage notebooks")

    public_url_base = public_url_base or manifest.publish.public_url_base
    out = Path(out) / notebooks_folder(public_url_base)

    env = environment(template_dirs(manifest.path, templates_dir))
    built = built or load_built(dist)  # hubpub.docs.Built
    reports, evals = built.records, built.evals
    written = []
    for artifact in manifest.artifacts():
        if artifact.name not in reports or (only and not any(fnmatchcase(artifact.name, p) for p in only)):
            continue
        ctx = model_context(manifest, artifact, reports[artifact.name], evals.get(artifact.name),
                            public_url_base=public_url_base)
        nb = notebook_from_text(render(env, TEMPLATES[artifact.kind], ctx), artifact.name)
        path = out / f"{artifact.name}.ipynb"
        stamp = artifact_stamp(reports[artifact.name])
        if is_current(path, stamp) and _same_source(path, nb):
            written.append(Notebook(artifact.name, path, executed=True))  # its outputs still hold
            continue
        written.append(Notebook(artifact.name, write_notebook(nb, path)))
    if not written:
        raise NotebookError(f"{dist}: no built artifact to write a notebook for; run `hubpub build-all` first")
    return written


def artifact_stamp(record) -> str:
    """What a notebook's outputs depend on besides its source: the artifact files' hashes."""
    return f"{record.tarball.sha256}:{record.keras.sha256 if record.keras else '-'}"


def _same_source(path: Path, nb) -> bool:
    import nbformat

    old = nbformat.read(path, as_version=4)
    return [c.source for c in old.cells] == [c.source for c in nb.cells]


def cells_from_percent(text: str) -> list:
    """nbformat cells from percent-format text. Made as plain nbformat 4 dicts (the fields `new_code_cell`
    and `new_markdown_cell` give, without their per-cell schema check: the notebook is checked once, when
    written): a collection's notebooks are a thousand cells."""
    from nbformat import from_dict

    cells: list = []
    kind: str | None = None
    tags: list[str] = []
    lines: list[str] = []

    def flush():
        body = "\n".join(lines).strip("\n")
        if kind is None and not body:
            return
        if kind == "markdown":
            source = "\n".join(line.removeprefix("# ").removeprefix("#") for line in body.split("\n"))
            cells.append(from_dict({"cell_type": "markdown", "source": source, "metadata": {}}))
        else:
            cells.append(from_dict({"cell_type": "code", "source": body, "metadata": {"tags": tags} if tags else {},
                                    "execution_count": None, "outputs": []}))

    for line in text.split("\n"):
        m = _CELL.match(line)
        if m:
            flush()
            kind, lines = m.group("kind"), []
            tags = [t.strip().strip("\"'") for t in (m.group("tags") or "").split(",") if t.strip()]
        else:
            lines.append(line)
    flush()
    return cells


def notebook_from_text(text: str, name: str):
    from nbformat import from_dict

    nb = from_dict({"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": cells_from_percent(text)})
    nb.metadata = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
                   "language_info": {"name": "python"}, "hubpub": {"artifact": name}}
    for i, cell in enumerate(nb.cells):  # stable ids: the same build gives the same file
        cell["id"] = f"{name[:50]}-{i}"
    return nb


def write_notebook(nb, path: Path) -> Path:
    import nbformat

    write_if_changed(path, nbformat.writes(nb) + "\n")  # unchanged: its mtime stays
    return path


def parameter_cell(nb):
    return next((c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])), None)


def is_current(path: Path, stamp: str) -> bool:
    """Whether the notebook at `path` was executed from exactly its present source and artifact (`stamp`)."""
    import nbformat

    try:
        nb = nbformat.read(path, as_version=4)
    except Exception:  # missing or unreadable: run it
        return False
    return nb.metadata.get("hubpub", {}).get("executed_from") == _source_stamp(nb, stamp)


def _source_stamp(nb, stamp: str) -> str:
    import hashlib

    sources = "\0".join(c.source for c in nb.cells)
    return hashlib.sha256(f"{stamp}\0{sources}".encode()).hexdigest()


@dataclass(frozen=True)
class Run:
    """One notebook to execute: its file, the parameter cell's values for the run, the stamp of the artifact
    bytes it runs against (`artifact_stamp`), the bytes of weights its kernel loads (`can_start`), what
    progress calls it, and whether it trains (the longer kind)."""

    path: Path
    overrides: dict[str, str]
    stamp: str = ""
    weight_bytes: int = 0
    name: str = ""
    fine_tunes: bool = False


# A kernel's memory: the libraries it imports, then a multiple of the weights large enough for the fine-tuning
# notebook, the larger of the two (two copies of the model, gradients and Adam's slots). Sized above both.
KERNEL_BASE_BYTES = 3 * 2**29  # TensorFlow, Keras, tf-keras and matplotlib imported
KERNEL_BYTES_PER_WEIGHT_BYTE = 16


def kernel_bytes(weight_bytes: int) -> int:
    """The memory a notebook's kernel is expected to peak at, for a model with this many bytes of weights."""
    return KERNEL_BASE_BYTES + KERNEL_BYTES_PER_WEIGHT_BYTE * weight_bytes


def can_start(running: list[int], weight_bytes: int, cpus: int, memory: int | None) -> bool:
    """Whether a kernel for a model of `weight_bytes` may start beside the kernels running (their models'
    weight bytes): alone always; beside others while there is a CPU for each (a fine-tuning kernel keeps
    about one busy, so a second kernel on the same CPU gains nothing) and their expected peaks fit in half
    the machine's memory."""
    if not running:
        return True
    if len(running) >= cpus:
        return False
    return memory is None or sum(map(kernel_bytes, [*running, weight_bytes])) <= memory / 2


def execute_all(runs: list[Run], *, cpus: int, memory: int | None, timeout: int = 900,
                on_start=lambda run: None) -> list[Path]:
    """Run each notebook on a Python kernel, its parameter cell's names set to the run's `overrides`; store
    the outputs in its file, the parameter cell as it was. A failing cell is a `NotebookError` naming the
    notebook, the cell number and the error's last line. Several kernels at once where `can_start` allows
    (on one event loop: nbclient is asynchronous), started in the order given as far as they fit. Every
    notebook that runs to its end is stored, even when another fails; then the first failure (in the order
    given) is raised."""
    import asyncio

    from jupyter_core.utils import run_sync

    from hubpub.extras import require

    if not runs:
        return []
    require("notebooks", "running the usage notebooks")

    async def run_all():
        changed = asyncio.Condition()
        running: list[int] = []  # the weight bytes of the notebooks running

        async def one(run: Run) -> Path:
            async with changed:
                await changed.wait_for(lambda: can_start(running, run.weight_bytes, cpus, memory))
                running.append(run.weight_bytes)
            on_start(run)
            try:
                return await _execute(run, timeout)
            finally:
                async with changed:
                    running.remove(run.weight_bytes)
                    changed.notify_all()

        return await asyncio.gather(*(one(r) for r in runs), return_exceptions=True)

    done = run_sync(run_all)()
    for result in done:
        if isinstance(result, BaseException):
            raise result
    return done


async def _execute(run: Run, timeout: int) -> Path:
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError
    from traitlets.config import Config

    path = run.path
    nb = nbformat.read(path, as_version=4)
    params = parameter_cell(nb)
    original = params.source if params is not None else None
    if params is not None:
        params.source = "\n".join(f"{k} = {v!r}" for k, v in run.overrides.items())
    with tempfile.TemporaryDirectory(prefix="hubpub-notebook-") as tmp:
        # IPC, not TCP on loopback: no port to open, and no warning from the kernel that it is unencrypted.
        # nbclient makes (and stops) its own asynchronous kernel manager: with a blocking one it cannot
        # notice a kernel that died and would wait forever.
        config = Config()
        config.KernelManager.transport, config.KernelManager.ip = "ipc", str(Path(tmp) / "kernel")
        client = NotebookClient(nb, timeout=timeout, kernel_name="python3", config=config,
                                resources={"metadata": {"path": tmp}})
        # The kernel's native stderr (TensorFlow's start-up lines) goes to a file, not the terminal;
        # it is shown when the kernel dies, and always with HUBPUB_NATIVE_LOGS.
        native_log = None if os.environ.get("HUBPUB_NATIVE_LOGS") else (Path(tmp) / "kernel.stderr").open("wb")
        try:
            extra: dict[str, Any] = {"stderr": native_log} if native_log else {}  # for the kernel manager
            await client.async_execute(env=_kernel_env(Path(tmp)), **extra)
        except CellExecutionError as e:
            failed = next((i for i, c in enumerate(nb.cells, 1) if any(
                o.get("output_type") == "error" for o in c.get("outputs", []))), "?")
            last = re.sub(r"\x1b\[[0-9;]*m", "", (str(e).strip().splitlines() or [""])[-1])  # no terminal colours
            raise NotebookError(f"{path}: cell {failed} failed: {last}") from None
        except Exception as e:  # the kernel did not start or died
            said = _last_line(Path(native_log.name)) if native_log else ""
            raise NotebookError(f"{path}: the kernel failed: {type(e).__name__}: {e}"
                                + (f" (kernel stderr: {said})" if said else "")) from None
        finally:
            if native_log:
                native_log.close()
    if params is not None:
        params.source = original
        params.outputs = []
    nb.metadata.setdefault("hubpub", {})["executed_from"] = _source_stamp(nb, run.stamp)
    return write_notebook(nb, path)


def _last_line(path: Path) -> str:
    lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    return lines[-1].strip() if lines else ""


def _kernel_env(root: Path) -> dict[str, str]:
    """The kernel's environment: this process's, with its downloads in throwaway caches, so a loopback URL
    never leaves a stale file in the user's Keras or TF-Hub cache. Given to the kernel, not set in this
    process, whose other threads would see it."""
    # TensorFlow's C++ start-up chatter (oneDNN, CUDA probes) would land in the stored outputs.
    return {**os.environ, "KERAS_HOME": str(root / "keras"), "TFHUB_CACHE_DIR": str(root / "tfhub"),
            "TF_CPP_MIN_LOG_LEVEL": "3"}
