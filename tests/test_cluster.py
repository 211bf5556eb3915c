"""build-all on a Dask cluster: a real scheduler and real workers, each a separate process on loopback
started here (`dask scheduler`, `dask worker`), not an in-process cluster; and the shard path an
orchestrator without Dask takes (`--shard auto`, the Kubernetes Job under deploy/)."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest
import yaml

from hubpub.pipeline import RESOURCE, Scheduler, build_all, select_shard
from tests.conftest import MICRO_PAIR

pytest.importorskip("distributed")

# Two variants, one per ConvNeXt style: both workers are mid-variant when one is killed, and the killed one's
# variant is built again by the other (a third variant would add time and no other path).
VARIANTS = MICRO_PAIR
ARTIFACT_FOLDERS = ("tars", "keras", "saved_models")
ROOT = Path(__file__).resolve().parent.parent


def _dask(*args, cwd: Path, python: tuple[str, ...] = (sys.executable,), env=None, prefix=()) -> subprocess.Popen:
    log = open(cwd / f"dask-{time.monotonic_ns()}.log", "wb")  # noqa: SIM115 - closed with the process
    return subprocess.Popen([*prefix, *python, "-m", "dask", *args], cwd=cwd, stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, **(env or {})}, start_new_session=True)


@contextmanager
def _processes():
    started: list[subprocess.Popen] = []
    try:
        yield started
    finally:
        for p in started:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
            p.wait()


def _scheduler(started, folder: Path) -> str:
    file = folder / "scheduler.json"
    started.append(_dask("scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard", "--scheduler-file",
                         str(file), cwd=folder))
    deadline = time.monotonic() + 60
    while not file.is_file() or not file.read_text().strip():
        assert time.monotonic() < deadline, "the scheduler did not start"
        time.sleep(0.2)
    return json.loads(file.read_text())["address"]


def _worker(started, address: str, folder: Path, name: str, **how) -> subprocess.Popen:
    # No nanny: a worker killed here stays dead, so its task must finish on the other worker.
    p = _dask("worker", address, "--nthreads", "1", "--no-nanny", "--no-dashboard", "--name", name,
              "--resources", f"{RESOURCE}=4e9", cwd=folder, **how)
    started.append(p)
    return p


def _wait_for_workers(address: str, names: set[str]) -> None:
    from distributed import Client

    with Client(address, timeout="30s") as client:
        deadline = time.monotonic() + 90
        while {w["name"] for w in client.scheduler_info(n_workers=-1)["workers"].values()} != names:
            assert time.monotonic() < deadline, f"workers {names} did not join"
            time.sleep(0.2)


def _children(pid: int) -> set[int]:
    found = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        found |= {int(c) for c in (task / "children").read_text().split()}
    return found


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False


def _files(dist: Path) -> dict[str, bytes]:
    return {p.relative_to(dist).as_posix(): p.read_bytes() for folder in ARTIFACT_FOLDERS
            for p in sorted((dist / folder).rglob("*")) if p.is_file()}


def test_a_dask_cluster_builds_what_a_local_build_does_even_when_a_worker_is_killed(
        micro_manifest, micro_checkpoints, micro_pair, tmp_path):
    ckpts = {n: str(micro_checkpoints[n]) for n in VARIANTS}
    with _processes() as started:
        address = _scheduler(started, tmp_path)
        workers = {name: _worker(started, address, tmp_path, name) for name in ("a", "b")}
        _wait_for_workers(address, {"a", "b"})

        events, killed = [], {}

        def progress(artifact, stage):
            events.append((artifact, stage))
            if stage == "export" and not killed:  # both workers are mid-variant: kill one, and its build
                killed["children"] = _children(workers["a"].pid)
                os.kill(workers["a"].pid, signal.SIGKILL)
                killed["at"] = artifact

        summary = build_all(micro_manifest, tmp_path / "cluster", only=VARIANTS, checkpoints=ckpts, parity=False,
                            lock_path=tmp_path / "lock", progress=progress, scheduler=Scheduler(address))
        # Up to date: decided on this machine, from the records; the cluster is checked, and given nothing.
        again = build_all(micro_manifest, tmp_path / "cluster", only=VARIANTS, checkpoints=ckpts, parity=False,
                          lock_path=tmp_path / "lock", scheduler=Scheduler(address))
    assert {r.status for r in again.artifacts} == {"up to date"}

    assert killed["children"], "worker a was running a build process when it was killed"
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in killed["children"]) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(pid) for pid in killed["children"]), "the killed worker's build went on, orphaned"
    assert summary.failed == [] and summary.scheduler == address
    assert {r.artifact: r.status for r in summary.artifacts} == {
        a: "built" for v in VARIANTS for a in (v, f"{v}_fe")}
    assert {(v, "done") for v in VARIANTS} <= set(events) and ("micro_iso_1k_224_fe", "pack") in events
    assert not [p for p in (tmp_path / "cluster").rglob("*tmp")], "a temp file was left"

    # The local build-all of the same two variants, `--jobs 2` (shared with the pipeline's tests; with parity,
    # which the artifact files do not depend on).
    local = micro_pair.summary
    assert local["failed"] == [] and local["scheduler"] is None
    cluster_files, local_files = _files(tmp_path / "cluster"), _files(micro_pair.dist)
    assert len(cluster_files) > 30 and cluster_files.keys() == local_files.keys()
    assert [n for n in cluster_files if cluster_files[n] != local_files[n]] == []


def _hubpub(*args, cwd: Path):
    return subprocess.run([sys.executable, "-m", "hubpub", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300, env={**os.environ, "HUBPUB_DISABLE_PROGRESS": "1"})


def test_an_unreachable_scheduler_is_one_line_before_any_work(micro_manifest_path, tmp_path):
    r = _hubpub("build-all", "--manifest", str(micro_manifest_path), "--out", str(tmp_path / "dist"),
                "--scheduler", "tcp://127.0.0.1:9", cwd=tmp_path)
    assert r.returncode == 1, r.stderr
    assert r.stderr.strip().splitlines() == [
        "error: cannot reach the Dask scheduler at tcp://127.0.0.1:9: Timed out trying to connect to "
        "tcp://127.0.0.1:9 after 5 s"]
    assert not (tmp_path / "dist" / "reports").exists()


def test_a_worker_that_cannot_run_this_build_is_refused_before_any_work(micro_manifest_path, micro_checkpoints,
                                                                          tmp_path):
    out = tmp_path / "shared" / "dist"
    args = ("build-all", "--manifest", str(micro_manifest_path), "--out", str(out), "--only", "micro_1k_224",
            "--checkpoint", f"micro_1k_224={micro_checkpoints['micro_1k_224']}")
    site_packages = next(p for p in sys.path if p.endswith("site-packages"))
    with ExitStack() as stack:
        started = stack.enter_context(_processes())
        address = _scheduler(started, tmp_path)
        _worker(started, address, tmp_path, "good")
        # A worker whose Python has Dask but not hubpub: no site (hubpub is installed through a .pth file
        # there), Dask's packages on the path.
        no_hubpub = _worker(started, address, tmp_path, "no-hubpub", python=(sys.executable, "-S"),
                            env={"PYTHONPATH": site_packages})
        probe = subprocess.run([sys.executable, "-S", "-c", "import hubpub"], cwd=tmp_path, capture_output=True,
                               env={**os.environ, "PYTHONPATH": site_packages})
        if probe.returncode == 0:
            missing = ("a worker without hubpub cannot be made here: hubpub is installed into site-packages itself "
                       "(not editable), so Dask's path brings it along")
            if os.environ.get("CI") == "true":  # make test installs it editable: a skip there would hide the check
                pytest.fail(f"{missing}; under CI=true (make test's editable install) the check must run")
            pytest.skip(missing)
        _wait_for_workers(address, {"good", "no-hubpub"})
        r = _hubpub(*args, "--scheduler", address, cwd=tmp_path)
        assert r.returncode == 1, r.stderr
        [line] = r.stderr.strip().splitlines()
        assert line.startswith("error: worker tcp://127.0.0.1:") and "cannot run hubpub (ModuleNotFoundError" in line
        assert "install hubpub==" in line and not (out / "reports").exists()
        os.killpg(no_hubpub.pid, signal.SIGKILL)

        # A worker that sees another folder at --out's path (its own tmpfs mounted over it): not shared.
        (tmp_path / "shared").mkdir(exist_ok=True)
        _worker(started, address, tmp_path, "elsewhere",
                prefix=("unshare", "--user", "--map-root-user", "--mount", "sh", "-c",
                        f'mount -t tmpfs none "{tmp_path / "shared"}" && exec "$0" "$@"'))
        _wait_for_workers(address, {"good", "elsewhere"})
        r = _hubpub(*args, "--scheduler", address, cwd=tmp_path)
    assert r.returncode == 1, r.stderr
    [line] = r.stderr.strip().splitlines()
    assert line.startswith(f"error: --out {out} is not shared with the cluster: this machine cannot see what "
                           "worker tcp://127.0.0.1:")
    assert not (out / "reports").exists() and not list(out.glob(".hubpub-probe/*"))


def test_scheduler_option_mistakes_are_usage_errors(micro_manifest_path, tmp_path):
    from hubpub.machine import usable_cpus

    cpus = usable_cpus()
    base = ("build-all", "--manifest", str(micro_manifest_path), "--out", str(tmp_path))
    for extra, said in [(("--scheduler", "tcp:/host"), "expected a Dask scheduler address like tcp://HOST:8786"),
                        (("--scheduler", "garbage"), "expected a Dask scheduler address like tcp://HOST:8786"),
                        (("--scheduler", "local:0"), "expected local:N with N from 1 to 64"),
                        (("--scheduler", "local:-1"), "expected local:N with N from 1 to 64"),
                        (("--scheduler", "local:999"), "expected local:N with N from 1 to 64"),
                        (("--scheduler", f"local:{cpus + 1}"), f"local:{cpus + 1}: this machine gives hubpub "
                                                               f"{cpus} CPU(s); ask for at most local:{cpus}"),
                        (("--scheduler", "local:1", "--jobs", "2"), "--scheduler local:1 takes no --jobs"),
                        (("--scheduler", "local:1", "--shard", "1/2"), "--scheduler local:1 takes no --shard")]:
        r = _hubpub(*base, *extra, cwd=tmp_path)
        assert (r.returncode, said in r.stderr) == (2, True), r.stderr
        assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr, r.stderr


# --------------------------------------------------------------------------- the shard path without Dask


@pytest.mark.parametrize(("environ", "expected"), [
    ({"JOB_COMPLETION_INDEX": "0", "HUBPUB_SHARD_COUNT": "4"}, (1, 4)),  # Kubernetes: 0-based
    ({"JOB_COMPLETION_INDEX": "3", "HUBPUB_SHARD_COUNT": "4"}, (4, 4)),
    ({"CI_NODE_INDEX": "2", "CI_NODE_TOTAL": "5"}, (2, 5)),  # GitLab CI: 1-based
])
def test_shard_auto_reads_the_orchestrators_variables(environ, expected):
    from hubpub.cli.options import parse_shard

    assert parse_shard("auto", environ) == expected


@pytest.mark.parametrize(("environ", "said"), [
    ({}, "none of the shard variables is set"),
    ({"JOB_COMPLETION_INDEX": "0"}, "HUBPUB_SHARD_COUNT is not"),
    ({"JOB_COMPLETION_INDEX": "4", "HUBPUB_SHARD_COUNT": "4"}, r"JOB_COMPLETION_INDEX=4 is out of range for "
                                                              r"HUBPUB_SHARD_COUNT=4 \(expected 0 to 3\)"),
    ({"JOB_COMPLETION_INDEX": "5", "HUBPUB_SHARD_COUNT": "2"}, r"JOB_COMPLETION_INDEX=5 is out of range"),
    ({"JOB_COMPLETION_INDEX": "-1", "HUBPUB_SHARD_COUNT": "2"}, r"JOB_COMPLETION_INDEX=-1 is out of range"),
    ({"JOB_COMPLETION_INDEX": "0", "HUBPUB_SHARD_COUNT": "0"}, "HUBPUB_SHARD_COUNT=0; the number of shards must be"),
    ({"CI_NODE_INDEX": "0", "CI_NODE_TOTAL": "2"}, r"CI_NODE_INDEX=0 is out of range for CI_NODE_TOTAL=2 "
                                                   r"\(expected 1 to 2\)"),
    ({"CI_NODE_INDEX": "x", "CI_NODE_TOTAL": "4"}, "expected whole numbers"),
])
def test_shard_auto_without_its_variables_says_which(environ, said):
    import click

    from hubpub.cli.options import parse_shard

    with pytest.raises(click.BadParameter, match=said):
        parse_shard("auto", environ)


def _build_all_options(args: list[str]) -> bool:
    """Every option in `args` is one of build-all's (the values between them are not checked here)."""
    from hubpub.cli import cli

    known = {o for p in cli.get_command(None, "build-all").params for o in p.opts}
    options = [a for a in args if a.startswith("-")]
    assert set(options) <= known, set(options) - known
    return True


