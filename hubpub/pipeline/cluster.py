"""build-all on a Dask cluster: each variant one task, run on a worker in a fresh process of its own.

The client (the machine that runs `hubpub build-all --scheduler ...`) decides what is up to date, checks
the cluster before any work (reachable, the same hubpub on every worker, `--out` and the manifest shared),
and owns every shared file: the lock, the report, the notebooks, docs and site. A task only builds its
variant into `--out`, as a local worker process does, so the bytes are the same (a long-lived worker
process would change them: a SavedModel's function names come from process-wide counters).

Memory is a Dask resource: each task asks for `RESOURCE` = the bytes its variant needs (`memory_needed`), and
a worker offers what it has (`dask worker ... --resources "hubpub_memory=16e9"`), so a worker never takes
two large variants at once. A task whose worker dies is run again on another worker (Dask reschedules
the tasks of a lost worker); a variant's files are written to temp names and moved into place, so a
rerun finds no half-written file.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import sys
import time
import uuid
from dataclasses import dataclass, replace
from pathlib import Path

from hubpub.errors import HubpubError

log = logging.getLogger(__name__)

RESOURCE = "hubpub_memory"  # the Dask resource a task asks for: bytes of memory its variant's build peaks at
CONNECT_TIMEOUT = "5s"
CANCEL_POLL_SECONDS = 1.0  # how often a task looks at the cancel event while its build runs


class ClusterError(HubpubError):
    """The Dask cluster cannot run this build: unreachable, another hubpub, or `--out` not shared."""


@dataclass(frozen=True)
class Scheduler:
    """Where the tasks go: a scheduler's address, or a LocalCluster of `local_workers` processes."""

    address: str | None = None  # tcp://HOST:PORT (or any address scheme Dask speaks: tls://, ...)
    local_workers: int | None = None

    def __str__(self) -> str:
        return self.address or f"local:{self.local_workers}"


def parse_scheduler(text: str) -> Scheduler:
    """`local:N` or a Dask scheduler address `SCHEME://HOST:PORT`; ValueError says what was expected."""
    if text.startswith("local:"):
        count = text.removeprefix("local:")
        if not count.isdigit() or not 1 <= int(count) <= 64:
            raise ValueError(f"expected local:N with N from 1 to 64; got {text!r}")
        from hubpub.machine import usable_cpus

        # Each worker runs one single-threaded build at a time: more workers than CPUs only queue for them.
        if int(count) > (cpus := usable_cpus()):
            raise ValueError(f"{text}: this machine gives hubpub {cpus} CPU(s); ask for at most local:{cpus}")
        return Scheduler(local_workers=int(count))
    scheme, sep, rest = text.partition("://")
    host, colon, port = rest.rpartition(":")
    if not sep or scheme not in ("tcp", "tls", "ws", "wss", "inproc") or not colon or not host or not port.isdigit():
        raise ValueError(f"expected a Dask scheduler address like tcp://HOST:8786, or local:N; got {text!r}")
    return Scheduler(address=text)


def memory_needed(parameters: int | None, source_bytes: int = 0) -> int:
    """Bytes one variant's build peaks at, with a margin: TensorFlow's own gigabyte and 3.5x the float32
    weights, above the peaks the benchmarks measure (benchmarks/results/build.json, stage_memory_xlarge.json).
    A family that does not know its size (a user's Keras file) is sized by its file."""
    weights = 4 * parameters if parameters is not None else source_bytes
    return int(1e9 + 3.5 * weights)


# --------------------------------------------------------------------------- what runs on the workers


def worker_facts(manifest: str, files: tuple[str, ...]) -> dict:
    """What the client checks on every worker before any work: its hubpub, its CPUs, and the sha256 of
    the manifest and the size of each checkpoint file it was given, as this worker sees them."""
    import hubpub
    from hubpub._files import sha256_file
    from hubpub.machine import usable_cpus

    seen = {}
    for path in (manifest, *files):
        try:
            seen[path] = sha256_file(Path(path)) if path == manifest else Path(path).stat().st_size
        except OSError as e:
            seen[path] = f"cannot read it: {e.strerror or e}"
    return {"hubpub": hubpub.__version__, "host": socket.gethostname(), "cpus": usable_cpus(), "files": seen}


