"""The format seam (`hubpub.formats`) and ONNX through it: built from the SavedModel, checked in
onnxruntime, recorded, reproducible to the byte, left out with one line when its extra is missing, and
run downstream by `hubpub verify` as its users run it."""

import collections
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hubpub import tolerances
from hubpub.layout import Dist
from hubpub.record import read_record
from tests.conftest import copy_built

pytest.importorskip("tf2onnx")
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
    assert model.producer_name == "hubpub" and not model.graph.value_info
    # GELU and the layer norms over the last axis in the forms onnxruntime fuses (`onnx_fusions`): 5 blocks and
    # the head; the stem's and the 3 downsamples' norms run over channels in NCHW, which LayerNormalization
    # cannot say, and keep their op-by-op form (one Neg each)
    ops = collections.Counter(n.op_type for n in model.graph.node)
    assert (ops["LayerNormalization"], ops["Erf"], ops["Div"], ops["Neg"]) == (6, 5, 5, 4)

    # Another batch and a size the build did not check, against the SavedModel itself.
    import tensorflow as tf

    serving = tf.saved_model.load(str(micro_dist / "saved_models/micro_1k_224")).signatures["serving_default"]
    images = np.random.default_rng(7).random((3, 72, 104, 3), dtype=np.float32)
    want = serving(images=tf.constant(images))["logits"].numpy()
    assert np.abs(run(data, images) - want).max() <= tolerances.ONNX


def test_onnx_bytes_do_not_depend_on_the_process(micro_dist):
    """tf2onnx's optimisers walk sets of nodes ordered by address and string hashing and now and then leave
    another graph (three nodes more, about one run in twelve); hubpub converts in a child process made
    deterministic, and `canonical` orders and names what it leaves. From a process hashed otherwise: the
    same bytes as the build's."""
    code = ("import sys; from hubpub.formats.onnx import converted; "
            "sys.stdout.buffer.write(converted(sys.argv[1]))")
    again = subprocess.run([sys.executable, "-c", code, str(micro_dist / "saved_models/micro_1k_224_fe")],
                           capture_output=True, timeout=300, env={**os.environ, "PYTHONHASHSEED": "37"})
    assert again.returncode == 0, again.stderr[-2000:]
    assert again.stdout == (micro_dist / "onnx/micro_1k_224_fe.onnx").read_bytes()


def test_off_tolerance_is_an_error_and_writes_nothing(micro_dist, tmp_path):
    """A real disagreement (the SavedModel's outputs shifted), no mock: one line, no file."""
    import tensorflow as tf

    from hubpub.formats import FormatError, FormatJob
    from hubpub.formats.onnx import Onnx
    from hubpub.parity import reference_images

    saved = micro_dist / "saved_models/micro_1k_224_fe"
    images = reference_images(64, 64, 2, 0)
    outputs = tf.saved_model.load(str(saved)).signatures["serving_default"](images=tf.constant(images))
    expected = next(iter(outputs.values())).numpy()
    dist = Dist(tmp_path / "dist")
    job = FormatJob("micro_1k_224_fe", saved, dist, images, expected + 0.01, 1443)
    with pytest.raises(FormatError, match=r"^micro_1k_224_fe: the ONNX file differs from the SavedModel by "
                                          r"1\.0\de-02 \(tolerance 0\.0001\)$"):
        Onnx().build(job)
    assert not (tmp_path / "dist").exists()


def test_a_model_too_large_to_convert_or_hold_gets_no_onnx_file_and_a_reason(monkeypatch):
    from hubpub.formats import FormatJob, onnx

    def wanted(parameters: int) -> str | None:
        return onnx.Onnx().wanted(FormatJob("big", Path("big"), Dist("dist"), np.zeros(1), np.zeros(1), parameters))

    assert wanted(600_000_000) == "2.2 GiB of weights: over the 2 GiB one ONNX file can hold (a protobuf message)"
    # The machine's memory cannot be changed from a test: `physical_memory` is replaced to say 24 and 64 GiB.
    monkeypatch.setattr(onnx, "physical_memory", lambda: 24 * 2**30)
    assert wanted(28_600_000) is None and wanted(88_600_000) is None  # tiny, base
    assert wanted(197_800_000) == (  # large
        "converting it would take about 38 GiB of memory (tf2onnx holds about 50 copies of its 0.74 GiB of "
        "weights); this machine has 24 GiB")
    monkeypatch.setattr(onnx, "physical_memory", lambda: 64 * 2**30)
    assert wanted(197_800_000) is None


def test_large_conversions_take_turns_on_a_machine(micro_dist, monkeypatch, caplog):
    """`build-all --jobs N` runs N builds at once; a conversion that would take over a quarter of the
    memory waits for another such one. The machine's memory cannot be changed from a test: it is made
    to say 64 MiB, so the micro model's conversion counts as large; the other conversion is this test
    holding the lock."""
    import fcntl
    import logging
    import tempfile
    import threading
    import time
    from pathlib import Path

    from hubpub.formats import onnx

    monkeypatch.setattr(onnx, "physical_memory", lambda: 64 * 2**20)
    done = []
    with open(Path(tempfile.gettempdir()) / "hubpub-onnx-conversion.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        with caplog.at_level(logging.INFO, logger="hubpub.formats.onnx"):
            worker = threading.Thread(target=lambda: done.append(onnx.converted(micro_dist / "saved_models"
                                                                                / "micro_1k_224")))
            worker.start()
            deadline = time.time() + 60
            while "waiting for another ONNX conversion on this machine" not in caplog.text:
                assert time.time() < deadline, "the conversion did not wait for the lock"
                time.sleep(0.05)
            time.sleep(0.5)
            assert not done  # still waiting
        fcntl.flock(lock, fcntl.LOCK_UN)
    worker.join(timeout=120)
    assert done and done[0] == (micro_dist / "onnx" / "micro_1k_224.onnx").read_bytes()


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
    assert out.exit_code == 1 and out.stderr.startswith(f"error: {broken}: onnxruntime could not run it: ")
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
        assert (dest / artifact / "1.onnx.sha256").read_text() == f"{digest}  {artifact}.onnx\n"
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
    blocked = "tf2onnx,onnx,onnxruntime,kagglehub,kagglesdk"

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


def test_a_conversion_that_fails_is_one_line(tmp_path):
    from hubpub.formats import FormatError
    from hubpub.formats.onnx import converted

    (tmp_path / "not_a_saved_model").mkdir()
    with pytest.raises(FormatError, match=r"^ONNX conversion failed: \w+: .*not_a_saved_model") as info:
        converted(tmp_path / "not_a_saved_model")
    assert "\n" not in str(info.value)