def test_the_kubernetes_job_covers_every_variant_exactly_once():
    """deploy/kubernetes/: the Indexed Job's completions, the count it gives hubpub, and the shards they
    make over the whole collection; then the collect Job."""
    from hubpub.cli.options import parse_shard
    from hubpub.manifest import load_manifest

    docs = list(yaml.safe_load_all((ROOT / "deploy/kubernetes/build-collection.yaml").read_text()))
    [build] = [d for d in docs if d["kind"] == "Job"]
    [collect] = yaml.safe_load_all((ROOT / "deploy/kubernetes/collect.yaml").read_text())
    spec = build["spec"]
    assert spec["completionMode"] == "Indexed"
    [container] = spec["template"]["spec"]["containers"]
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    assert int(env["HUBPUB_SHARD_COUNT"]) == spec["completions"]
    command = container["command"]
    assert command[:3] == ["hubpub", "-q", "build-all"] and _build_all_options(command[3:])
    assert container["command"][container["command"].index("--shard") + 1] == "auto"
    out = container["command"][container["command"].index("--out") + 1]
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    claims = {v["name"]: v.get("persistentVolumeClaim", {}).get("claimName")
              for v in spec["template"]["spec"]["volumes"]}
    [pvc] = [d for d in docs if d["kind"] == "PersistentVolumeClaim"]
    assert claims[mounts[out]] == pvc["metadata"]["name"] and pvc["spec"]["accessModes"] == ["ReadWriteMany"]

    variants = list(load_manifest(ROOT / "collection.yaml").variants)
    built = [v.name for i in range(spec["completions"])
             for v in select_shard(variants, parse_shard("auto", {"JOB_COMPLETION_INDEX": str(i),
                                                                  "HUBPUB_SHARD_COUNT": env["HUBPUB_SHARD_COUNT"]}))]
    assert sorted(built) == sorted(v.name for v in variants) and len(built) == len(set(built))
    [collector] = collect["spec"]["template"]["spec"]["containers"]
    assert collector["command"][:3] == ["hubpub", "-q", "build-all"] and _build_all_options(collector["command"][3:])
    assert "--collect" in collector["command"] and collector["command"][collector["command"].index("--out") + 1] == out
    assert {m["mountPath"] for m in collector["volumeMounts"]} >= {out}


