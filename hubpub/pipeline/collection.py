"""The collection: `build-all` over the variants (a worker pool, shards, collecting shards), then
notebooks, docs, site and publish, in sequence."""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from hubpub import __version__
from hubpub._files import folder_lock
from hubpub.extras import install_command, installed
from hubpub.layout import Dist
from hubpub.manifest import KINDS, Variant, artifact_name
from hubpub.pipeline.build import default_formats
from hubpub.pipeline.incremental import LOCK_NAME, built_from, check_pinned, read_lock, write_lock
from hubpub.pipeline.workers import (
    VariantJob,
    VariantResult,
    _ignore_sigint,
    _stop_workers,
    _worker_start,
    already_built,
    clean_interrupted,
    manager_address,
    run_variant,
    worker_threads,
)

if TYPE_CHECKING:
    from hubpub.docs import RenderResult
    from hubpub.notebooks import Notebook
    from hubpub.publish import PublishResult
    from hubpub.site import Site

from hubpub.record import (
    ArtifactRow,
    BuildSummary,
    RecordError,
    read_record,
    write_summary,
)

log = logging.getLogger(__name__)


def select_shard(variants: list[Variant], shard: tuple[int, int] | None) -> list[Variant]:
    """Shard K of N (1-based): every N-th variant in manifest order, both kinds of a variant together."""
    if shard is None:
        return variants
    k, n = shard
    return [v for i, v in enumerate(variants) if i % n == k - 1]


def build_all(manifest, out: Path, *, only: tuple[str, ...] = (), kinds: tuple[str, ...] = KINDS, jobs: int = 1,
              shard: tuple[int, int] | None = None, force: bool = False, checkpoints: dict[str, str] | None = None,
              input_convention: str = "hub", parity: bool = True, lock_path: Path | None = None,
              progress=None, require_pinned: bool = False, formats: tuple[str, ...] | None = None,
              scheduler=None) -> BuildSummary:
    """Build every selected variant in worker processes (a fresh one per variant), then write the report.

    A fresh process per variant frees its memory and keeps SavedModel bytes reproducible. One
    variant's failure is recorded and the others go on. With a `scheduler` (`cluster.Scheduler`) the
    worker processes run on that Dask cluster's workers, checked first (`cluster.check_cluster`).
    """
    with folder_lock(out, "build"), _cluster(scheduler) as client:
        return _build_all(manifest, out, only=only, kinds=kinds, jobs=jobs, shard=shard, force=force,
                          checkpoints=checkpoints, input_convention=input_convention, parity=parity,
                          lock_path=lock_path, progress=progress,
                          require_pinned=require_pinned, formats=formats, client=client)


@contextlib.contextmanager
def _cluster(scheduler):
    if scheduler is None:
        yield None
        return
    from hubpub.pipeline.cluster import connect

    with connect(scheduler) as client:
        client.hubpub_scheduler = str(scheduler)
        yield client


