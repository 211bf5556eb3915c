"""build-all: incremental, failures isolated, shards, resumable after kill -9, lock file; the demo."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from hubpub import tolerances
from hubpub.errors import PackageError
from hubpub.manifest import parse_manifest
from hubpub.package import check_tarball
from hubpub.pipeline import build_all, select_shard, worker_threads
from tests.conftest import copy_built


def test_build_all_then_incremental(micro_manifest, micro_checkpoints, micro_pair, tmp_path):
    """The shared build-all of two variants (`micro_pair`, `--jobs 2`), then on a copy of it: a rerun that
    does no model work, and `--force` of one artifact."""
    rows = {r["artifact"]: r for r in micro_pair.summary["artifacts"]}
    assert sorted(rows) == ["micro_1k_224", "micro_1k_224_fe", "micro_iso_1k_224", "micro_iso_1k_224_fe"]
    assert {r["status"] for r in rows.values()} == {"built"}
    assert all(r["parity_max_abs"] <= tolerances.PARITY for r in rows.values())
    events = micro_pair.events
    assert ("micro_1k_224_fe", "pack") in events and ("micro_iso_1k_224", "done") in events
    assert not [e for e in events if e[1] == "onnx"] and not list((micro_pair.dist / "onnx").glob("*"))  # onnx: false
    assert micro_pair.summary["failed"] == []
    assert (micro_pair.summary["jobs"], micro_pair.summary["threads_per_worker"]) == (2, worker_threads(2))

    dist, lock = tmp_path / "dist", tmp_path / "lock"
    shutil.copytree(micro_pair.dist, dist)  # copy2: the files' times come along
    ckpts = {n: str(micro_checkpoints[n]) for n in rows if not n.endswith("_fe")}
    mtimes = {p: p.stat().st_mtime_ns for p in (dist / "tars").iterdir()}
    only = tuple(ckpts)
    again = build_all(micro_manifest, dist, only=only, checkpoints=ckpts, lock_path=lock)
    assert {r.status for r in again.artifacts} == {"up to date"}
    assert {p: p.stat().st_mtime_ns for p in (dist / "tars").iterdir()} == mtimes  # no model work

    forced = build_all(micro_manifest, dist, only=("micro_iso_1k_224",), kinds=("feature-extractor",),
                       checkpoints=ckpts, force=True, lock_path=lock, parity=False)
    assert [(r.artifact, r.status) for r in forced.artifacts] == [("micro_iso_1k_224_fe", "built")]


def test_workers_share_the_cpus(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)))
    assert worker_threads(1) is None  # one worker: the libraries' own default, every CPU
    assert [worker_threads(n) for n in (2, 3, 8, 64)] == [4, 2, 1, 1]


def test_shards_are_disjoint_deterministic_and_complete(root):
    from hubpub.manifest import load_manifest

    variants = list(load_manifest(root / "collection.yaml").variants)
    shards = [select_shard(variants, (k, 5)) for k in range(1, 6)]
    names = [v.name for s in shards for v in s]
    assert sorted(names) == sorted(v.name for v in variants) and len(names) == len(set(names))
    assert [v.name for v in select_shard(variants, (2, 5))] == [v.name for v in shards[1]]


def test_lock_file_records_and_then_enforces_the_checkpoint_hash(micro_manifest_path, micro_checkpoints,
                                                                  file_server, tmp_path):
    import shutil

    shutil.copy(micro_checkpoints["micro_iso_1k_224"], file_server.root / "micro_iso_1k_224.safetensors")
    text = micro_manifest_path.read_text().replace(
        "http://127.0.0.1:9/micro_iso_1k_224.pth", f"{file_server.url}/micro_iso_1k_224.safetensors")
    manifest = parse_manifest(text, tmp_path / "collection.yaml")
    (tmp_path / "collection.yaml").write_text(text)
    os.environ["HUBPUB_CACHE"] = str(tmp_path / "cache")
    try:
        first = build_all(manifest, tmp_path / "dist", only=("micro_iso_1k_224",), kinds=("feature-extractor",),
                          parity=False)
        assert not first.failed
        lock = (tmp_path / "collection.lock").read_text()
        assert "micro_iso_1k_224" in lock and "sha256:" in lock
        # From here the server serves other bytes under the same URL. With a fresh cache, what is built from
        # the pinned bytes is up to date without a download; a rebuild must download, and notice.
        shutil.copy(micro_checkpoints["micro_1k_224"], file_server.root / "micro_iso_1k_224.safetensors")
        os.environ["HUBPUB_CACHE"] = str(tmp_path / "cache2")
        file_server.requests.clear()
        again = build_all(manifest, tmp_path / "dist", only=("micro_iso_1k_224",), kinds=("feature-extractor",),
                          parity=False)
        assert [r.status for r in again.artifacts] == ["up to date"] and not file_server.requests
        second = build_all(manifest, tmp_path / "dist", only=("micro_iso_1k_224",), kinds=("feature-extractor",),
                           parity=False, force=True)
        assert second.failed == ["micro_iso_1k_224"]
        assert "sha256 mismatch: expected" in second.artifacts[0].error
    finally:
        del os.environ["HUBPUB_CACHE"]


def _cli(*args, **kw):
    return subprocess.Popen([sys.executable, "-m", "hubpub", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True, **kw)


KILL_STAGES = ("port", "export", "micro_1k_224_fe: round-trip", "micro_1k_224_fe: pack")


def test_kill_9_at_each_stage_in_turn_then_rerun_finishes_valid(micro_manifest_path, micro_checkpoints, tmp_path):
    """A build killed at one stage, its rerun killed at the next, and so on (each run starts from what the
    last one left); after every kill what is under a final name is whole, and the last rerun finishes valid.
    One folder for the four kills: each rerun is also the check that the kill before it left a state a
    build goes on from (four separate folders cost three more full builds)."""
    args = ["build-all", "--manifest", str(micro_manifest_path), "--out", str(tmp_path / "dist"), "--only",
            "micro_1k_224", "--checkpoint", f"micro_1k_224={micro_checkpoints['micro_1k_224']}",
            "--no-parity"]  # parity writes nothing: five builds without PyTorch's import and reference
    env = {**os.environ, "HUBPUB_DISABLE_PROGRESS": "1", "PYTHONUNBUFFERED": "1"}
    dist = tmp_path / "dist"
    for stage in KILL_STAGES:
        proc = _cli(*args, env=env)
        deadline = time.time() + 180
        seen = []
        for line in proc.stderr:
            seen.append(line)
            if stage in line:
                if "pack" in stage:
                    time.sleep(0.05)  # inside the tar writing
                os.killpg(proc.pid, signal.SIGKILL)  # the parent and its worker
                break
            assert time.time() < deadline, seen
        proc.wait(30)
        assert proc.returncode == -signal.SIGKILL, f"not killed at {stage}: " + "".join(seen)
        checked = assert_complete_under_final_names(dist)
        if stage == "micro_1k_224_fe: pack":  # by then the SavedModels and one tarball are final: checked
            assert {"saved_models/micro_1k_224", "saved_models/micro_1k_224_fe", "tars/micro_1k_224.tar.gz"} <= checked

    rerun = _cli(*args, env=env)
    out, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err[-3000:]
    report = json.loads((dist / "build-report.json").read_text())
    assert not report["failed"]
    for name in ("micro_1k_224", "micro_1k_224_fe"):
        tar = dist / "tars" / f"{name}.tar.gz"
        check_tarball(tar)
        r = json.loads((dist / "reports" / f"{name}.json").read_text())
        assert (dist / "tars" / f"{name}.tar.gz.sha256").read_text().split()[0] == r["tarball"]["sha256"]
        import hashlib

        assert hashlib.sha256(tar.read_bytes()).hexdigest() == r["tarball"]["sha256"]
    assert not [p for p in dist.rglob(".*") if p.name.endswith("tmp")], "temp files left"


def assert_complete_under_final_names(dist) -> set[str]:
    """Everything a build left under a final name is whole (a kill -9 leaves only temp names half-written):
    each tarball reads to its end, each .sha256 names its file's hash, each SavedModel folder parses and has
    its variables. Returns what it checked, relative to `dist`."""
    import hashlib

    from tensorflow.core.protobuf import saved_model_pb2

    checked = set()
    for path in sorted((dist / "tars").iterdir()) if (dist / "tars").is_dir() else []:
        if path.name.startswith("."):
            continue
        if path.name.endswith(".tar.gz"):
            check_tarball(path)
        elif path.name.endswith(".sha256"):
            target = path.with_name(path.name.removesuffix(".sha256"))
            assert path.read_text().split()[0] == hashlib.sha256(target.read_bytes()).hexdigest(), path
        else:
            raise AssertionError(f"unexpected file {path}")
        checked.add(f"tars/{path.name}")
    for folder in sorted((dist / "saved_models").iterdir()) if (dist / "saved_models").is_dir() else []:
        if folder.name.startswith("."):
            continue
        saved_model_pb2.SavedModel.FromString((folder / "saved_model.pb").read_bytes())  # whole, or it fails
        assert (folder / "variables" / "variables.index").stat().st_size > 0, folder
        assert list((folder / "variables").glob("variables.data-*")), folder
        checked.add(f"saved_models/{folder.name}")
    return checked


def test_the_completeness_check_finds_a_half_written_file(micro_dist, tmp_path):
    dist = tmp_path / "dist"
    shutil.copytree(micro_dist / "tars", dist / "tars")
    shutil.copytree(micro_dist / "saved_models", dist / "saved_models")
    assert len(assert_complete_under_final_names(dist)) == 6
    pb = dist / "saved_models" / "micro_1k_224" / "saved_model.pb"
    pb.write_bytes(pb.read_bytes()[: pb.stat().st_size // 2])
    with pytest.raises(Exception, match="(?i)error parsing|truncated|decode"):
        assert_complete_under_final_names(dist)


def test_truncated_tarball_is_never_under_a_final_name(tmp_path):
    bad = tmp_path / "x.tar.gz"
    bad.write_bytes(b"\x1f\x8b\x08\x00" + b"\0" * 20)
    with pytest.raises(PackageError, match="not a valid gzip stream .* refused before extracting"):
        check_tarball(bad)


def test_one_failure_does_not_stop_the_others_and_sets_the_exit_code(micro_manifest_path, micro_checkpoints,
                                                                      tmp_path):
    iso = str(micro_checkpoints["micro_iso_1k_224"])
    proc = _cli("build-all", "--manifest", str(micro_manifest_path), "--out", str(tmp_path), "--only", "micro_1k_224",
                "--only", "micro_iso_1k_224", "--kinds", "feature-extractor", "--no-parity",
                "--checkpoint", f"micro_1k_224={iso}",  # the wrong architecture
                "--checkpoint", f"micro_iso_1k_224={iso}")
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 1
    rows = {line.split()[0]: line.split()[1] for line in out.splitlines()[2:4]}
    assert rows == {"micro_1k_224_fe": "FAILED", "micro_iso_1k_224_fe": "built"}, out
    assert "Traceback" not in err
    assert "error: micro_1k_224: " in err and "checkpoint is isotropic depth 2 dim 32" in err
    assert err.splitlines()[-1] == "error: 1 variant(s) failed: micro_1k_224"
    assert (tmp_path / "tars" / "micro_iso_1k_224_fe.tar.gz").is_file()
    assert not list((tmp_path / "tars").glob("micro_1k_224*"))


NOOP_RERUN = """
import sys
from hubpub.cli.group import cli
code = cli.main(sys.argv[1:], prog_name="hubpub", standalone_mode=False)
print("code", code, "tensorflow" in sys.modules, "concurrent.futures.process" in sys.modules)
"""


def test_a_rerun_with_everything_up_to_date_spawns_no_worker_and_rewrites_nothing(micro_manifest_path,
                                                                                   micro_checkpoints, micro_pair,
                                                                                   tmp_path):
    """The parent decides what is up to date (records, stat-keyed checkpoint hashes): no worker process, no
    TensorFlow, and no file of dist/ written again, docs, notebooks and site included. It starts from a copy
    of the shared build (`micro_pair`): the first run here renders the docs, notebooks and site."""
    manifest = tmp_path / "collection.yaml"
    manifest.write_text(micro_manifest_path.read_text())
    shutil.copytree(micro_pair.dist, tmp_path / "dist")  # copy2: the files' times come along
    args = ["build-all", "--manifest", str(manifest), "--out", str(tmp_path / "dist"), "--only",
            "micro_iso_1k_224", "--checkpoint", f"micro_iso_1k_224={micro_checkpoints['micro_iso_1k_224']}"]
    env = {**os.environ, "HUBPUB_DISABLE_PROGRESS": "1", "HUBPUB_CACHE": str(tmp_path / "cache")}
    first = subprocess.run([sys.executable, "-c", NOOP_RERUN, *args], capture_output=True, text=True, env=env,
                           timeout=300)
    assert first.returncode == 0, first.stderr[-3000:]
    assert first.stdout.splitlines()[-1] == "code 0 False False", first.stdout  # the built copy is up to date
    files = {p: p.stat().st_mtime_ns for p in (tmp_path / "dist").rglob("*") if p.is_file()}
    assert any(p.suffix == ".md" for p in files) and any(p.suffix == ".ipynb" for p in files)
    rerun = subprocess.run([sys.executable, "-c", NOOP_RERUN, *args], capture_output=True, text=True, env=env,
                           timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert rerun.stdout.splitlines()[-1] == "code 0 False False"  # no TensorFlow, no process pool
    assert "micro_iso_1k_224_fe  up to date" in rerun.stdout
    now = {p: p.stat().st_mtime_ns for p in (tmp_path / "dist").rglob("*") if p.is_file()}
    # the report too: it said "up to date" already; the lock says which process holds it
    assert [p.name for p in now if now[p] != files[p] and p.name != ".hubpub.lock"] == []
    files = now
    # A checkpoint that changed (same size, new bytes, new mtime) is hashed again: a worker rebuilds.
    changed = tmp_path / "changed.safetensors"
    shutil.copy(micro_checkpoints["micro_iso_1k_224"], changed)
    again = subprocess.run([sys.executable, "-c", NOOP_RERUN, *args[:-1], f"micro_iso_1k_224={changed}"],
                           capture_output=True, text=True, env=env, timeout=300)
    assert again.stdout.splitlines()[-1] == "code 0 False False"  # a copy: other path and inode, same bytes
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "dist").rglob("*") if p.is_file()
            and p.name != ".hubpub.lock"} == {p: t for p, t in files.items() if p.name != ".hubpub.lock"}
    # A stage runs again when something it wrote was touched, or something it reads changed.
    (tmp_path / "dist/site/index.html").unlink()
    manifest.write_text(manifest.read_text().replace("Micro ConvNeXt models for tests.", "Micro models renamed here."))
    restored = subprocess.run([sys.executable, "-c", NOOP_RERUN, *args], capture_output=True, text=True, env=env,
                              timeout=300)
    assert restored.stdout.splitlines()[-1] == "code 0 False False", restored.stderr[-2000:]
    assert (tmp_path / "dist/site/index.html").is_file()
    collection_doc = next((tmp_path / "dist/docs").rglob("collections/*/1.md"))
    assert "Micro models renamed here." in collection_doc.read_text()
    data = bytearray(changed.read_bytes())
    data[-1] ^= 1  # the last byte of the last tensor's data
    changed.write_bytes(bytes(data))
    rebuilt = subprocess.run([sys.executable, "-c", NOOP_RERUN, *args[:-1], f"micro_iso_1k_224={changed}"],
                             capture_output=True, text=True, env=env, timeout=300)
    assert rebuilt.returncode == 0, rebuilt.stderr[-3000:]
    assert rebuilt.stdout.splitlines()[-1] == "code 0 False True" and "micro_iso_1k_224_fe  built" in rebuilt.stdout


def test_demo_end_to_end(demo_run, tmp_path, root):
    """`make demo`'s command: a random checkpoint in the official layout -> build-all -> docs -> publish ->
    hub.KerasLayer. A micro ConvNeXt by default, convnext_tiny as `make demo` builds it with HUBPUB_SLOW
    (the run: tests/conftest.py, shared with the notebook tests)."""
    from hubpub._files import sha256_file
    from hubpub.formats.litert import FORMATS as LITERT_FORMATS
    from hubpub.layout import Dist
    from hubpub.manifest import load_manifest

    manifest, name, env, dist = demo_run.manifest, demo_run.variant, demo_run.env, demo_run.dist
    handle = load_manifest(manifest).publisher.handle
    assert demo_run.returncode == 0, demo_run.stderr[-3000:]
    said = demo_run.stdout
    assert "retracing" not in said + demo_run.stderr  # TensorFlow's warnings are not the user's business
    assert "5. verified:" in said and "fine-tunes" in said
    assert "6. usage notebooks, executed against this build" in said
    assert "the collection site: open file://" in said
    from hubpub.demo import DEMO_PUBLIC_URL

    assert said.rstrip().endswith(f"then open {DEMO_PUBLIC_URL}/site/index.html"), said  # the served site's URL
    # LiteRT (under the default 30 M parameters): four files, checked, published, documented
    record = json.loads((dist / f"reports/{name}.json").read_text())
    lite = {f["format"]: f for f in record["litert"]}
    assert list(lite) == list(LITERT_FORMATS) == ["float32", "float16", "dynamic_int8", "int8"]
    assert lite["float32"]["max_abs"] <= tolerances.LITERT_FLOAT32 and lite["float32"]["cosine"] > 0.99999
    assert lite["int8"]["cosine"] >= 0.9
    assert lite["int8"]["size"] <= (0.3 if os.environ.get("HUBPUB_SLOW") else 0.6) * lite["float32"]["size"]
    assert lite["float16"]["size"] < 0.6 * lite["float32"]["size"]
    for f in lite.values():
        path = Dist(dist).litert(name, f["format"])
        assert dist / f["path"] == path and path.stat().st_size == f["size"] and sha256_file(path) == f["sha256"]
    assert [f["format"] for f in record["formats"]] == ["onnx"] and record["keras"]["sha256"]
    assert (dist / f"published/{name}/1.int8.tflite").is_file()
    assert (dist / f"docs/assets/docs/{handle}/models/{name}/int8/lite/1.md").is_file()
    assert (dist / f"published/site/models/{name}.html").is_file()
    from tests.test_site import dead_links

    assert dead_links(dist / "published/site") == []  # the demo's published site, downloads included
    assert dead_links(dist / "site") == []  # and the one the demo says to open, in dist/
    assert (dist / f"notebooks/localhost-8000/{name}.ipynb").is_file()
    assert not (root / "notebooks").exists(), "the demo wrote notebooks into the checkout"
    # Every doc's Colab link names a notebook of this build, executed (no "no outputs yet" warning).
    links = subprocess.run([sys.executable, "-m", "hubpub", "validate-docs", str(dist / "docs"),
                            "--manifest", str(manifest), "--notebooks",
                            str(dist / "notebooks")], capture_output=True, text=True, env=env, timeout=120)
    assert links.returncode == 0 and "2 Colab links open a notebook of their artifact" in links.stdout, links.stderr
    assert "warning" not in links.stderr, links.stderr
    doc = (dist / f"docs/assets/docs/{handle}/models/{name}/1.md").read_text()
    assert doc.splitlines()[1].startswith("DEMO BUILD WITH RANDOM WEIGHTS")
    assert (dist / f"published/{name}/1.tar.gz").is_file()
    assert json.loads((dist / "build-report.json").read_text())["failed"] == []
    assert f"http://localhost:8000/{name}/1.tar.gz" in doc

    # `hubpub eval` fills the doc's "ours" row; the demo runs again and updates the published doc in place
    # (in a copy: the run is shared).
    from hubpub.resources import photos

    shutil.copytree(dist, tmp_path / "dist", symlinks=True)
    env = {**env, "TFHUB_CACHE_DIR": str(tmp_path / "tfhub"), "HUBPUB_CACHE": str(tmp_path / "cache")}

    data = tmp_path / "photos"
    for i, photo in enumerate(photos()):
        (data / ["n01440764", "n01443537"][i % 2]).mkdir(parents=True, exist_ok=True)
        shutil.copy(photo, data / ["n01440764", "n01443537"][i % 2])
    ev = subprocess.run([sys.executable, "-m", "hubpub", "eval", name, "--data", str(data),
                         "--dist", str(tmp_path / "dist"), "--manifest", str(manifest)],
                        capture_output=True, text=True, env=env, timeout=600)
    assert ev.returncode == 0, ev.stderr[-3000:]
    again = subprocess.run([sys.executable, "-m", "hubpub", "demo", "--out", str(tmp_path / "dist"),
                            "--manifest", str(manifest), "--variant", name], capture_output=True, text=True,
                           env=env, timeout=900)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "published to" in again.stdout and "updated" in again.stdout and "5. verified:" in again.stdout
    doc = (tmp_path / f"dist/published/docs/assets/docs/{handle}/models/{name}/1.md").read_text()
    assert "(this artifact, hubpub eval)" in doc


def test_an_old_build_record_is_rebuilt_not_misread(micro_manifest, micro_dist, tmp_path):
    """A record of another schema version is never read: build-all rebuilds it, docs ask for a rebuild."""
    from hubpub.docs import render_docs
    from hubpub.errors import DocsError
    from hubpub.layout import Dist
    from hubpub.pipeline import up_to_date
    from hubpub.record import SCHEMA_VERSION

    dist = Dist(tmp_path / "dist")
    copy_built(micro_dist, dist.root)
    path = dist.report("micro_1k_224")
    record = json.loads(path.read_text())
    path.write_text(json.dumps({**record, "inputs_key": "k"}))
    assert up_to_date(dist, "micro_1k_224", "k").artifact == "micro_1k_224"
    path.write_text(json.dumps({**record, "inputs_key": "k", "schema_version": 1}))
    assert up_to_date(dist, "micro_1k_224", "k") is None
    with pytest.raises(DocsError, match=r"micro_1k_224\.json: not a build report of this hubpub \(schema 1, "
                                        rf"expected {SCHEMA_VERSION}\); rebuild the artifact"):
        render_docs(micro_manifest, dist=dist.root, out=dist.docs)
