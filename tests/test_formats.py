"""The format seam (`hubpub.formats`) and ONNX through it: exported from the `.keras` file, checked in
onnxruntime, recorded, reproducible to the byte, left out with one line when its extra is missing, and
run downstream by `hubpub verify` as its users run it."""

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from hubpub import tolerances
from hubpub.layout import Dist
from hubpub.record import KerasFile, read_record
from tests.conftest import copy_built

pytest.importorskip("onnxscript")
pytest.importorskip("torch")
pytest.importorskip("onnxruntime")


def test_onnx_is_built_checked_and_recorded(micro_dist):
    import onnx

    from hubpub.formats.onnx import run

    record = read_record(Dist(micro_dist).report("micro_1k_224"))
    [f] = record.formats
    assert (f.format, f.path, f.tolerance) == ("onnx", "onnx/micro_1k_224.onnx", tolerances.ONNX)
    assert 0 <= f.max_abs <= f.tolerance
    data = (micro_dist / f.path).read_bytes()
    assert hashlib.sha256(data).hexdigest() == f.sha256 and len(data) == f.size
    assert (micro_dist / "onnx/micro_1k_224.onnx.sha256").read_text() == f"{f.sha256}  micro_1k_224.onnx\n"
    model = onnx.load_from_string(data)
    onnx.checker.check_model(model)
    [inp], [out] = model.graph.input, model.graph.output
    assert (inp.name, out.name) == ("images", "logits")  # the SavedModel's signature names
    assert [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim] == ["batch", "height", "width", 3]
    assert [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")] == [18]
    assert not any(n.metadata_props or n.doc_string for n in model.graph.node)  # nothing of the process
    assert all(i.data_location != onnx.TensorProto.EXTERNAL for i in model.graph.initializer)  # small: one file

    # Another batch and a size the build did not check, against the SavedModel itself.
    import tensorflow as tf

    serving = tf.saved_model.load(str(micro_dist / "saved_models/micro_1k_224")).signatures["serving_default"]
    images = np.random.default_rng(7).random((3, 72, 104, 3), dtype=np.float32)
    want = serving(images=tf.constant(images))["logits"].numpy()
    assert np.abs(run(data, images) - want).max() <= tolerances.ONNX


@pytest.fixture(scope="module")
def converter(micro_dist, tmp_path_factory):
    """One ONNX conversion process for this module's conversions, as a build has one for a variant's kinds:
    (the converter, micro_1k_224_fe's file as it converted it first). Started from another folder with
    another hash seed than the build's own conversion process, so that file is a check of the bytes too."""
    from hubpub.formats.onnx import Converter, saved_model_outputs

    folder = tmp_path_factory.mktemp("converter")
    with Converter() as converter:
        with pytest.MonkeyPatch.context() as patch:  # the process is started by its first request
            patch.setenv("PYTHONHASHSEED", "37")
            patch.chdir(folder)
            converter.convert(micro_dist / "keras/micro_1k_224_fe.keras",
                              saved_model_outputs(micro_dist / "saved_models/micro_1k_224_fe", None), folder,
                              "model.onnx_data")
        yield converter, folder / "model.onnx"


def test_onnx_bytes_do_not_depend_on_the_process(micro_dist, converter):
    """Another process, hashed otherwise, started from another folder: the same bytes as the build's."""
    _, again = converter
    assert again.read_bytes() == (micro_dist / "onnx/micro_1k_224_fe.onnx").read_bytes()


def test_a_model_too_large_to_convert_gets_no_onnx_file_and_a_reason(monkeypatch):
    from hubpub.formats import FormatJob, onnx

    def wanted(parameters: int) -> str | None:
        return onnx.Onnx().wanted(FormatJob("big", Path("big"), Dist("dist"), np.zeros(1), np.zeros(1), parameters))

    # The machine's memory cannot be changed from a test: `physical_memory` is replaced to say 8 and 24 GiB.
    monkeypatch.setattr(onnx, "physical_memory", lambda: 8 * 2**30)
    assert wanted(650_000_000) == (  # ConvNeXt V2 huge
        "converting it would take about 11 GiB of memory (about 4 copies of its 2.42 GiB of weights); this "
        "machine has 8 GiB")
    monkeypatch.setattr(onnx, "physical_memory", lambda: 24 * 2**30)
    assert wanted(650_000_000) is None and wanted(350_000_000) is None


def test_large_conversions_take_turns_and_one_off_tolerance_writes_nothing(micro_dist, converter, monkeypatch,
                                                                          caplog, tmp_path):
    """`build-all --jobs N` runs N builds at once; a conversion that would take over a quarter of the memory
    waits for another such one. The machine's memory cannot be changed from a test: it is made to say 64 MiB,
    so the micro model's conversion counts as large; the other conversion is this test holding the lock.
    The conversion that waited then meets a real disagreement (the SavedModel's outputs shifted, no mock):
    one line, no file."""
    import fcntl
    import logging
    import tempfile
    import threading
    import time

    import tensorflow as tf

    from hubpub.formats import FormatError, FormatJob, onnx
    from hubpub.parity import reference_images

    saved = micro_dist / "saved_models/micro_1k_224_fe"
    images = reference_images(64, 64, 2, 0)
    outputs = tf.saved_model.load(str(saved)).signatures["serving_default"](images=tf.constant(images))
    expected = next(iter(outputs.values())).numpy()
    dist = Dist(tmp_path / "dist")
    keras_file = copy_built(micro_dist, dist.root, saved_models=False) and dist.keras("micro_1k_224_fe")
    shutil.rmtree(dist.root / "onnx")
    job = FormatJob("micro_1k_224_fe", saved, dist, images, expected + 0.01, 1443,
                    made={"keras": (KerasFile(dist.relative(keras_file), "", 0, 0.0),)}, session=converter[0])
    monkeypatch.setattr(onnx, "physical_memory", lambda: 64 * 2**20)
    done: list = []

    def convert() -> None:
        try:
            onnx.Onnx().build(job)
        except FormatError as e:
            done.append(e)

    with open(Path(tempfile.gettempdir()) / "hubpub-onnx-conversion.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        with caplog.at_level(logging.INFO, logger="hubpub.formats.onnx"):
            worker = threading.Thread(target=convert)
            worker.start()
            deadline = time.time() + 60
            while "waiting for another ONNX conversion on this machine" not in caplog.text:
                assert time.time() < deadline, "the conversion did not wait for the lock"
                time.sleep(0.05)
            time.sleep(0.5)
            assert not done and worker.is_alive()  # still waiting
        fcntl.flock(lock, fcntl.LOCK_UN)
    worker.join(timeout=180)
    [error] = done
    assert re.match(r"^micro_1k_224_fe: the ONNX file differs from the SavedModel by 1\.0\de-02 \(tolerance "
                    r"0\.0001\)$", str(error)), error
    assert not (dist.root / "onnx").exists()


def _cli(*args):
    from click.testing import CliRunner

    from hubpub.cli import cli

    return CliRunner().invoke(cli, [str(a) for a in args], prog_name="hubpub")


def test_verify_runs_an_onnx_file_by_path_and_by_url(micro_dist, tmp_path, file_server):
    dist = copy_built(micro_dist, tmp_path / "dist", saved_models=False)
    onnx_file = dist / "onnx/micro_1k_224.onnx"
    out = _cli("verify", onnx_file, "--report", dist / "reports/micro_1k_224.json")
    assert out.exit_code == 0, out.output
    assert out.output.startswith(f"{onnx_file}: loads with onnxruntime; outputs match the build (max |Δ| ")

    published = file_server.root / "micro/micro_1k_224/1.onnx"  # as a bucket or directory holds it
    published.parent.mkdir(parents=True)
    published.write_bytes(onnx_file.read_bytes())
    url = f"{file_server.url}/micro/micro_1k_224/1.onnx"
    out = _cli("verify", url, "--report", dist / "reports/micro_1k_224.json")
    assert out.exit_code == 0 and "loads with onnxruntime" in out.output, out.output

    # The feature extractor's record for the classifier's file: the outputs say so.
    out = _cli("verify", onnx_file, "--report", dist / "reports/micro_1k_224_fe.json")
    assert out.exit_code == 1 and out.stderr == (f"error: {onnx_file}: output width 1000 != recorded "
                                                 f"{read_record(dist / 'reports/micro_1k_224_fe.json').output.dim}\n")
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(onnx_file.read_bytes()[:5000])
    out = _cli("verify", broken, "--report", dist / "reports/micro_1k_224.json")
    assert out.exit_code == 1 and out.stderr.startswith(f"error: {broken}: not an ONNX file: DecodeError: ")
    assert out.stderr.count("\n") == 1 and "Traceback" not in out.output
    out = _cli("verify", onnx_file, "--fine-tune", "--report", dist / "reports/micro_1k_224.json")
    assert out.exit_code == 2 and "--fine-tune trains a SavedModel or a .keras file, not ONNX" in out.stderr


def test_published_to_a_directory_beside_the_tarball(micro_manifest_path, micro_dist, tmp_path):
    dist = copy_built(micro_dist, tmp_path / "dist", saved_models=False)
    common = ["--manifest", micro_manifest_path, "--dist", dist]
    assert _cli("docs", *common).exit_code == 0
    dest = tmp_path / "published"
    out = _cli("publish", *common, "--dest", dest, "--public-url", "http://127.0.0.1:9/bucket/micro", "--no-verify")
    assert out.exit_code == 0, out.output
    for artifact in ("micro_1k_224", "micro_1k_224_fe"):
        data = (dest / artifact / "1.onnx").read_bytes()
        assert data == (dist / f"onnx/{artifact}.onnx").read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        assert (dest / artifact / "1.onnx.sha256").read_text() == f"{digest}  1.onnx\n"
    doc = (dist / "docs/assets/docs/testpub/models/micro_1k_224/1.md").read_text()
    assert "[ONNX](http://127.0.0.1:9/bucket/micro/micro_1k_224/1.onnx)" in doc


BLOCKED = r"""
import sys
for name in sys.argv[1].split(","):
    sys.modules[name] = None  # as if never installed: importlib.util.find_spec answers None
from hubpub.cli import main
sys.argv = ["hubpub", *sys.argv[2:]]
main()
"""


def test_without_an_extra_its_format_is_left_out_with_one_line(micro_manifest_path, micro_checkpoints, tmp_path):
    """A process where the onnx and kaggle extras' modules cannot be imported (a core-only install, as far
    as hubpub can tell): the build goes on without ONNX and says which extra to install; `--no-onnx` says
    it was meant; publishing to Kaggle is one error line naming the install command."""
    blocked = "onnxscript,onnx,onnxruntime,kagglehub,kagglesdk"

    def hubpub(*args):
        return subprocess.run([sys.executable, "-c", BLOCKED, blocked, *map(str, args)], capture_output=True,
                              text=True, timeout=600, cwd=tmp_path)

    manifest = tmp_path / "collection.yaml"  # every format wanted, as a user's manifest would
    manifest.write_text(micro_manifest_path.read_text().replace("formats: {onnx: false}\n", ""))
    common = ["--manifest", manifest]
    build = hubpub("build", "micro_1k_224", *common, "--checkpoint", micro_checkpoints["micro_1k_224"],
                   "--kinds", "feature-extractor", "--no-parity", "--no-litert", "--out", tmp_path / "dist")
    assert build.returncode == 0, build.stderr[-3000:]
    assert 'warning: no ONNX files: its libraries are not installed (pip install "hubpub[onnx]", or --no-onnx ' \
           "to say so)" in build.stderr
    assert not (tmp_path / "dist/onnx").exists()
    assert read_record(tmp_path / "dist/reports/micro_1k_224_fe.json").formats == ()
    # build-all after `build`: up to date (build's records carry build-all's key; the parent decides, no
    # TensorFlow), with the same format options
    again = hubpub("build-all", *common, "--only", "micro_1k_224", "--checkpoint",
                   f"micro_1k_224={micro_checkpoints['micro_1k_224']}", "--kinds", "feature-extractor", "--no-parity",
                   "--no-litert", "--no-onnx", "--out", tmp_path / "dist")
    assert again.returncode == 0 and "ONNX" not in again.stderr, again.stderr[-3000:]
    assert "micro_1k_224_fe  up to date" in again.stdout, again.stdout
    publish = hubpub("publish", *common, "--dist", tmp_path / "dist", "--dest", "kaggle://testpub/micro-models")
    assert publish.returncode == 1
    assert publish.stderr.splitlines()[-1] == (
        'error: publishing to Kaggle Models needs hubpub\'s kaggle extra (kagglehub, kagglesdk not installed): '
        'pip install "hubpub[kaggle]"'), publish.stderr
    assert json.loads((tmp_path / "dist/reports/micro_1k_224_fe.json").read_text())["schema_version"] >= 5


def test_a_conversion_that_fails_is_one_line(micro_dist, tmp_path):
    from hubpub.formats import FormatError
    from hubpub.formats.onnx import converted

    (tmp_path / "not.keras").write_bytes(b"not a zip")
    with pytest.raises(FormatError, match=r"not\.keras: not a \.keras file") as info:
        converted(tmp_path / "not.keras", micro_dist / "saved_models/micro_1k_224", tmp_path)
    assert "\n" not in str(info.value)


@pytest.fixture(scope="module")
def external(micro_dist, converter, tmp_path_factory):
    """micro_1k_224's ONNX file built again with the threshold lowered below its weights, into a copy of
    micro_dist whose record has it: (dist, its FormatFile, the job). One conversion for the tests of
    external data."""
    from hubpub.formats import FormatJob, onnx
    from hubpub.parity import reference_images
    from hubpub.record import write_record

    dist = Dist(tmp_path_factory.mktemp("external") / "dist")
    copy_built(micro_dist, dist.root, saved_models=False)
    shutil.rmtree(dist.root / "onnx")
    record = read_record(dist.report("micro_1k_224"))
    images = reference_images(64, 64, 2, 0)
    job = FormatJob("micro_1k_224", micro_dist / "saved_models/micro_1k_224", dist, images,
                    onnx.run(micro_dist / "onnx/micro_1k_224.onnx", images), record.parameters,
                    made={"keras": (record.keras,)}, session=converter[0])
    threshold, onnx.EXTERNAL_DATA_BYTES = onnx.EXTERNAL_DATA_BYTES, 1024
    try:
        [f] = onnx.Onnx().build(job)
    finally:
        onnx.EXTERNAL_DATA_BYTES = threshold
    shutil.copyfile(micro_dist / "onnx/micro_1k_224_fe.onnx", dist.root / "onnx/micro_1k_224_fe.onnx")
    shutil.copyfile(micro_dist / "onnx/micro_1k_224_fe.onnx.sha256", dist.root / "onnx/micro_1k_224_fe.onnx.sha256")
    write_record(dist.report("micro_1k_224"), record.replace(formats=(f,)))
    return dist, f, job


def test_weights_over_the_threshold_go_to_external_data_as_one_artifact(external, tmp_path):
    """The threshold lowered below the micro model's weights: `<artifact>.onnx` plus its external data,
    each hashed, recorded as one entry, published side by side, and loaded in onnxruntime in a fresh
    process started in another folder."""
    from hubpub.formats import onnx

    dist, f, job = external
    record = read_record(dist.report("micro_1k_224"))
    images = job.inputs
    assert f.path == "onnx/micro_1k_224.onnx" and f.data.path == "onnx/micro_1k_224-v1.onnx_data"
    for entry in (f, f.data):
        data = (dist.root / entry.path).read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry.sha256 and len(data) == entry.size
        assert (dist.root / (entry.path + ".sha256")).read_text() == f"{entry.sha256}  {Path(entry.path).name}\n"
    assert f.data.size > 10 * f.size  # the weights are beside the graph
    assert record.artifact_files()[-2:] == (f.path, f.data.path)  # hashed, signed
    artifact = type("A", (), {"name": "micro_1k_224", "object_name": lambda self, s: f"micro_1k_224/1{s}"})()
    objects = [o for _, o in onnx.Onnx().objects(artifact, record.replace(formats=(f,)), dist)]
    assert objects == ["micro_1k_224/1.onnx", "micro_1k_224/1.onnx.sha256", "micro_1k_224/micro_1k_224-v1.onnx_data",
                       "micro_1k_224/micro_1k_224-v1.onnx_data.sha256"]
    published = tmp_path / "published"  # as a bucket holds them: the graph renamed, its data beside it
    (published / "micro_1k_224").mkdir(parents=True)
    for path, obj in onnx.Onnx().objects(artifact, record.replace(formats=(f,)), dist):
        shutil.copyfile(path, published / obj)
    code = ("import sys, numpy as np, onnxruntime as ort; s = ort.InferenceSession(sys.argv[1]); "
            "x = np.load(sys.argv[2]); print(np.abs(s.run(None, {'images': x})[0] - np.load(sys.argv[3])).max())")
    np.save(tmp_path / "x.npy", images)
    np.save(tmp_path / "y.npy", job.expected)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    child = subprocess.run([sys.executable, "-c", code, str(published / "micro_1k_224/1.onnx"), str(tmp_path / "x.npy"),
                            str(tmp_path / "y.npy")], cwd=elsewhere, capture_output=True, text=True, timeout=120)
    assert child.returncode == 0, child.stderr[-2000:]
    assert float(child.stdout) <= tolerances.ONNX


def test_external_data_outside_its_folder_or_missing_is_refused_before_loading(micro_dist, tmp_path):
    """A crafted file (its tensors' location rewritten, as anyone can): `verify` says one line and
    onnxruntime never opens the location."""
    import onnx
    from onnx.external_data_helper import convert_model_to_external_data

    model = onnx.load(str(micro_dist / "onnx/micro_1k_224.onnx"))
    convert_model_to_external_data(model, location="weights.bin", size_threshold=1024)
    onnx.save(model, str(tmp_path / "good.onnx"))
    report = micro_dist / "reports/micro_1k_224.json"
    assert _cli("verify", tmp_path / "good.onnx", "--report", report).exit_code == 0
    for name, location, said in (("escape", "../../etc/passwd", "reads external data from '../../etc/passwd', "
                                  "outside the file's folder: refused"),
                                 ("absolute", "/etc/passwd", "outside the file's folder: refused"),
                                 ("missing", "gone.bin", "its external data gone.bin is missing beside it")):
        crafted = onnx.load(str(tmp_path / "good.onnx"), load_external_data=False)
        for tensor in crafted.graph.initializer:
            for entry in tensor.external_data:
                if entry.key == "location":
                    entry.value = location
        path = tmp_path / f"{name}.onnx"
        onnx.save(crafted, str(path))
        out = _cli("verify", path, "--report", report)
        assert out.exit_code == 1, (name, out.output)
        assert out.stderr.startswith(f"error: {path}: ")
        assert said in out.stderr and out.stderr.count("\n") == 1, (name, out.stderr)


def test_an_interrupted_caller_ends_its_converter_child(tmp_path):
    """A real child (a sleeping Python) run as the converters run theirs, from a thread beside the one
    interrupted (as ONNX's conversion beside the build's main thread): `end_children` ends it at once, and
    the caller's temp folder goes with its context."""
    import tempfile
    import threading
    import time

    from hubpub._files import end_children, run_child

    results, folders = [], []

    def convert():
        with tempfile.TemporaryDirectory(prefix="hubpub-onnx-", dir=tmp_path) as tmp:
            folders.append(tmp)
            results.append(run_child([sys.executable, "-c", "import time; time.sleep(60)"]))

    worker = threading.Thread(target=convert)
    start = time.time()
    worker.start()
    while not folders:
        time.sleep(0.05)
    time.sleep(0.5)
    end_children()
    worker.join(timeout=10)
    assert not worker.is_alive() and time.time() - start < 10
    assert results[0].returncode < 0  # ended by a signal: the format says "killed"
    assert not Path(folders[0]).exists()


@pytest.mark.parametrize("command", ["build", "build-all"])
def test_ctrl_c_during_litert_leaves_no_temp_folder_and_no_process(micro_manifest_path, micro_checkpoints, tmp_path,
                                                                   command):
    """A real Ctrl-C (SIGINT to the process group, as a terminal sends it) of a micro build once its LiteRT
    conversions have their temp folder: exit 130, one line, no temp file anywhere (`hubpub-*` in the temp
    folder, `.keras-check-*` and other temp names in the dist) and no process of the run left (build-all's
    worker is stopped by its parent, not by the SIGINT). The temp folder is deep, as a CI runner's or an
    xdist worker's can be: build-all's helper processes must not depend on its path's length."""
    import signal
    import threading

    import yaml

    from tests.test_bad_input import _micro_args, processes_of_run

    settings = yaml.safe_load(micro_manifest_path.read_text())
    settings["litert"] = {**settings["litert"], "max_parameters": 30_000_000,
                          "formats": ["float32", "float16", "dynamic_int8", "int8"]}
    manifest = tmp_path / "collection.yaml"
    manifest.write_text(yaml.safe_dump(settings, sort_keys=False))
    temp = tmp_path / ("deep-" * 12) / ("temp-" * 12)  # > 100 bytes: more than a socket's path may hold
    temp.mkdir(parents=True)
    dist = tmp_path / "dist"
    args = _micro_args(command, manifest, micro_checkpoints["micro_1k_224"], dist)
    env = {**os.environ, "HUBPUB_DISABLE_PROGRESS": "1", "PYTHONUNBUFFERED": "1", "HUBPUB_TEST_RUN": str(tmp_path),
           "TMPDIR": str(temp)}
    proc = subprocess.Popen([sys.executable, "-m", "hubpub", *args, "--kinds", "feature-extractor"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    lines: list[str] = []
    reader = threading.Thread(target=lambda: [lines.append(line) for line in proc.stderr], daemon=True)
    reader.start()
    deadline = time.time() + 240
    # the stage has begun and the conversions' input is written
    while not (any("micro_1k_224_fe: litert" in line for line in lines)
               and list(temp.glob("hubpub-litert-*/fixed/saved_model.pb"))):
        assert time.time() < deadline and proc.poll() is None, ("no LiteRT temp folder", proc.poll(), "".join(lines))
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGINT)
    proc.wait(timeout=120)
    reader.join(timeout=30)
    err = "".join(lines)
    assert proc.returncode == 130, err
    assert err.splitlines()[-1] == "error: interrupted; finished files are kept, rerun the command to go on", err
    assert "Traceback" not in err and "Exception ignored" not in err, err
    time.sleep(0.5)
    assert not processes_of_run(tmp_path), "processes of the interrupted run left running"
    assert not [p.name for p in temp.iterdir() if p.name.startswith("hubpub-")]
    assert not [p for p in dist.rglob("*") if p.name.startswith(".") and p.name not in (".stages", ".hubpub.lock")]


@pytest.fixture(scope="module")
def external_published(external, micro_manifest_path, tmp_path_factory) -> Path:
    """The collection of `external` (docs rendered) published to a directory: what a bucket would hold."""
    dist = external[0].root
    common = ["--manifest", micro_manifest_path, "--dist", dist]
    assert _cli("docs", *common).exit_code == 0
    dest = tmp_path_factory.mktemp("external_published") / "published"
    out = _cli("publish", *common, "--dest", dest, "--public-url", "http://127.0.0.1:9/bucket/micro", "--no-verify")
    assert out.exit_code == 0, out.output
    return dest


def test_verify_of_an_onnx_url_downloads_its_external_data_beside_it(external, external_published, file_server):
    """`hubpub verify <URL>.onnx` served from a published directory: the data file the graph names comes
    from beside the URL and is checked against its published `.sha256`; a location outside the folder is
    refused before anything else is requested."""
    import onnx

    dist, f, _ = external
    shutil.copytree(external_published / "micro_1k_224", file_server.root / "micro_1k_224")
    report = dist.report("micro_1k_224")
    url = f"{file_server.url}/micro_1k_224/1.onnx"
    out = _cli("verify", url, "--report", report)
    assert out.exit_code == 0 and out.output.startswith(f"{url}: loads with onnxruntime"), out.output
    data_name = Path(f.data.path).name
    assert ("/micro_1k_224/" + data_name, None) in file_server.requests

    served = file_server.root / "micro_1k_224" / data_name
    good = served.read_bytes()
    served.write_bytes(good[:-4] + b"\0\0\0\1")  # other bytes than published: its .sha256 says so
    out = _cli("verify", url, "--report", report)
    assert out.exit_code == 1 and out.stderr.startswith(f"error: {url}: {data_name}: sha256 "), out.stderr
    assert f"differs from its published {data_name}.sha256 ({f.data.sha256})" in out.stderr
    (file_server.root / "micro_1k_224" / (data_name + ".sha256")).unlink()  # none published: run as it is
    served.write_bytes(good)
    assert _cli("verify", url, "--report", report).exit_code == 0
    served.unlink()
    out = _cli("verify", url, "--report", report)
    assert out.exit_code == 1 and out.stderr == (f"error: {url}: {data_name}: HTTP 404 Not Found (a file it reads, "
                                                 "beside it)\n"), out.stderr

    crafted = onnx.load(str(external_published / "micro_1k_224/1.onnx"), load_external_data=False)
    for tensor in crafted.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = "../secret.bin"
    onnx.save(crafted, str(file_server.root / "micro_1k_224/crafted.onnx"))
    (file_server.root / "secret.bin").write_bytes(good)
    file_server.requests.clear()
    crafted_url = f"{file_server.url}/micro_1k_224/crafted.onnx"
    out = _cli("verify", crafted_url, "--report", report)
    assert out.exit_code == 1 and "reads external data from '../secret.bin', outside the file's folder: refused" \
        in out.stderr and out.stderr.count("\n") == 1, out.stderr
    assert [path for path, _ in file_server.requests] == ["/micro_1k_224/crafted.onnx"]


def test_audit_load_runs_an_onnx_file_with_its_external_data(external_published):
    """`hubpub audit DEST --load` loads the classifier's ONNX file with its data file beside it, as users do."""
    from hubpub.audit import audit
    from hubpub.destinations import parse

    result = audit(parse(str(external_published)), load=True)
    onnx_problems = [p for p in result.problems if ".onnx" in p.file]
    assert not onnx_problems, onnx_problems
    assert "micro_1k_224/1.onnx" in result.loaded and "micro_1k_224_fe/1.onnx" in result.loaded, result.loaded


def test_the_model_doc_names_the_external_data_file(external, external_published):
    """The doc of a model whose ONNX weights are beside the graph says to download both, and its code does."""
    _, f, _ = external
    doc = (external_published / "docs/assets/docs/testpub/models/micro_1k_224/1.md").read_text()
    name, url = Path(f.data.path).name, f"http://127.0.0.1:9/bucket/micro/micro_1k_224/{Path(f.data.path).name}"
    assert f"Its weights are in a second file, [`{name}`]({url})\n({f.data.size / 2**20:.1f} MiB, SHA-256 " \
           f"`{f.data.sha256}`), which the `.onnx` file reads from its own folder under\nthat name: download both " \
           "files and keep them in one folder." in doc, doc
    assert f'urllib.request.urlretrieve("{url}", "{name}")  # its weights, read from beside it\n' in doc
    fe = (external_published / "docs/assets/docs/testpub/models/micro_1k_224_fe/1.md").read_text()  # one file
    assert "second file" not in fe and ".onnx_data" not in fe