def test_ctrl_c_cancels_the_cluster_tasks_and_leaves_no_temp_file(micro_checkpoints, micro_manifest_path, file_server,
                                                                 tmp_path):
    # The checkpoint comes from a loopback server that sends half of it and then holds the connection:
    # the task is provably mid-build when Ctrl-C comes. (Sent at a stage event instead, a loaded machine
    # delivered the event after the build had finished, and the Ctrl-C found nothing left to stop.)
    checkpoint = micro_checkpoints["micro_1k_224"]
    (file_server.root / checkpoint.name).write_bytes(checkpoint.read_bytes())
    file_server.faults[f"/{checkpoint.name}"] = ("hold", checkpoint.stat().st_size // 2)
    out, url = tmp_path / "dist", f"{file_server.url}/{checkpoint.name}"
    args = ["build-all", "--manifest", str(micro_manifest_path), "--out", str(out), "--scheduler", "local:1",
            "--no-parity", "--only", "micro_1k_224", "--checkpoint", f"micro_1k_224={url}"]
    # Started as from a terminal, where Ctrl-C reaches a foreground process whose SIGINT is at its default:
    # a suite started in the background of a non-interactive shell (`make test &`) ignores SIGINT, and its
    # children inherit that (Python leaves an ignored SIGINT ignored). SIGUSR1 makes it print every
    # thread's stack: what it waits on, should it not stop in time.
    run = ("import faulthandler, runpy, signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
           "faulthandler.register(signal.SIGUSR1, all_threads=True); runpy.run_module('hubpub', run_name='__main__')")
    p = subprocess.Popen([sys.executable, "-c", run, *args], cwd=tmp_path, stderr=subprocess.PIPE, text=True,
                         env={**os.environ, "HUBPUB_DISABLE_PROGRESS": "1", "HUBPUB_CACHE": str(tmp_path / "cache")},
                         start_new_session=True)
    lines = []
    reader = threading.Thread(target=lambda: lines.extend(p.stderr), daemon=True)
    reader.start()
    assert file_server.holding.wait(timeout=120), "".join(lines)
    assert p.poll() is None, "".join(lines)
    sent = time.monotonic()
    os.killpg(p.pid, signal.SIGINT)  # as a terminal's Ctrl-C: the whole process group
    try:
        code = p.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.kill(p.pid, signal.SIGUSR1)
        time.sleep(3)
        os.killpg(p.pid, signal.SIGKILL)
        reader.join(timeout=5)
        pytest.fail(f"still running 60 s after Ctrl-C; its threads then:\n{''.join(lines)}")
    assert code == 130, "".join(lines)
    assert time.monotonic() - sent < 40, "".join(lines)  # the tasks see the cancel within a second or two
    reader.join(timeout=5)
    said = [line for line in lines if "error" in line.lower() or "Traceback" in line or "WARNING" in line]
    assert said == ["error: interrupted; finished files are kept, rerun the command to go on\n"]
    assert not list(out.rglob("*tmp")) and not (out / "reports" / "micro_1k_224.json").exists()
    # The half received stays in the cache for a resume, under its .part name only.
    assert [f.name for f in (tmp_path / "cache").rglob("*") if f.is_file()] == [f"{checkpoint.name}.part"]


def test_a_worker_that_runs_another_hubpub_version_is_refused_before_any_work(micro_manifest_path,
                                                                              micro_checkpoints, tmp_path):
    # A real other version: a copy of hubpub whose __version__ differs, first on the worker's PYTHONPATH.
    import shutil

    import hubpub

    other = tmp_path / "other"
    shutil.copytree(Path(hubpub.__file__).parent, other / "hubpub", ignore=shutil.ignore_patterns("__pycache__"))
    init = other / "hubpub" / "__init__.py"
    init.write_text(init.read_text().replace(f'"{hubpub.__version__}"', '"0.0.1"', 1))
    out = tmp_path / "dist"
    with _processes() as started:
        address = _scheduler(started, tmp_path)
        _worker(started, address, tmp_path, "other", env={"PYTHONPATH": str(other)})
        _wait_for_workers(address, {"other"})
        r = _hubpub("build-all", "--manifest", str(micro_manifest_path), "--out", str(out), "--only", "micro_1k_224",
                    "--checkpoint", f"micro_1k_224={micro_checkpoints['micro_1k_224']}", "--scheduler", address,
                    cwd=tmp_path)
    assert r.returncode == 1, r.stderr
    [line] = r.stderr.strip().splitlines()
    assert line.startswith("error: worker tcp://127.0.0.1:") and line.endswith(
        f"runs hubpub 0.0.1, this machine {hubpub.__version__}: install the same version on every worker"), line
    assert not out.exists() or not [p for p in out.rglob("*") if p.is_file()]


def test_a_scheduler_that_dies_mid_build_is_one_line_and_leaves_nothing_half_written(
        micro_checkpoints, micro_manifest_path, file_server, tmp_path):
    # The checkpoint's download is held half-way (as in the Ctrl-C test): the task is provably mid-build
    # when the scheduler is killed.
    checkpoint = micro_checkpoints["micro_1k_224"]
    (file_server.root / checkpoint.name).write_bytes(checkpoint.read_bytes())
    file_server.faults[f"/{checkpoint.name}"] = ("hold", checkpoint.stat().st_size // 2)
    out = tmp_path / "dist"
    with _processes() as started:
        address = _scheduler(started, tmp_path)
        scheduler = started[0]
        _worker(started, address, tmp_path, "a")
        _wait_for_workers(address, {"a"})
        p = subprocess.Popen([sys.executable, "-m", "hubpub", "-q", "build-all", "--manifest", str(micro_manifest_path),
                              "--out", str(out), "--no-parity", "--only", "micro_1k_224", "--checkpoint",
                              f"micro_1k_224={file_server.url}/{checkpoint.name}", "--scheduler", address],
                             cwd=tmp_path, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
                             env={**os.environ, "HUBPUB_DISABLE_PROGRESS": "1", "HUBPUB_CACHE": str(tmp_path / "c")},
                             start_new_session=True)
        started.append(p)
        assert file_server.holding.wait(timeout=120)
        os.killpg(scheduler.pid, signal.SIGKILL)
        try:
            code = p.wait(timeout=120)
        except subprocess.TimeoutExpired:
            pytest.fail("build-all still running 120 s after its scheduler died")
        err = p.stderr.read()
    assert code == 1, err
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert lines == [f"error: lost the Dask scheduler at {address} mid-build; finished files are kept, rerun the "
                     "command once it is back"], err
    assert not list(out.rglob("*tmp")) and not (out / "reports" / "micro_1k_224.json").exists()
