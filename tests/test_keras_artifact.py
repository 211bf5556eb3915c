"""The Keras 3 artifact: loads with `keras.saving.load_model` in a fresh process that cannot import hubpub,
on TensorFlow, PyTorch and JAX, reproduces the SavedModel (1e-5 on TensorFlow, 1e-4 on the others)
and trains one `fit` step."""

import importlib.util
import json
import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from hubpub import tolerances
from hubpub.parity import reference_images
from tests.conftest import copy_built

LOAD = r"""
import json, sys
sys.modules["hubpub"] = None  # a consumer's process: hubpub cannot be imported
import numpy as np
import keras
args = sys.argv[1:]
for path, images_path, kind in zip(args[0::3], args[1::3], args[2::3], strict=True):  # one model after another
    model = keras.saving.load_model(path)
    images = np.load(images_path)
    out = {"backend": keras.backend.backend(), "outputs": keras.ops.convert_to_numpy(model(images)).tolist(),
           "layer": model.get_layer("stage_2_block_1_pwconv1").name, "parameters": model.count_params()}
    if kind == "classifier":
        before = np.array(model.get_layer("stage_0_block_0_dwconv").get_weights()[0])
        model.compile(optimizer=keras.optimizers.SGD(0.1),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        history = model.fit(images, np.array([1, 2]), epochs=1, batch_size=2, verbose=0)
        after = np.array(model.get_layer("stage_0_block_0_dwconv").get_weights()[0])
        out["loss"] = float(history.history["loss"][0])
        out["changed"] = bool(np.abs(after - before).max() > 0)
    print("RESULT " + json.dumps(out), flush=True)
"""
KINDS = (("micro_1k_224", "classifier"), ("micro_1k_224_fe", "feature-extractor"))


def _loaded_without_hubpub(python, models: list[tuple], backend: str, cwd, timeout=300) -> list[dict]:
    """LOAD's results for each (file, inputs .npy, kind), in one fresh process (of `python`) on `backend`;
    `cwd` not the repository: its hubpub/ folder would be on the path."""
    args = [str(a) for model in models for a in model]
    proc = subprocess.run([str(python), "-c", LOAD, *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "KERAS_BACKEND": backend, "CUDA_VISIBLE_DEVICES": ""}, cwd=cwd)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = [json.loads(line.removeprefix("RESULT ")) for line in proc.stdout.splitlines()
               if line.startswith("RESULT ")]
    assert len(results) == len(models), proc.stdout[-2000:]
    return results


def _check_on(backend: str, tolerance: float, micro_dist, saved_model_outputs, python=sys.executable, cwd=None):
    """Both micro artifacts' `.keras` files on `backend`: the SavedModel's outputs, the official layer
    names, and one `fit` step of the classifier that changes its weights."""
    models = [(micro_dist / "keras" / f"{name}.keras", saved_model_outputs[name][0], kind) for name, kind in KINDS]
    results = _loaded_without_hubpub(python, models, backend, cwd or micro_dist)
    for (name, kind), result in zip(KINDS, results, strict=True):
        assert result["backend"] == backend
        delta = np.abs(np.asarray(result["outputs"]) - saved_model_outputs[name][1]).max()
        assert delta <= tolerance, f"{name} on {backend}: max |Δ| {delta:.3g} > {tolerance:g}"
        assert result["layer"] == "stage_2_block_1_pwconv1"  # the official names, as in the paper's tree
        if kind == "classifier":
            assert np.isfinite(result["loss"]) and result["changed"], result


# JAX runs in test_fresh_venv_with_only_keras_jax_and_numpy_loads_it: a venv of keras, jax and numpy alone,
# with this JAX (a release Keras supports; pinned, so a new JAX does not change the test under us).
CONSUMER_JAX = "0.10.2"
BACKENDS = [("tensorflow", tolerances.KERAS_FILE), ("torch", tolerances.KERAS_OTHER_BACKEND)]