def write_probe(folder: str, name: str) -> str | None:
    """Write `folder/name`, as a task would write into --out; None, or why not."""
    try:
        Path(folder).mkdir(parents=True, exist_ok=True)
        (Path(folder) / name).write_text(name, encoding="utf-8")
    except OSError as e:
        return f"cannot write there: {e.strerror or e}"
    return None


def run_task(job, topic: str, cancel_event: str, threads: dict[str, int]):
    """The task of one variant: `run_variant` in a fresh Python process on this worker, its stages sent
    to the client as events on `topic`; stopped when the client sets `cancel_event`."""
    from multiprocessing.connection import Connection

    from distributed import Event, get_worker

    from hubpub.pipeline.workers import VariantResult

    worker = get_worker()
    job = replace(job, threads=threads.get(worker.address, job.threads))
    ours, theirs = socket.socketpair()
    child = _spawn(theirs)
    conn = Connection(ours.detach())
    cancel = Event(cancel_event)
    start = time.perf_counter()
    looked = time.monotonic()
    try:
        conn.send(job)
        while True:
            if conn.poll(CANCEL_POLL_SECONDS):
                kind, payload = conn.recv()
                if kind == "result":
                    return payload
                worker.log_event(topic, payload)
            if time.monotonic() - looked >= CANCEL_POLL_SECONDS:  # a scheduler round trip: once a second
                looked = time.monotonic()
                if cancel.is_set():
                    return VariantResult(job.variant, False, time.perf_counter() - start, error="cancelled")
    except (EOFError, OSError):  # the process died: its own crash, or the OOM killer
        child.wait()
        return VariantResult(job.variant, False, time.perf_counter() - start,
                             error=f"its build process on worker {worker.address} died (exit {child.returncode}; "
                                   "out of memory?)")
    finally:
        conn.close()
        _stop(child)
        if cancel.is_set():
            from hubpub.pipeline.workers import clean_interrupted

            clean_interrupted(Path(job.out))


def _spawn(conn_socket: socket.socket):
    import subprocess

    fd = conn_socket.fileno()
    try:
        return subprocess.Popen([sys.executable, "-c", f"from hubpub.pipeline.cluster import _child_main; "
                                 f"_child_main({fd})"], pass_fds=[fd], stdin=subprocess.DEVNULL)
    finally:
        conn_socket.close()


def _stop(child) -> None:
    if child.poll() is None:
        child.terminate()
        try:
            child.wait(timeout=10)
        except Exception:  # noqa: BLE001 - a build that ignores SIGTERM is killed
            child.kill()
            child.wait()


def _child_main(fd: int) -> None:
    """The fresh process of one task: receive the job, send each stage, then the result. It exits at
    once if its task's worker goes (the socket closes): a rerun elsewhere must not race it."""
    import signal
    import threading
    from multiprocessing.connection import Connection

    from hubpub.pipeline.workers import run_variant

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the client cancels; Ctrl-C in its terminal is not ours
    conn = Connection(fd)
    job = conn.recv()

    def orphaned() -> None:
        with contextlib.suppress(EOFError, OSError):
            conn.recv()  # nothing more is sent: this returns when the worker is gone
        os._exit(1)

    threading.Thread(target=orphaned, daemon=True).start()

    class Events:
        def put(self, item) -> None:
            conn.send(("stage", item))

    result = run_variant(job, Events())
    conn.send(("result", result))


# --------------------------------------------------------------------------- the client's side


