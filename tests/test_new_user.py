"""The third new-user round (issue 22): each defect found, as the user met it."""

import ast
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from hubpub.cli import cli
from tests.conftest import copy_built
from tests.test_bad_input import run


def _manifest(micro_manifest_path, tmp_path, extra: str = "", replace: tuple[str, str] | None = None) -> Path:
    """The micro manifest in a folder of its own (its own checkout), with `extra` appended."""
    text = micro_manifest_path.read_text()
    if replace:
        assert replace[0] in text
        text = text.replace(*replace)
    path = tmp_path / "repo" / "collection.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    (path.parent / ".git").mkdir(exist_ok=True)  # the checkout's root, as `git init` makes it
    path.write_text(text + extra)
    return path


NOTEBOOKS = "notebooks: {github: testpub/micro-models, branch: main, path: notebooks}\n"


def _dist(micro_dist, tmp_path) -> Path:
    dist = tmp_path / "dist"
    copy_built(micro_dist, dist)
    return dist


def cli_ok(*args) -> str:
    result = CliRunner().invoke(cli, ["-q", *(str(a) for a in args)])
    assert result.exit_code == 0, (result.output, result.exception)
    return result.output


# --------------------------------------------------------------------------- notebooks (items 3, 4, 5)


def test_publish_after_build_and_docs_names_the_missing_notebooks_step(micro_manifest_path, micro_dist, tmp_path):
    manifest = _manifest(micro_manifest_path, tmp_path, NOTEBOOKS)
    dist = _dist(micro_dist, tmp_path)
    cli_ok("docs", "--manifest", manifest, "--dist", dist, "--dest", tmp_path / "pub", "--public-url",
           "http://127.0.0.1:9/pub")
    errors = run("publish", "--manifest", manifest, "--dist", dist, "--dest", tmp_path / "pub", "--public-url",
                 "http://127.0.0.1:9/pub", "--no-verify")
    assert "Colab link https://colab.research.google.com/github/testpub/micro-models/blob/main/notebooks/" \
           "127.0.0.1-9-pub/micro_1k_224.ipynb is dead: no notebook at" in errors[0]
    assert errors[0].endswith(f"write the notebooks with `hubpub notebooks --dest {tmp_path / 'pub'} --public-url "
                              "http://127.0.0.1:9/pub --execute`")
    assert not (tmp_path / "pub").exists(), "nothing was published"


def test_notebooks_per_destination_and_never_into_the_checkout_before_publishing(micro_manifest_path, micro_dist,
                                                                                 tmp_path):
    """Two destinations, two folders of notebooks, each loading from its own; the checkout is written by a
    publish only (a trial build into another folder never touches it), and then only its own folder."""
    manifest = _manifest(micro_manifest_path, tmp_path, NOTEBOOKS)
    dist = _dist(micro_dist, tmp_path)
    checkout = manifest.parent / "notebooks"
    for dest, url in (("a", "http://127.0.0.1:9/a"), ("b", "http://127.0.0.1:9/b")):
        cli_ok("notebooks", "--manifest", manifest, "--dist", dist, "--dest", tmp_path / dest, "--public-url", url)
    assert not checkout.exists()
    a = (dist / "notebooks" / "127.0.0.1-9-a" / "micro_1k_224.ipynb").read_text()
    b = (dist / "notebooks" / "127.0.0.1-9-b" / "micro_1k_224.ipynb").read_text()
    assert "http://127.0.0.1:9/a/micro_1k_224/1.tar.gz" in a and "127.0.0.1:9/b" not in a
    assert "http://127.0.0.1:9/b/micro_1k_224/1.tar.gz" in b

    # publish to a: its docs link a's notebooks, which it checks and copies into the checkout
    cli_ok("docs", "--manifest", manifest, "--dist", dist, "--dest", tmp_path / "a", "--public-url",
           "http://127.0.0.1:9/a")
    out = cli_ok("publish", "--manifest", manifest, "--dist", dist, "--dest", tmp_path / "a", "--public-url",
                 "http://127.0.0.1:9/a", "--no-verify")
    assert sorted(p.relative_to(checkout).as_posix() for p in checkout.rglob("*.ipynb")) == [
        "127.0.0.1-9-a/micro_1k_224.ipynb", "127.0.0.1-9-a/micro_1k_224_fe.ipynb"]
    assert "notebooks: 2 written to" in out and "commit and push" in out
    # then to b: a's notebooks stay as they were, b's come beside them
    cli_ok("docs", "--manifest", manifest, "--dist", dist, "--dest", tmp_path / "b", "--public-url",
           "http://127.0.0.1:9/b")
    cli_ok("publish", "--manifest", manifest, "--dist", dist, "--dest", tmp_path / "b", "--public-url",
           "http://127.0.0.1:9/b", "--no-verify")
    assert (checkout / "127.0.0.1-9-a" / "micro_1k_224.ipynb").read_text() == a
    assert (checkout / "127.0.0.1-9-b" / "micro_1k_224.ipynb").read_text() == b
    doc = (dist / "docs/assets/docs/testpub/models/micro_1k_224/1.md").read_text()
    assert "/notebooks/127.0.0.1-9-b/micro_1k_224.ipynb" in doc