@pytest.fixture(scope="module")
def saved_model_outputs(micro_dist, tmp_path_factory):
    """The SavedModel's outputs on the record's inputs, and those inputs in a .npy file."""
    import tensorflow as tf

    folder = tmp_path_factory.mktemp("keras_inputs")
    out = {}
    for name in ("micro_1k_224", "micro_1k_224_fe"):
        record = json.loads((micro_dist / "reports" / f"{name}.json").read_text())["reference"]["inputs"]
        images = reference_images(record["height"], record["width"], record["batch"], record["seed"])
        np.save(folder / f"{name}.npy", images)
        loaded = tf.saved_model.load(str(micro_dist / "saved_models" / name))
        out[name] = (folder / f"{name}.npy", loaded(tf.constant(images)).numpy())
    return out


@pytest.mark.parametrize("backend,tolerance", BACKENDS, ids=[b for b, _ in BACKENDS])
def test_keras_artifact_on_every_backend_without_hubpub(micro_dist, saved_model_outputs, backend, tolerance):
    if backend != "tensorflow" and importlib.util.find_spec(backend) is None:
        missing = f"the {backend} backend is not installed (make test installs it: the dev and torch extras)"
        if os.environ.get("CI") == "true":  # make test installs it: a skip there would hide an untested backend
            pytest.fail(f"{missing}; under CI=true every backend must be tested")
        pytest.skip(missing)
    _check_on(backend, tolerance, micro_dist, saved_model_outputs)


def test_keras_artifact_is_recorded_and_reproducible(micro_dist, micro_manifest, micro_checkpoints, tmp_path):
    from hubpub._files import sha256_file
    from hubpub.pipeline import build_variant
    from hubpub.record import read_record

    record = read_record(micro_dist / "reports" / "micro_1k_224.json")
    path = micro_dist / record.keras.path
    assert record.keras.sha256 == sha256_file(path) == (path.parent / (path.name + ".sha256")).read_text().split()[0]
    assert record.keras.max_abs <= tolerances.KERAS_FILE and record.keras.size == path.stat().st_size
    with zipfile.ZipFile(path) as z:
        assert sorted(z.namelist()) == ["config.json", "metadata.json", "model.weights.h5"]
        assert '"hubpub>' not in z.read("config.json").decode()  # only layers Keras ships
        assert json.loads(z.read("metadata.json"))["date_saved"] == "2000-01-01@00:00:00"
        assert {i.date_time for i in z.infolist()} == {(2000, 1, 1, 0, 0, 0)}
    # a second build, in this process (after other builds), gives the same bytes
    v = micro_manifest.variant("micro_1k_224")
    again = build_variant(v, tmp_path, checkpoint=str(micro_checkpoints[v.name]), kinds=("classifier",),
                          parity=False, formats=("keras",))
    assert again[0].keras.sha256 == record.keras.sha256


def test_a_build_stopped_between_the_weights_on_disk_and_the_file_leaves_nothing(micro_manifest, micro_checkpoints,
                                                                                  tmp_path, monkeypatch):
    """The .keras format saves each kind's weights to disk while the model exists, and makes the file from
    them once the build has freed it. A build stopped in between (here Ctrl-C in the classifier's file, a
    fault made by replacing `write_keras`: it cannot be timed from outside) removes the saved weights of
    both kinds, the feature extractor's never taken by its build included."""
    from hubpub.formats import keras as keras_format
    from hubpub.pipeline import build_variant

    saved = []

    def interrupted(weights, build_portable, path):
        saved.extend(p.name for p in (tmp_path / "dist" / "keras").iterdir())
        raise KeyboardInterrupt

    monkeypatch.setattr(keras_format, "write_keras", interrupted)
    v = micro_manifest.variant("micro_1k_224")
    with pytest.raises(KeyboardInterrupt):
        build_variant(v, tmp_path / "dist", checkpoint=str(micro_checkpoints[v.name]), parity=False,
                      formats=("keras",))
    assert len(saved) == 2 and all(name.endswith(".tmp") and ".weights." in name for name in saved), saved
    assert not list((tmp_path / "dist" / "keras").iterdir())


