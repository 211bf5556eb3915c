"""One variant as a job for a worker process: its inputs, its result, and the threads and signals of the pool."""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from hubpub.layout import Dist
from hubpub.machine import usable_cpus
from hubpub.manifest import artifact_name
from hubpub.pipeline.build import build_variant
from hubpub.pipeline.incremental import inputs_key, up_to_date
from hubpub.record import (
    BuildRecord,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VariantJob:
    """Plain values sent to a worker process."""

    manifest_path: str
    variant: str
    out: str
    checkpoint: str | None
    expected_sha256: str | None
    kinds: tuple[str, ...]
    input_convention: str
    parity: bool
    force: bool
    threads: int | None = None  # CPU threads for TensorFlow and PyTorch in this worker; None: all
    formats: tuple[str, ...] = ()  # the formats of `hubpub.formats` to build (LiteRT: where the manifest wants it)


# What the worker's libraries read for their thread pools, at their first use.
THREAD_VARIABLES = ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "OMP_NUM_THREADS")


def worker_threads(jobs: int) -> int | None:
    """Each of `jobs` workers gets an equal share of this process's CPUs (None for one worker).

    Every library sizes its pools to all CPUs by default: two workers on two cores would each run
    two compute threads per op, and oversubscribed cores run slower than shared ones.
    """
    if jobs <= 1:
        return None
    return max(1, usable_cpus() // jobs)


@dataclass(frozen=True)
class VariantResult:
    """What a worker sends back: each kind's record with its status, or the error."""

    variant: str
    ok: bool
    seconds: float
    records: tuple[tuple[str, BuildRecord], ...] = ()  # (status, record) per kind
    checkpoint_url: str | None = None
    checkpoint_sha256: str | None = None
    error: str | None = None
    traceback: str | None = None


def already_built(job: VariantJob, variant) -> VariantResult | None:
    """The job's result without a worker when every kind is up to date: its checkpoint's sha256 known
    without reading it (pinned by the manifest or the lock, or the stat-keyed hash of a local file or of
    its download in the cache), and each record built from the same inputs. None: a worker must look."""
    from hubpub.fetch import cached_sha256, is_url, known_sha256

    if job.force:
        return None
    source = job.checkpoint or variant.checkpoint_url
    pinned = job.expected_sha256 if job.checkpoint is None else None  # a file given instead: its own bytes
    sha256: str | None
    if pinned:
        sha256 = pinned
    elif is_url(source):
        sha256 = cached_sha256(source)
    else:
        sha256 = known_sha256(Path(source)) if Path(source).is_file() else None
    if sha256 is None or (job.expected_sha256 and sha256 != job.expected_sha256):
        return None  # a worker fetches it, or says what is wrong with it
    dist, records = Dist(Path(job.out)), []
    for kind in job.kinds:
        key = inputs_key(variant, kind, sha256, job.input_convention, job.parity, job.formats)
        record = up_to_date(dist, artifact_name(variant.name, kind), key)
        if record is None:
            return None
        records.append(("up to date", record))
    return VariantResult(variant.name, True, 0.0, tuple(records), source, sha256)


def run_variant(job: VariantJob, events=None) -> VariantResult:
    """Worker: fetch, check what is up to date, build the rest. Returns plain results, never raises."""
    import traceback

    from hubpub.errors import HubpubError
    from hubpub.fetch import fetch
    from hubpub.manifest import load_manifest

    def emit(artifact: str, stage: str) -> None:
        if events is not None:
            events.put((artifact, stage))

    if job.threads:  # before TensorFlow or PyTorch is imported here; a user's own setting wins
        for name in THREAD_VARIABLES:
            os.environ.setdefault(name, str(job.threads))
    start = time.perf_counter()
    global _building
    _building = True
    try:
        variant = load_manifest(job.manifest_path).variant(job.variant)
        dist = Dist(Path(job.out))
        emit(variant.name, "fetch")
        fetch_start = time.perf_counter()
        fetched = fetch(job.checkpoint or variant.checkpoint_url, sha256=job.expected_sha256)
        fetch_seconds = round(time.perf_counter() - fetch_start, 3)
        from hubpub._tf import import_tensorflow

        import_tensorflow()  # after the fetch: a missing checkpoint fails without the seconds of this import
        keys = {k: inputs_key(variant, k, fetched.sha256, job.input_convention, job.parity, job.formats)
                for k in job.kinds}
        done = {} if job.force else {k: r for k in job.kinds
                                     if (r := up_to_date(dist, artifact_name(variant.name, k), keys[k]))}
        todo = tuple(k for k in job.kinds if k not in done)
        records = {k: ("up to date", r) for k, r in done.items()}
        if todo:
            built = build_variant(variant, dist.root, checkpoint=job.checkpoint, kinds=todo,
                                  input_convention=job.input_convention, parity=job.parity, on_stage=emit,
                                  fetched=fetched, formats=job.formats)
            records |= {r.kind: ("built", r.replace(timings={**r.timings, "fetch": fetch_seconds})) for r in built}
        return VariantResult(variant.name, True, time.perf_counter() - start, tuple(records[k] for k in job.kinds),
                             job.checkpoint or variant.checkpoint_url, fetched.sha256)
    except HubpubError as e:
        return VariantResult(job.variant, False, time.perf_counter() - start, error=str(e).splitlines()[0])
    except Exception as e:  # a bug: keep the traceback for -v, and let the other variants go on
        from hubpub._files import full_disk

        if (full := full_disk(e, Path(job.out))) is not None:
            return VariantResult(job.variant, False, time.perf_counter() - start, error=full.message)
        return VariantResult(job.variant, False, time.perf_counter() - start,
                             error=f"internal error: {type(e).__name__}: {e}", traceback=traceback.format_exc())
    except KeyboardInterrupt:  # the parent's SIGTERM (`_on_sigterm`), the build unwound: end as SIGTERM ends
        os._exit(128 + 15)
    finally:
        _building = False


PARENT_POLL_SECONDS = 0.25  # how often a worker or helper process looks whether its parent is still there


def _ignore_sigint() -> None:
    """A worker's or helper's start: Ctrl-C is its parent's to handle, and it ends when its parent does."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    exit_with_parent()


_building = False  # a worker's build under way (`run_variant`)


def _worker_start(environment: dict[str, str], cwd: str) -> None:
    """A pool worker's start: as `_ignore_sigint`, and the parent's SIGTERM (its Ctrl-C) ends a build under way
    as an interrupt does, so the build's temp folders and converter children go with it.

    The worker is forked from a fork server started at the parent's first build: it takes the parent's
    environment and folder as they are now, as a spawned process would."""
    import signal

    os.environ.clear()
    os.environ.update(environment)
    os.chdir(cwd)
    _ignore_sigint()
    signal.signal(signal.SIGTERM, _on_sigterm)


def _on_sigterm(signum, frame) -> None:
    import signal
    import threading

    from hubpub._files import in_finalizer

    global _building
    if not _building:  # idle, or told twice: nothing of a build to unwind
        os._exit(128 + signum)
    if in_finalizer(frame):  # the interrupt would be ignored there
        threading.Timer(0.05, signal.raise_signal, (signum,)).start()
        return
    _building = False
    raise KeyboardInterrupt


def manager_address():
    """Where the progress queue's manager listens. multiprocessing's default is a socket file in the temp
    folder, and a socket's path holds about 100 bytes (a deep TMPDIR passes that, and the manager then fails
    to start): on Linux a name in the abstract namespace, which has no path and leaves no file behind;
    elsewhere the loopback interface once the default path would be too long. Either way, only a process
    holding the manager's key may use it."""
    import secrets
    import sys
    import tempfile

    if sys.platform.startswith("linux"):
        return f"\0hubpub-{os.getpid()}-{secrets.token_hex(8)}"
    longest = len(os.fsencode(tempfile.gettempdir())) + len("/pymp-xxxxxxxx/listener-xxxxxxxx")
    return ("127.0.0.1", 0) if longest >= 100 else None