def _build_all(manifest, out: Path, *, only, kinds, jobs, shard, force, checkpoints, input_convention, parity,
               lock_path, progress, require_pinned, formats, client) -> BuildSummary:
    from hubpub.errors import FetchError
    from hubpub.manifest import iter_selected

    checkpoints = checkpoints or {}
    out.mkdir(parents=True, exist_ok=True)
    clean_interrupted(out)
    variants = select_shard(list(iter_selected(manifest, only)), shard)
    unknown = sorted(set(checkpoints) - {v.name for v in manifest.variants})
    if unknown:
        raise FetchError(f"--checkpoint given for unknown variant(s): {', '.join(unknown)}")
    formats = default_formats(manifest.formats_off) if formats is None else formats
    lock_path = lock_path or manifest.path.with_name(LOCK_NAME)
    lock = read_lock(lock_path)
    if require_pinned or manifest.require_pinned:
        check_pinned(manifest, variants, lock, lock_path, checkpoints)
    cluster_threads = {}
    if client is not None:  # before any work: the cluster must be able to run this build
        from hubpub.fetch import is_url
        from hubpub.pipeline.cluster import check_cluster

        files = tuple(sorted({str(Path(s).resolve()) for s in checkpoints.values() if not is_url(s)}))
        checkpoints = {name: s if is_url(s) else str(Path(s).resolve()) for name, s in checkpoints.items()}
        cluster_threads = check_cluster(client, out.resolve(), manifest.path.resolve(), files)
        jobs, threads = len(cluster_threads), None
    else:
        jobs = max(1, min(jobs, len(variants)))
        threads = worker_threads(jobs)
    jobs_list = []
    for v in variants:
        source = checkpoints.get(v.name)
        locked = lock.get(v.name, {})
        expected = v.checkpoint_sha256 or (locked.get("sha256") if source is None
                                           and locked.get("url") == v.checkpoint_url else None)
        jobs_list.append(VariantJob(str(manifest.path.resolve()), v.name, str(out.resolve()), source, expected, kinds,
                                    input_convention, parity, force, threads, formats))

    # What is up to date needs no worker: decided here from the records and known hashes, no TensorFlow.
    results: dict[str, VariantResult] = {}
    for job, v in zip(list(jobs_list), variants, strict=True):
        if (done := already_built(job, v)) is not None:
            results[v.name] = done
            jobs_list.remove(job)
            if progress is not None:
                progress(v.name, "done")
    if jobs_list and client is not None:
        from hubpub.pipeline.cluster import memory_needed, run_on_cluster

        needs = {v.name: memory_needed(v.parameter_count(), _local_size(checkpoints.get(v.name) or v.checkpoint_url))
                 for v in variants}
        run_on_cluster(client, jobs_list, needs, cluster_threads, results, out, progress)
    elif jobs_list:
        _run_workers(jobs_list, jobs, results, out, progress)

    # The lock records the hash of every official checkpoint downloaded; later builds are checked against it.
    changed = False
    for v in variants:
        r = results.get(v.name)
        if r and r.ok and v.name not in checkpoints and lock.get(v.name, {}).get("sha256") != r.checkpoint_sha256:
            lock[v.name] = {"url": r.checkpoint_url, "sha256": r.checkpoint_sha256}
            changed = True
    if changed:
        write_lock(lock_path, lock)

    rows = []
    for v in variants:
        r = results[v.name]
        if not r.ok:
            rows += [ArtifactRow(artifact_name(v.name, k), v.name, k, "failed", round(r.seconds, 1), error=r.error)
                     for k in kinds]
            continue
        for status, rec in r.records:
            rows.append(ArtifactRow(rec.artifact, v.name, rec.kind, status,
                                    round(sum(rec.timings.values()), 1) if status == "built" else 0.0,
                                    rec.parameters, rec.tarball.size, rec.tarball.sha256, rec.parity.max_abs,
                                    rec.random_weights))
    summary = BuildSummary(__version__, str(manifest.path), f"{shard[0]}/{shard[1]}" if shard else None, jobs,
                           threads, tuple(rows), scheduler=client and client.hubpub_scheduler)
    for name, r in results.items():
        if r.traceback:
            log.debug("%s:\n%s", name, r.traceback)
    write_summary(Dist(out).build_report, summary)
    return summary


def _local_size(source: str) -> int:
    return Path(source).stat().st_size if Path(source).is_file() else 0