@contextlib.contextmanager
def connect(scheduler: Scheduler):
    """A Dask client of the scheduler (or of a LocalCluster started here); ClusterError if unreachable."""
    from hubpub.extras import require

    require("cluster", f"--scheduler {scheduler}")
    import dask
    from distributed import Client, LocalCluster

    if not log.isEnabledFor(logging.DEBUG):  # Dask's own INFO lines (a cluster's comings and goings) with -vv only
        for name in ("distributed", "distributed.nanny", "distributed.scheduler", "distributed.worker"):
            logging.getLogger(name).setLevel(logging.WARNING)
        # A lost scheduler is reported as one line of ours; its reconnect attempts log tracebacks there.
        for name in ("distributed.client", "distributed.utils", "distributed.core", "distributed.comm"):
            logging.getLogger(name).setLevel(logging.CRITICAL)
    with dask.config.set({"distributed.worker.daemon": False, "logging.distributed": "warning"}):
        if scheduler.local_workers:
            from distributed.system import MEMORY_LIMIT

            from hubpub.machine import physical_memory

            # Dask's own figure (psutil, cgroup limits) where the system's page counts are not given.
            n, memory = scheduler.local_workers, physical_memory() or MEMORY_LIMIT
            import multiprocessing

            before = set(multiprocessing.active_children())
            with _quiet_workers():  # while its processes start
                cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None,
                                       resources={RESOURCE: memory // n})
            ours = set(multiprocessing.active_children()) - before
            try:
                with cluster, Client(cluster) as client:
                    yield client
            finally:
                _stop_local_workers(ours)
            return
        try:
            client = Client(scheduler.address, timeout=CONNECT_TIMEOUT)
        except (OSError, TimeoutError) as e:
            raise ClusterError(f"cannot reach the Dask scheduler at {scheduler.address}: "
                               f"{str(e).splitlines()[0] or type(e).__name__}") from None
        with client:
            yield client


def _stop_local_workers(processes, wait_seconds: float = 10.0) -> None:
    """Kill what is left of a LocalCluster's worker processes once it is closed (or its close gave up,
    after Ctrl-C on a loaded machine): they are not daemons (their tasks start processes), and Python
    would wait for each at exit."""
    for process in processes:
        process.join(wait_seconds)
        if process.is_alive():
            process.kill()
            process.join(wait_seconds)


@contextlib.contextmanager
def _quiet_workers():
    """Start a LocalCluster's worker processes ignoring Ctrl-C (this process cancels their tasks, and a
    Python started with SIGINT ignored keeps ignoring it) and logging errors only (Dask reads that
    variable when it is imported)."""
    import signal

    variable, before = "DASK_LOGGING__DISTRIBUTED", os.environ.get("DASK_LOGGING__DISTRIBUTED")
    os.environ[variable] = "debug" if log.isEnabledFor(logging.DEBUG) else "error"
    handler = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, handler)
        if before is None:
            del os.environ[variable]
        else:
            os.environ[variable] = before