# --------------------------------------------------------------------------- code in URLs (item 9)


def _code_blocks(markdown: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", markdown, flags=re.S)


def test_values_are_written_into_code_as_literals(micro_manifest, micro_dist):
    """Even a URL that got past validation (here given directly) stays a string in every snippet and cell."""
    from hubpub.docs import environment, model_context, render, template_dirs
    from hubpub.notebooks import TEMPLATES, cells_from_percent
    from hubpub.record import read_record

    hostile = 'http://127.0.0.1:9/x"+str(__import__("os").system("id"))+"'
    env = environment(template_dirs())
    for artifact in micro_manifest.variant("micro_1k_224").artifacts():  # the kinds micro_dist holds
        record = read_record(micro_dist / "reports" / f"{artifact.name}.json")
        ctx = model_context(micro_manifest, artifact, record, public_url_base=hostile)
        sources = _code_blocks(render(env, "model.md.j2", ctx))
        sources += [c.source for c in cells_from_percent(render(env, TEMPLATES[artifact.kind], ctx))
                    if c.cell_type == "code"]
        for lite in ctx["litert"]:
            sources += _code_blocks(render(env, "lite.md.j2", {**ctx, "lite": lite}))
        assert len(sources) > 5
        for source in sources:
            tree = ast.parse(source.replace("%matplotlib inline", ""))
            calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "__import__"]
            assert not calls, source
        handles = [s for s in sources if "HANDLE = " in s]
        assert handles and ast.literal_eval(re.search(r"HANDLE = (.*)", handles[0]).group(1)).startswith(hostile)


# --------------------------------------------------------------------------- command line (items 7, 10, 13, 16)


@pytest.mark.parametrize("option,value", [("--dest", ""), ("--public-url", ""), ("--manifest", ""), ("--dest", " ")])
def test_an_empty_option_is_a_command_line_error(option, value):
    [error] = run("publish", option, value, "--dry-run", code=2)
    assert f"Invalid value for '{option}': must not be empty (an unset variable?)" in error


@pytest.mark.parametrize("value", ["nan", "-1", "inf", "0"])
def test_deadline_is_a_finite_positive_number_of_seconds(value):
    [error] = run("publish", "--deadline", value, "--dry-run", code=2)
    assert "Invalid value for '--deadline': must be a number of seconds from 1 to 86400" in error


def test_a_bad_bucket_name_is_named(micro_manifest_path):
    [error] = run("publish", "--manifest", micro_manifest_path, "--dest", "gs://Bad_Bucket/x", "--dry-run")
    assert error == ("error: 'gs://Bad_Bucket/x': 'Bad_Bucket' is not a valid Cloud Storage bucket name (3-63 "
                     "lowercase letters, digits, '-', '_' and '.', starting and ending with a letter or digit)")


def test_a_gcs_dry_run_plans_without_credentials(micro_manifest_path, micro_dist, tmp_path, monkeypatch):
    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "no-gcloud"))  # no application-default credentials
    monkeypatch.setenv("HOME", str(tmp_path))
    dist = _dist(micro_dist, tmp_path)
    cli_ok("docs", "--manifest", micro_manifest_path, "--dist", dist, "--dest", "gs://some-bucket/micro")
    out = cli_ok("publish", "--manifest", micro_manifest_path, "--dist", dist, "--dest", "gs://some-bucket/micro",
                 "--dry-run")
    assert "no Google Cloud credentials, so this plan does not compare" in out
    assert "29 would upload" in out and "micro/micro_1k_224/1.tar.gz" in out
    [error] = run("publish", "--manifest", micro_manifest_path, "--dist", dist, "--dest", "gs://some-bucket/micro")
    assert error.startswith("error: no Google Cloud credentials found")