def _run_workers(jobs_list: list[VariantJob], jobs: int, results: dict, out: Path, progress) -> None:
    """Each job in a fresh worker process, `jobs` at once; results into `results`.

    The workers are forked from a fork server that imported TensorFlow once (`_preload`), so no worker
    imports it again; the fork server holds no build state, so each worker still starts clean."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from concurrent.futures.process import BrokenProcessPool
    from multiprocessing.managers import SyncManager

    ctx = mp.get_context("spawn")
    forks = _fork_server()
    # Ctrl-C reaches every process of the terminal's group: the helpers ignore it, and this process
    # stops them, so the user sees one line and no traceback from a worker or the queue's thread.
    mgr = SyncManager(manager_address(), ctx=ctx)
    mgr.start(_ignore_sigint)
    with mgr:
        events = mgr.Queue()
        listener = None
        if progress is not None:
            import threading

            def listen():
                try:
                    while (item := events.get()) is not None:
                        progress(*item)
                except (EOFError, OSError):  # the manager is gone: interrupted
                    return

            listener = threading.Thread(target=listen, daemon=True)
            listener.start()
        pool = ProcessPoolExecutor(max_workers=jobs, mp_context=forks, max_tasks_per_child=1,
                                   initializer=_worker_start, initargs=(dict(os.environ), os.getcwd()))
        try:
            futures = {pool.submit(run_variant, job, events): job for job in jobs_list}
            for fut in as_completed(futures):
                job = futures[fut]
                try:
                    result = fut.result()
                except BrokenProcessPool as e:
                    result = VariantResult(job.variant, False, 0.0, error=f"worker process died (out of memory?): {e}")
                results[job.variant] = result
                if progress is not None:
                    progress(job.variant, "done" if result.ok else f"FAILED: {result.error}")
        except KeyboardInterrupt:
            _stop_workers(pool)
            clean_interrupted(out)
            raise
        pool.shutdown()
        events.put(None)
        if listener is not None:
            listener.join(timeout=5)


def _fork_server():
    """The multiprocessing context whose fork server has imported TensorFlow (`_preload`), started now.

    It starts with Ctrl-C ignored, as every helper of a build does: the fork server only sets that once its
    imports are done, and a Ctrl-C during them would print its traceback under the error line. The fork server
    listens on a socket file in multiprocessing's temp folder, whose path holds about 100 bytes: under a
    deeper temp folder, the workers are spawned instead, and each imports TensorFlow itself."""
    import multiprocessing as mp
    import signal
    import threading
    from multiprocessing import forkserver, util

    if len(os.fsencode(util.get_temp_dir())) + len("/listener-xxxxxxxx") >= 100:
        return mp.get_context("spawn")
    forks = mp.get_context("forkserver")
    forks.set_forkserver_preload(["hubpub.pipeline._preload"])
    if threading.current_thread() is not threading.main_thread():  # signals are the main thread's
        forkserver.ensure_running()
        return forks
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # inherited through exec, unlike a handler
    try:
        forkserver.ensure_running()
    finally:
        signal.signal(signal.SIGINT, previous)
    return forks


# --------------------------------------------------------------------------- the collection, end to end


@dataclass(frozen=True)
class CollectionResult:
    summary: BuildSummary
    docs: RenderResult | None  # when rendered
    docs_note: str  # why the docs were not rendered, else ""
    public_url_base: str
    published: PublishResult | None  # when published
    notebooks: list[Notebook] = field(default_factory=list)  # written or kept
    site: Site | None = None  # when rendered


def build_collection(manifest, out: Path, *, only: tuple[str, ...] = (), kinds: tuple[str, ...] = KINDS,
                     jobs: int = 1, shard: tuple[int, int] | None = None, force: bool = False,
                     checkpoints: dict[str, str] | None = None, input_convention: str = "hub", parity: bool = True,
                     publish_dest: str | None = None, public_url: str | None = None,
                     progress=None, notebooks: Path | None = None,
                     formats: tuple[str, ...] | None = None,
                     execute: bool = False, collect: bool = False, require_pinned: bool = False,
                     verify: bool = True, fine_tune: bool = False, scheduler=None) -> CollectionResult:
    """build-all: every selected artifact, then its usage notebooks (into `notebooks`, default
    DIST/notebooks; run if `execute`) and docs for the destination, then (if asked) publish and, as
    `publish` does, `verify` one published artifact (with `fine_tune`, a training step too).

    A shard publishes its own artifact files only; `collect` builds nothing and renders the notebooks,
    docs and site of every artifact whose record is in `out` (the shards' `reports/`, gathered), then
    publishes those, checking that each artifact they link is at the destination."""
    from hubpub.destinations import parse, public_url_base
    from hubpub.errors import HubpubError
    from hubpub.manifest import iter_selected

    dest = parse(publish_dest or manifest.publish.destination)
    base = public_url_base(dest, manifest, public_url)  # before any work: a bad destination fails first
    if shard and publish_dest and dest.is_hub:
        raise HubpubError(f"--shard with --publish {dest}: a shard publishes its artifact files to gs:// or a "
                          "directory; a hub's pages need the whole collection, so publish there once, from the "
                          "gathered dist folders")
    selected = list(iter_selected(manifest, only))
    if not selected:
        raise HubpubError(f"no variant matches --only {' '.join(only)}")
    if not select_shard(selected, shard):  # a matrix wider than the collection: this shard has nothing to do
        assert shard is not None  # all of a non-empty selection is one shard
        empty = BuildSummary(__version__, str(manifest.path), f"{shard[0]}/{shard[1]}", 0, None)
        return CollectionResult(empty, None, f"shard {shard[0]}/{shard[1]} holds none of the {len(selected)} "
                                "selected variants: nothing to build", base, None)
    with folder_lock(out, "build"):
        return _collection(manifest, out, only=only, kinds=kinds, jobs=jobs, shard=shard, force=force,
                           checkpoints=checkpoints, input_convention=input_convention, parity=parity, dest=dest,
                           base=base, publish_dest=publish_dest, public_url=public_url, progress=progress,
                           notebooks=notebooks, formats=formats, execute=execute, collect=collect,
                           require_pinned=require_pinned, verify=verify, fine_tune=fine_tune, scheduler=scheduler)


def _collection(manifest, out: Path, *, only, kinds, jobs, shard, force, checkpoints, input_convention, parity, dest,
                base, publish_dest, public_url, progress, notebooks, formats, execute, collect, require_pinned,
                verify, fine_tune, scheduler) -> CollectionResult:
    from hubpub.docs import load_built
    from hubpub.notebooks import notebooks_dir
    from hubpub.publish import publish as run_publish

    if collect:
        summary = collected(manifest, out, only=only, kinds=kinds)
    else:
        summary = build_all(manifest, out, only=only, kinds=kinds, jobs=jobs, shard=shard, force=force,
                            checkpoints=checkpoints, input_convention=input_convention, parity=parity,
                            progress=progress, require_pinned=require_pinned,
                            formats=formats, scheduler=scheduler)
    docs, note, written, site = None, "", [], None
    built = load_built(out)  # read once: the notebooks, docs and site all take these
    if not built.records:
        note = "nothing built, no docs rendered"
    elif shard:
        note = ("not rendered for a shard: once every shard is done, gather their reports/ and run "
                "`hubpub build-all --collect`")
    else:
        notebooks = notebooks or notebooks_dir(out)
        written, docs, site = _render(manifest, out, base, built, notebooks, execute)
    published = None
    if publish_dest and not summary.failed:
        published = run_publish(manifest, out, dest, public_url=public_url, notebooks=notebooks,
                                artifacts_only=bool(shard), verify=verify, fine_tune=fine_tune)
    return CollectionResult(summary, docs, note, base, published, written, site)


def _render(manifest, out: Path, base: str, built, notebooks: Path, execute: bool):
    """The notebooks, docs and site of what is built; each stage skipped when what it reads (the manifest,
    the records, the templates, its settings) and what it wrote are as they were when it last ran."""
    from hubpub.docs import RenderResult, render_docs, template_dirs
    from hubpub.notebooks import Notebook, render_notebooks
    from hubpub.pipeline.memo import Memo, files_below
    from hubpub.site import Site, render_site

    layout = Dist(out)
    reads = [manifest.path, *files_below(layout.reports, *template_dirs(manifest.path))]
    written = []
    memo = Memo.of(out, "notebooks", [base, notebooks.resolve(), execute], reads)
    if not installed("notebooks"):
        log.warning("warning: no usage notebooks: the notebooks extra is not installed (%s)",
                    install_command("notebooks"))
    elif (kept := memo.recall(lambda r: [Notebook(str(a), Path(p), bool(executed))
                                         for a, p, executed in r["notebooks"]])) is not None:
        written = kept
    else:
        written = render_notebooks(manifest, dist=out, out=notebooks, public_url_base=base, built=built)
        if execute:
            written = execute_notebooks(out, written, progress=lambda name: log.info("executing %s", name),
                                        built=built)
        memo.store([n.path for n in written], {"notebooks": [[n.artifact, str(n.path), n.executed]
                                                             for n in written]})
    memo = Memo.of(out, "docs", [base], reads)
    docs = memo.recall(lambda r: RenderResult(Path(r["root"]), _paths(r["paths"]), tuple(map(str, r["skipped"]))))
    if docs is None:
        docs = render_docs(manifest, dist=out, out=layout.docs, public_url_base=base, built=built)
        memo.store(docs.paths, {"root": str(docs.root), "paths": list(map(str, docs.paths)),
                                "skipped": list(docs.skipped)})
    memo = Memo.of(out, "site", [base], [*reads, *docs.paths])
    site = memo.recall(lambda r: Site(Path(r["root"]), _paths(r["pages"]), r["upload"] and Path(r["upload"])))
    if site is None:
        site = render_site(manifest, dist=out, public_url_base=base, built=built)
        memo.store(files_below(site.root, *([site.upload] if site.upload else [])),
                   {"root": str(site.root), "pages": list(map(str, site.pages)),
                    "upload": site.upload and str(site.upload)})
    return written, docs, site


def _paths(values: list) -> tuple[Path, ...]:
    """Paths a memo holds: a list of strings, or TypeError (the memo is not of this form)."""
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise TypeError("expected a list of paths")
    return tuple(map(Path, values))


def collected(manifest, out: Path, *, only: tuple[str, ...] = (), kinds: tuple[str, ...] = KINDS) -> BuildSummary:
    """The summary of a collection built elsewhere (shards, a cluster), from the records gathered in `out`;
    every selected artifact must have one."""
    from hubpub.errors import HubpubError
    from hubpub.manifest import iter_selected

    rows, missing, stale = [], [], []
    for v in iter_selected(manifest, only):
        for a in v.artifacts(kinds):
            path = Dist(out).report(a.name)
            try:
                rec = read_record(path)
            except RecordError:
                missing.append(a.name)
                continue
            if rec.hubpub_version != __version__:
                stale.append(f"{path} was built by hubpub {rec.hubpub_version}, this is hubpub {__version__}")
                continue
            if not built_from(v, rec):
                stale.append(f"{path} was built from other settings than {a.variant.name} in {manifest.path} "
                             "(architecture, classes, resolution, checkpoint URL, eval or version)")
                continue
            rows.append(ArtifactRow(rec.artifact, v.name, rec.kind, "collected", 0.0, rec.parameters,
                                    rec.tarball.size, rec.tarball.sha256, rec.parity.max_abs, rec.random_weights))
    if missing:
        raise HubpubError(f"--collect: no build record in {Dist(out).reports} for {len(missing)} artifact(s): "
                          f"{', '.join(missing[:6])}{', ...' if len(missing) > 6 else ''}; gather every shard's "
                          "reports/ there first (or select fewer with --only)")
    if stale:
        raise HubpubError(f"--collect: {len(stale)} build record(s) do not match the manifest; rebuild them "
                          "with this manifest and this hubpub (every shard alike), then collect again", stale[:6])
    summary = BuildSummary(__version__, str(manifest.path), "collect", 0, None, tuple(rows))
    write_summary(Dist(out).build_report, summary)
    return summary


def demo_checkpoint(variant: Variant, out: Path) -> tuple[Path, bool]:
    """The demo's random-weight checkpoint in the official layout (made once); (path, made now)."""
    from hubpub.convert import RANDOM_WEIGHTS_KEY, save_checkpoint

    path = Dist(out).demo / f"{variant.name}.random.safetensors"
    if path.is_file():
        return path, False
    tensors = variant.family.random_checkpoint(variant.architecture, variant.num_classes)
    return save_checkpoint(tensors, path, metadata={RANDOM_WEIGHTS_KEY: "true"}), True


def execute_notebooks(dist: Path, notebooks: list, *, progress=lambda name: None, built=None) -> list:
    """Run each notebook against this build's own files, served over loopback HTTP as a bucket would;
    one already executed from the same source and artifact bytes is kept as it is. Several kernels at
    once where the CPUs and memory allow (`can_start`), the fine-tuning notebooks and the larger models
    first, so the longest runs do not start last."""
    from hubpub.machine import physical_memory, usable_cpus
    from hubpub.notebooks import Notebook, Run, artifact_stamp, execute_all
    from hubpub.verify import serve_directory

    layout = Dist(dist)
    with serve_directory(layout.root) as base:
        runs = []
        for nb in (nb for nb in notebooks if not nb.executed):
            overrides = {"HANDLE": f"{base}/{layout.relative(layout.tarball(nb.artifact))}"}
            if layout.keras(nb.artifact).is_file():
                overrides["KERAS_URL"] = f"{base}/{layout.relative(layout.keras(nb.artifact))}"
            record = built.records[nb.artifact] if built is not None else read_record(layout.report(nb.artifact))
            runs.append(Run(nb.path, overrides, artifact_stamp(record), 4 * (record.parameters or 0), nb.artifact,
                            fine_tunes=record.kind == "feature-extractor"))
        runs.sort(key=lambda r: (not r.fine_tunes, -r.weight_bytes))  # stable: the given order among equals
        execute_all(runs, cpus=usable_cpus(), memory=physical_memory(), on_start=lambda run: progress(run.name))
    return [Notebook(nb.artifact, nb.path, executed=True) for nb in notebooks]