def exit_with_parent() -> None:
    """End this process at once when its parent goes (`kill -9`, the OOM killer): a build nobody waits for
    would hold CPUs and memory for minutes. A thread watches for the re-parenting (to init, or to a
    subreaper); its temp files are swept by the next run."""
    import threading

    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_POLL_SECONDS)
        os._exit(1)

    threading.Thread(target=watch, name="hubpub-parent-watch", daemon=True).start()


def _stop_workers(pool) -> None:
    """Terminate a pool's workers now (ProcessPoolExecutor has no public way before Python 3.14)."""
    import shutil
    import tempfile

    processes = list((getattr(pool, "_processes", None) or {}).values())
    for p in processes:
        p.terminate()
    for p in processes:
        p.join(timeout=10)
        if p.is_alive():  # inside a long native call: its build cannot unwind now
            p.kill()
            p.join(timeout=10)
    # Waited for: the pool's manager thread sees its workers gone and ends. Without the wait, shutdown empties
    # the pool's process table under that thread, which may be starting a finished worker's successor
    # (max_tasks_per_child) and fails in Python 3.11 with a traceback on stderr after the error line.
    pool.shutdown(wait=True, cancel_futures=True)
    for p in processes:
        for tmp in Path(tempfile.gettempdir()).glob(f"hubpub-*-{p.pid}-*"):  # `temp_prefix`: the worker's own
            shutil.rmtree(tmp, ignore_errors=True)


def clean_interrupted(out: Path) -> None:
    """Remove temp files an interrupted run left beside the final names (never the final files)."""
    import shutil

    for sub in Dist(out).temp_dirs():
        # `.keras-check-*` and `.*.tmp.d`: the `.keras` check and save folders of an older hubpub
        for tmp in [*sub.glob(".*tmp"), *sub.glob(".keras-check-*"), *sub.glob(".*.tmp.d")] if sub.is_dir() else []:
            shutil.rmtree(tmp, ignore_errors=True) if tmp.is_dir() else tmp.unlink(missing_ok=True)