def test_templates_folder_from_the_environment_is_named(micro_manifest_path, micro_dist, tmp_path, monkeypatch):
    monkeypatch.setenv("HUBPUB_TEMPLATES", str(tmp_path / "missing"))
    [error] = run("docs", "--manifest", micro_manifest_path, "--dist", micro_dist, "--out", tmp_path / "out")
    assert error == f"error: {tmp_path / 'missing'}: templates folder not found (given by the environment " \
                    "variable HUBPUB_TEMPLATES)"


# --------------------------------------------------------------------------- manifests (items 14, 17)


def test_calibration_folder_with_a_file_that_is_not_an_image(micro_manifest_path, tmp_path):
    from hubpub.resources import photos

    manifest = _manifest(micro_manifest_path, tmp_path, replace=(
        "litert: {max_parameters: 0, formats: [float32, int8], min_cosine: 0.9}",
        "litert: {max_parameters: 0, formats: [float32, int8], min_cosine: 0.9, calibration: [photos]}"))
    (manifest.parent / "photos").mkdir()
    shutil.copy(photos()[0], manifest.parent / "photos")
    (manifest.parent / "photos" / "notes.txt").write_text("not an image")
    (manifest.parent / "photos" / "fake.jpg").write_text("not a JPEG either")
    errors = run("validate", "--manifest", manifest)
    assert errors == [f"error: {manifest}: line 6: litert.calibration[0]: photos/fake.jpg is not an image Pillow can "
                      "read: UnidentifiedImageError",
                      f"error: {manifest}: line 6: litert.calibration[0]: photos/notes.txt is not an image (.jpg, "
                      ".jpeg, .png, .bmp, .gif, .webp, .tif, .tiff); move it out of the calibration folder"]


def test_variant_names_too_long_for_a_file_or_the_hf_hub(micro_manifest_path, tmp_path):
    long = "m" * 230
    manifest = _manifest(micro_manifest_path, tmp_path, replace=("name: micro_21k_224,", f"name: {long},"))
    [error] = run("validate", "--manifest", manifest)
    assert "variants[1].name: 'mmmm" in error and "of 233 characters, too long for a file name (at most 207" in error
    path = _manifest(micro_manifest_path, tmp_path, replace=("name: micro_21k_224,", f"name: {'h' * 95},"))
    assert CliRunner().invoke(cli, ["validate", "--manifest", str(path)]).exit_code == 0  # no hub named: fine
    path.write_text(path.read_text().replace("public_url_base:", "hubs: ['hf://testpub'], public_url_base:"))
    [error] = run("validate", "--manifest", path)
    # 85 and `-savedmodel`, the longest of an artifact's repository names, make the Hub's 96
    assert ("of 98 characters, too long for a Hugging Face repository name with `-savedmodel` after it "
            "(at most 85") in error


# --------------------------------------------------------------------------- archives (items 8, 12)