def test_portable_graph_of_convnext_v2_matches_its_fast_graph(tmp_path):
    """GRN built from Keras ops on the 4-D map, against the GRN layer on tokens, same weights."""
    from hubpub.convert import port_weights, read_checkpoint, save_checkpoint
    from hubpub.families import FAMILIES
    from hubpub.formats.keras import export_keras

    family = FAMILIES["convnext_v2"]
    arch = family.parse({"family": "convnext_v2", "depths": [1, 1, 2, 1], "dims": [8, 16, 32, 64]})
    ckpt = save_checkpoint(family.random_checkpoint(arch, 10, seed=7), tmp_path / "c.safetensors")
    model = family.build(arch, num_classes=10, input_convention="hub", name="v2")
    with read_checkpoint(ckpt) as c:
        port_weights(model, c, family.converter, arch, classifier=True)
    images = reference_images(64, 96, 2)
    result = export_keras(model, lambda: family.build(arch, num_classes=10, input_convention="hub", name="v2",
                                                      portable=True), tmp_path / "v2.keras", images,
                          np.asarray(model(images)))
    assert result.max_abs <= tolerances.KERAS_FILE


def test_keras_check_tolerance_follows_the_outputs_scale(micro_dist, saved_model_outputs):
    """1e-5 for outputs within [-1, 1], 1e-5 of the largest |value| above: another graph of the same
    weights rounds relative to the values (ConvNeXt V2 large's features differed by 1.12e-5)."""
    from hubpub.errors import ExportError
    from hubpub.formats.keras import check_keras_file, keras_tolerance

    assert keras_tolerance(np.array([[0.3, -0.9]])) == tolerances.KERAS_FILE
    assert keras_tolerance(np.array([[2.0, -40.0]])) == pytest.approx(40 * tolerances.KERAS_FILE)
    images_path, expected = saved_model_outputs["micro_1k_224"]
    images, path = np.load(images_path), micro_dist / "keras" / "micro_1k_224.keras"
    allowed = float(np.abs(expected).max()) * tolerances.KERAS_FILE  # the micro logits reach about 3.5
    assert allowed > tolerances.KERAS_FILE and keras_tolerance(expected) == pytest.approx(allowed)
    assert check_keras_file(path, images, expected + 0.5 * allowed) <= allowed
    with pytest.raises(ExportError, match=rf"\(tolerance {allowed:.3g}: 1e-05 x the outputs' scale\)"):
        check_keras_file(path, images, expected + 1.5 * allowed)


def test_keras_artifact_is_published_and_verified(micro_manifest_path, micro_dist, tmp_path, file_server):
    """Published beside the tarball, immutable like it; `hubpub verify` takes it by path and by URL."""
    from click.testing import CliRunner

    from hubpub.cli import cli

    dist = tmp_path / "dist"
    copy_built(micro_dist, dist, saved_models=False)
    runner = CliRunner()
    common = ["--manifest", str(micro_manifest_path), "--dist", str(dist)]
    assert runner.invoke(cli, ["docs", *common]).exit_code == 0
    dest = file_server.root / "models"
    result = runner.invoke(cli, ["publish", *common, "--dest", str(dest), "--public-url",
                                 "http://127.0.0.1:9/bucket/micro", "--no-verify"])
    assert result.exit_code == 0, result.output
    published = dest / "micro_1k_224" / "1.keras"
    assert published.read_bytes() == (dist / "keras" / "micro_1k_224.keras").read_bytes()
    assert (dest / "micro_1k_224_fe" / "1.keras.sha256").is_file()
    doc = (dist / "docs/assets/docs/testpub/models/micro_1k_224/1.md").read_text()
    assert ('keras.utils.get_file(fname="micro_1k_224-1.keras", '
            'origin="http://127.0.0.1:9/bucket/micro/micro_1k_224/1.keras")') in doc

    for handle in (str(published), f"{file_server.url}/models/micro_1k_224/1.keras"):
        out = runner.invoke(cli, ["verify", handle, "--report", str(dist / "reports/micro_1k_224.json"),
                                  "--fine-tune"])
        assert out.exit_code == 0, out.output
        assert "loads with keras.saving.load_model; outputs match the build" in out.output
        assert "backbone weights changed" in out.output

    # immutable like the tarball: other bytes under the published name are refused
    (dest / "micro_1k_224" / "1.keras").write_bytes(b"not the artifact")
    result = runner.invoke(cli, ["publish", *common, "--dest", str(dest), "--public-url",
                                 "http://127.0.0.1:9/bucket/micro", "--no-verify"])
    assert result.exit_code == 1 and "micro_1k_224/1.keras exists with different content" in result.output