def check_cluster(client, out: Path, manifest: Path, files: tuple[str, ...]) -> dict[str, int]:
    """Before any work: every worker runs this hubpub and sees `--out`, the manifest and the checkpoint
    files as this machine does. Returns the CPU threads each worker's builds get (the host's CPUs shared
    by the worker threads on it)."""
    import shutil

    import hubpub

    workers = client.scheduler_info(n_workers=-1)["workers"]
    if not workers:
        raise ClusterError(f"the Dask scheduler at {client.scheduler.address} has no workers: start some with "
                           f"`dask worker {client.scheduler.address} --nthreads 1 --resources \"{RESOURCE}=16e9\"`")
    facts = client.run(worker_facts, str(manifest), files, on_error="return")
    for address, fact in sorted(facts.items()):
        if isinstance(fact, BaseException):
            raise ClusterError(f"worker {address} cannot run hubpub ({_reason(fact)}): install "
                               f"hubpub=={hubpub.__version__} there, with its cluster extra")
        if fact["hubpub"] != hubpub.__version__:
            raise ClusterError(f"worker {address} runs hubpub {fact['hubpub']}, this machine {hubpub.__version__}: "
                               "install the same version on every worker")
    _check_shared(client, out, workers)
    from hubpub._files import sha256_file

    ours = {str(manifest): sha256_file(manifest), **{f: Path(f).stat().st_size for f in files}}
    for address, fact in sorted(facts.items()):
        for path, value in fact["files"].items():
            if value != ours[path]:
                what = "the manifest" if path == str(manifest) else "checkpoint"
                seen = value if isinstance(value, str) else "other bytes"
                raise ClusterError(f"worker {address} sees {what} {path} differently ({seen}): every worker must "
                                   "read the same files at the same paths (a shared filesystem)")
    per_host: dict[str, int] = {}
    for address, info in workers.items():
        per_host[facts[address]["host"]] = per_host.get(facts[address]["host"], 0) + info["nthreads"]
    shutil.rmtree(out / ".hubpub-probe", ignore_errors=True)
    return {a: max(1, facts[a]["cpus"] // per_host[facts[a]["host"]]) for a in workers}


def _reason(error: BaseException) -> str:
    """`Name: message` of a worker's error (Dask hands back one it cannot unpickle as `Exception('Name("...")')`)."""
    import re

    if (found := re.fullmatch(r"(\w+)\((['\"])(.*)\2\)", str(error))) is not None:
        return f"{found[1]}: {found[3]}"
    return f"{type(error).__name__}: {error}"


def _check_shared(client, out: Path, workers: dict) -> None:
    """Each worker writes a probe file into --out, and this machine reads them all back."""
    import shutil

    folder = out / ".hubpub-probe" / uuid.uuid4().hex
    names = {a: f"worker-{i}" for i, a in enumerate(sorted(workers))}
    try:
        for address, name in names.items():
            problem = client.run(write_probe, str(folder), name, workers=[address])[address]
            if problem:
                raise ClusterError(f"--out {out}: worker {address} {problem}")
        unseen = [a for a, name in names.items() if not (folder / name).is_file()]
        if unseen:
            raise ClusterError(f"--out {out} is not shared with the cluster: this machine cannot see what worker "
                               f"{unseen[0]} wrote there; give a folder every worker mounts at the same path")
    finally:
        shutil.rmtree(folder.parent, ignore_errors=True)


def largest_offer(client) -> int | None:
    """The most `RESOURCE` any worker offers; None if no worker declares it."""
    offers = [w.get("resources", {}).get(RESOURCE) for w in client.scheduler_info(n_workers=-1)["workers"].values()]
    offers = [o for o in offers if o is not None]
    return max(offers) if offers else None


def run_on_cluster(client, jobs: list, needs: dict[str, int], threads: dict[str, int], results: dict, out: Path,
                   progress) -> None:
    """Every job as a task on the cluster; results into `results`, stages into `progress`."""
    from distributed import Event, as_completed

    from hubpub.pipeline.workers import VariantResult, clean_interrupted

    offer = largest_offer(client)
    if offer is None:
        log.warning("warning: no worker declares the %s resource: a worker may take two large variants at once "
                    "(start workers with --resources \"%s=BYTES\")", RESOURCE, RESOURCE)
    else:
        too_big = [name for name, need in needs.items() if need > offer]
        if too_big:
            raise ClusterError(f"{too_big[0]} needs {needs[too_big[0]] / 1e9:.1f} GB ({RESOURCE}); the largest "
                               f"worker offers {offer / 1e9:.1f} GB")
    token = uuid.uuid4().hex
    topic, cancel = f"hubpub-progress-{token}", Event(f"hubpub-cancel-{token}", client=client)
    if progress is not None:
        client.subscribe_topic(topic, lambda event: progress(*event[1]))
    futures = {}
    for job in jobs:
        resources = {RESOURCE: needs[job.variant]} if offer is not None else None
        fut = client.submit(run_task, job, topic, cancel.name, threads, key=f"hubpub-{job.variant}-{token}",
                            resources=resources, pure=False)
        futures[fut] = job
    try:
        for fut in as_completed(futures):
            job = futures[fut]
            try:
                result = fut.result()
            except Exception as e:  # noqa: BLE001 - KilledWorker after its retries, or a worker without hubpub
                if "scheduler-connection-lost" in str(e):  # every other task is lost with it: stop here
                    clean_interrupted(out)
                    raise ClusterError(f"lost the Dask scheduler at {client.scheduler.address} mid-build; finished "
                                       "files are kept, rerun the command once it is back") from None
                result = VariantResult(job.variant, False, 0.0, error=f"its task failed on the cluster: "
                                                                     f"{type(e).__name__}: {e}")
            results[job.variant] = result
            if progress is not None:
                progress(job.variant, "done" if result.ok else f"FAILED: {result.error}")
    except KeyboardInterrupt:
        _cancel(client, cancel, list(futures))
        clean_interrupted(out)
        raise
    finally:
        if progress is not None:
            with contextlib.suppress(Exception):
                client.unsubscribe_topic(topic)


def _cancel(client, cancel, futures, wait_seconds: float = 30.0) -> None:
    """Stop every task: each sees the event within a second, stops its build process and removes its temp
    files; then the futures go."""
    cancel.set()
    keys = {f.key for f in futures}
    deadline = time.monotonic() + wait_seconds
    while time.monotonic() < deadline:
        running = {k for ks in client.processing().values() for k in ks}
        if not running & keys:
            break
        time.sleep(0.2)
    client.cancel(futures, force=True)