def _keras_bomb(path: Path, json_bytes: int) -> Path:
    """A small .keras zip whose config.json is valid JSON that unpacks to `json_bytes`."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z, z.open("config.json", "w", force_zip64=True) as f:
        f.write(b'{"x": "')
        chunk = b" " * 2**20
        for _ in range(json_bytes // 2**20):
            f.write(chunk)
        f.write(b'"}')
    return path


def test_a_keras_zip_bomb_is_refused_before_keras_reads_it(micro_dist, micro_manifest_path, tmp_path):
    bomb = _keras_bomb(tmp_path / "bomb.keras", 80 * 2**20)
    assert bomb.stat().st_size < 200_000
    [error] = run("verify", bomb, "--report", micro_dist / "reports/micro_1k_224.json")
    assert error == (f"error: {bomb}: config.json unpacks to 83,886,089 bytes; Keras reads it whole into memory, "
                     "and a model's is at most a few MB (refused above 67,108,864)")
    [error] = run("verify", bomb, "--report", micro_dist / "reports/micro_1k_224.json", "--max-unpacked", "10M")
    assert error.startswith(f"error: {bomb}: unpacks to more than 10,485,760 bytes (at member config.json)")
    # a user's own model file in a manifest: the same check before the build loads it
    manifest = _manifest(micro_manifest_path, tmp_path, replace=(
        "architectures:\n", "architectures:\n  mine: {family: keras, features: features, feature_width: 16}\n"))
    text = manifest.read_text() + ("  - {name: mine_3, architecture: mine, pretrain: shapes, num_classes: 3, "
                                   "resolution: 64, eval: {resize: squash, crop_pct: 1.0}, "
                                   "checkpoint: {path: bomb.keras}}\n"
                                   "datasets: {shapes: {title: Shapes, classes: 3}}\n")
    manifest.write_text(text)
    shutil.copy(bomb, manifest.parent / "bomb.keras")
    [error] = run("build", "mine_3", "--manifest", manifest, "--out", tmp_path / "dist")
    assert "bomb.keras: config.json unpacks to 83,886,089 bytes" in error


def test_a_damaged_gzip_trailer_is_refused_before_extracting(micro_dist, tmp_path, hub_cache):
    import struct

    good = (micro_dist / "tars" / "micro_1k_224.tar.gz").read_bytes()
    bad = tmp_path / "micro_1k_224.tar.gz"
    bad.write_bytes(good[:-4] + struct.pack("<I", (struct.unpack("<I", good[-4:])[0] + 1) % 2**32))
    [error] = run("verify", bad, "--report", micro_dist / "reports/micro_1k_224.json")
    assert error.startswith(f"error: {bad}: not a valid gzip stream (") and "damaged or crafted" in error
    assert "refused before extracting" in error
    assert not hub_cache.exists() or not any(hub_cache.rglob("*.pb"))


# --------------------------------------------------------------------------- checkpoints (item 11)


def test_a_tensor_of_the_wrong_shape_is_named(micro_manifest_path, micro_manifest, tmp_path):
    from hubpub.convert import save_checkpoint

    v = micro_manifest.variant("micro_1k_224")
    tensors = dict(v.family.random_checkpoint(v.architecture, v.num_classes))
    tensors["stages.0.0.dwconv.weight"] = tensors["stages.0.0.dwconv.weight"][:3]
    path = save_checkpoint(tensors, tmp_path / "bad.safetensors")
    [error] = run("build", "micro_1k_224", "--manifest", micro_manifest_path, "--out", tmp_path / "dist",
                  "--checkpoint", path, "--no-parity")
    assert "1 shape mismatch: stages.0.0.dwconv.weight [3, 1, 7, 7] -> " in error, error
    assert "dims [3," not in error


# --------------------------------------------------------------------------- Ctrl-C while retrying (item 6)


def test_ctrl_c_stops_a_gcs_publish_whose_uploads_are_being_retried(micro_manifest_path, micro_dist, tmp_path):
    """A real proxy answers 503 to every upload; Ctrl-C stops publishing within seconds, with exit 130."""
    from google.cloud import storage

    from tests.gcs import Emulator, FaultProxy

    proxy = FaultProxy()
    emulator = Emulator(tmp_path / "emu.log", external_url=proxy.url)
    proxy.upstream_port = emulator.port
    try:
        env = {**os.environ, "STORAGE_EMULATOR_HOST": proxy.url, "HUBPUB_DISABLE_PROGRESS": "1"}
        os.environ["STORAGE_EMULATOR_HOST"] = proxy.url
        try:
            storage.Client().create_bucket("slow")
        finally:
            del os.environ["STORAGE_EMULATOR_HOST"]
        manifest = _manifest(micro_manifest_path, tmp_path, replace=(
            "http://127.0.0.1:9/bucket/micro", "https://storage.googleapis.com/slow/micro"))
        dist = _dist(micro_dist, tmp_path)
        cli_ok("docs", "--manifest", manifest, "--dist", dist, "--dest", "gs://slow/micro")
        proxy.faults = [["POST", "uploadType=", "503", 10**6]]
        proc = subprocess.Popen([sys.executable, "-m", "hubpub", "publish", "--manifest", str(manifest), "--dist",
                                 str(dist), "--dest", "gs://slow/micro", "--jobs", "1", "--deadline", "40",
                                 "--no-verify"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                                start_new_session=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        deadline = time.time() + 120
        while len(proxy.fired) < 3:  # retrying
            assert proc.poll() is None and time.time() < deadline, proc.communicate()
            time.sleep(0.2)
        os.killpg(proc.pid, signal.SIGINT)
        stopped = time.time()
        _, err = proc.communicate(timeout=60)
        assert time.time() - stopped < 10, f"took {time.time() - stopped:.0f} s to stop"
        assert proc.returncode == 130, err
        assert err.strip().splitlines()[-1] == "error: interrupted; finished files are kept, rerun the command to go on"
        assert "Traceback" not in err
        fired = len(proxy.fired)
        time.sleep(3)
        assert len(proxy.fired) == fired, "uploads went on after the process ended"
    finally:
        emulator.stop()
        proxy.close()