@pytest.mark.skipif(not os.environ.get("HUBPUB_SLOW"), reason="the largest variant at full size: opt in with "
                                                               "HUBPUB_SLOW=1")
def test_largest_variant_keras_artifact_full_size(root, tmp_path):
    """convnext_xlarge_21k_224 (392M parameters, a 21841-class head): built, then loaded without hubpub."""
    from hubpub.convert import save_checkpoint
    from hubpub.manifest import load_manifest
    from hubpub.pipeline import build_variant

    v = load_manifest(root / "collection.yaml").variant("convnext_xlarge_21k_224")
    ckpt = save_checkpoint(v.family.random_checkpoint(v.architecture, v.num_classes), tmp_path / "xl.safetensors")
    (record,) = build_variant(v, tmp_path / "dist", checkpoint=str(ckpt), kinds=("classifier",), parity=False)
    assert record.keras.max_abs <= tolerances.KERAS_FILE
    inputs = record.reference["inputs"]
    np.save(tmp_path / "x.npy", reference_images(inputs["height"], inputs["width"], inputs["batch"], inputs["seed"]))
    (result,) = _loaded_without_hubpub(sys.executable, [(tmp_path / "dist" / record.keras.path, tmp_path / "x.npy",
                                                         "feature-extractor")], "tensorflow", tmp_path, timeout=1200)
    got = np.asarray(result["outputs"])
    assert got.shape == (inputs["batch"], 21841)
    np.testing.assert_allclose(got[:, :64], np.asarray(record.reference["outputs"]["columns"]), atol=tolerances.VERIFY)


def test_fresh_venv_with_only_keras_jax_and_numpy_loads_it(micro_dist, saved_model_outputs, tmp_path):
    """A consumer's environment, made here: a new venv with keras, jax and numpy from the package index
    (keras and numpy as in this environment, so the installer's cache serves them), no TensorFlow, no
    hubpub. Made with uv, as `make` makes ours: the same packages as pip's, in seconds instead of a minute.
    (JAX is not in this environment: TensorFlow imports it wherever it is installed, 1.2 s a process.)"""
    from importlib.metadata import version

    venv = tmp_path / "consumer"
    subprocess.run([sys.executable, "-m", "uv", "venv", "-q", "--python", sys.executable, str(venv)], check=True,
                   timeout=120)
    python = venv / "bin" / "python"
    pins = [f"keras=={version('keras')}", f"jax[cpu]=={CONSUMER_JAX}", f"numpy=={version('numpy')}"]
    # No --compile-bytecode: one process runs there, and compiling every module it does not import costs
    # more than compiling, on import, the few it does.
    install = subprocess.run([sys.executable, "-m", "uv", "pip", "install", "-q", "--python", str(python), *pins],
                             capture_output=True, text=True, timeout=900)
    assert install.returncode == 0, install.stderr[-2000:]
    missing = subprocess.run([str(python), "-c", "import tensorflow"], capture_output=True, text=True)
    assert missing.returncode != 0  # really no TensorFlow there
    _check_on("jax", tolerances.KERAS_OTHER_BACKEND, micro_dist, saved_model_outputs, python=python, cwd=tmp_path)
