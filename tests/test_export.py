"""Export, round-trip, Hub tarballs and the downstream proof with the real tensorflow_hub."""

import io
import json
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hubpub import tolerances
from hubpub._files import sha256_file
from hubpub.errors import ExportError, PackageError, VerifyError
from hubpub.package import check_tarball, pack, safe_extract
from hubpub.verify import verify_handle

ARTIFACTS = ("micro_1k_224", "micro_1k_224_fe")


def _report(dist, name):
    return json.loads((dist / "reports" / f"{name}.json").read_text())


def test_build_writes_the_layout(micro_dist):
    for name in ARTIFACTS:
        assert (micro_dist / "saved_models" / name / "saved_model.pb").is_file()
        tar = micro_dist / "tars" / f"{name}.tar.gz"
        report = _report(micro_dist, name)
        sha_line = (micro_dist / "tars" / f"{name}.tar.gz.sha256").read_text()
        assert sha_line == f"{report['tarball']['sha256']}  {name}.tar.gz\n"
        assert sha256_file(tar) == report["tarball"]["sha256"]
        assert report["tarball"]["size"] == tar.stat().st_size
        assert report["parity"]["status"] == "passed" and report["parity"]["max_abs"] <= tolerances.PARITY
        assert len(report["parity"]["runs"]) == 2  # native and non-square
        assert max(report["round_trip"]["call"], report["round_trip"]["serving_default"]) <= tolerances.ROUND_TRIP
        assert set(report["timings"]) >= {"fetch", "build+port", "export", "round_trip", "pack"}
        # The build process's peak so far at each stage's end (this machine is Linux): it never falls.
        peak = report["peak_rss_mb"]
        assert set(peak) >= {"build+port", "export", "round_trip", "pack"} and set(peak) <= set(report["timings"])
        assert 0 < peak["reference"] <= peak["build+port"] <= peak["export"] <= peak["round_trip"] <= peak["pack"]
        assert "onnx" in report["timings"] and "onnx" not in peak  # run beside LiteRT: it would read LiteRT's
    assert not list((micro_dist / "tars").glob(".*")), "temp files left behind"


def test_signatures(micro_dist):
    clf = _report(micro_dist, "micro_1k_224")["signatures"]
    assert clf["serving_default"]["inputs"] == {"images": [[None, None, None, 3], "float32"]}
    assert clf["serving_default"]["outputs"] == {"logits": [[None, 1000], "float32"]}
    assert clf["serving_bytes"]["inputs"] == {"images": [[None], "string"]}
    fe = _report(micro_dist, "micro_1k_224_fe")["signatures"]
    assert fe["serving_default"]["outputs"] == {"feature_vector": [[None, 64], "float32"]}


def test_tarball_layout_and_labels(micro_dist):
    names = check_tarball(micro_dist / "tars" / "micro_1k_224.tar.gz")
    assert names[0] == "assets" and "saved_model.pb" in names and "assets/labels.txt" in names
    with tarfile.open(micro_dist / "tars" / "micro_1k_224.tar.gz") as tar:
        for info in tar.getmembers():
            assert (info.uid, info.gid, info.uname, info.gname) == (0, 0, "", "")
            assert not info.name.startswith((".", "/"))
        labels = tar.extractfile("assets/labels.txt").read().decode().splitlines()
    assert len(labels) == 1000 and labels[0] == "n01440764\ttench, Tinca tinca"
    assert "assets/labels.txt" not in check_tarball(micro_dist / "tars" / "micro_1k_224_fe.tar.gz")
    with open(micro_dist / "tars" / "micro_1k_224.tar.gz", "rb") as f:
        header = f.read(10)
    assert header[4:8] == b"\0\0\0\0" and header[3] & 0x08 == 0  # gzip: no mtime, no file name


def test_serving_bytes_decodes_and_preprocesses(micro_dist, micro_manifest):
    import tensorflow as tf

    from hubpub.eval.preprocess import preprocess_tf

    loaded = tf.saved_model.load(str(micro_dist / "saved_models" / "micro_1k_224"))
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (300, 200, 3), dtype=np.uint8), rng.integers(0, 256, (180, 260, 3), dtype=np.uint8)]
    encoded = []
    for i, a in enumerate(images):
        buf = io.BytesIO()
        Image.fromarray(a).save(buf, format="PNG" if i == 0 else "BMP")
        encoded.append(buf.getvalue())
    out = loaded.signatures["serving_bytes"](images=tf.constant(encoded))["logits"].numpy()
    ev = micro_manifest.variant("micro_1k_224").eval
    batch = tf.stack([preprocess_tf(a, 224, ev) for a in images])
    expected = loaded.signatures["serving_default"](images=batch)["logits"].numpy()
    assert out.shape == (2, 1000)
    np.testing.assert_allclose(out, expected, atol=tolerances.ROUND_TRIP)


def test_round_trip_catches_a_different_model(micro_dist, micro_manifest):
    from hubpub.export import round_trip
    v = micro_manifest.variant("micro_1k_224")
    other = v.family.build(v.architecture, num_classes=1000, input_convention="hub", name="other")
    images = np.random.default_rng(0).random((1, 64, 64, 3), dtype=np.float32)
    with pytest.raises(ExportError, match="differs from the in-memory model"):
        round_trip(np.asarray(other(images)), micro_dist / "saved_models" / "micro_1k_224", images, kind="classifier")


def test_21k_classifier_carries_21841_labels(micro_manifest, micro_checkpoints, tmp_path):
    from hubpub.pipeline import build_variant

    v = micro_manifest.variant("micro_21k_224")
    build_variant(v, tmp_path, checkpoint=str(micro_checkpoints[v.name]), kinds=("classifier",), parity=False,
                  formats=())  # the labels are the SavedModel's: no other format's conversion
    labels = (tmp_path / "saved_models" / v.name / "assets" / "labels.txt").read_text().splitlines()
    assert len(labels) == 21841 and labels[0].startswith("n00004475\t")


def test_reproducible_tarballs(micro_manifest_path, micro_checkpoints, micro_pair, tmp_path):
    """Two builds, each in a fresh process as build-all makes them (here and the shared `micro_pair`'s
    worker), give identical bytes, with parity or without (its TensorFlow work runs after the export: the
    bytes are the model's alone). A fresh process, because a save's function names count the eager tensors
    the process made before: a build after other TensorFlow work in the same process saves other bytes."""
    cmd = [sys.executable, "-m", "hubpub", "-q", "build", "micro_1k_224", "--manifest", str(micro_manifest_path),
           "--checkpoint", str(micro_checkpoints["micro_1k_224"]), "--out", str(tmp_path), "--no-parity"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    for name in ("micro_1k_224", "micro_1k_224_fe"):
        sha = (tmp_path / "tars" / f"{name}.tar.gz.sha256").read_text().split()[0]
        assert sha == (micro_pair.dist / "tars" / f"{name}.tar.gz.sha256").read_text().split()[0], name


# ------------------------------------------------------------------ downstream, with the real tensorflow_hub


def test_hub_keras_layer_over_http_and_fine_tune(micro_dist, file_server, hub_cache):
    for name in ARTIFACTS:
        shutil.copy(micro_dist / "tars" / f"{name}.tar.gz", file_server.root)
    for name in ARTIFACTS:
        url = f"{file_server.url}/{name}.tar.gz"
        result = verify_handle(url, _report(micro_dist, name)["reference"], fine_tune=name.endswith("_fe"))
        assert result.max_abs <= tolerances.VERIFY
    assert result.fine_tune["backbone_weights_changed"] == result.fine_tune["backbone_weights"] > 0
    assert np.isfinite(result.fine_tune["loss"])
    assert any("tf-hub-format=compressed" in p or p.endswith(".tar.gz") for p, _ in file_server.requests)
    assert not hub_cache.exists(), "verify extracts into a cache of its own and removes it"


def test_hub_keras_layer_from_directory(micro_dist):
    result = verify_handle(str(micro_dist / "saved_models" / "micro_1k_224"),
                           _report(micro_dist, "micro_1k_224")["reference"], fine_tune=True)
    assert result.fine_tune["loss"] > 0


def test_keras3_tfsmlayer(micro_dist):
    import keras

    from hubpub.parity import reference_images

    record = _report(micro_dist, "micro_1k_224_fe")["reference"]
    layer = keras.layers.TFSMLayer(str(micro_dist / "saved_models" / "micro_1k_224_fe"),
                                   call_endpoint="serving_default")
    out = layer(reference_images(**record["inputs"]))["feature_vector"]
    np.testing.assert_allclose(np.asarray(out)[:, :64], np.asarray(record["outputs"]["columns"]),
                               atol=tolerances.VERIFY)


def test_verify_detects_a_wrong_artifact(micro_dist):
    record = _report(micro_dist, "micro_1k_224")["reference"]
    record["outputs"]["columns"][0][0] += 0.5
    with pytest.raises(VerifyError, match="outputs differ from the build's record"):
        verify_handle(str(micro_dist / "saved_models" / "micro_1k_224"), record)


def test_verify_bad_url_is_one_clear_error(file_server, hub_cache):
    url = f"{file_server.url}/missing.tar.gz"
    with pytest.raises(VerifyError, match=rf"^{url}: HTTP 404 "):
        verify_handle(url, {"inputs": {"height": 8, "width": 8}, "outputs": {}})


# ------------------------------------------------------------------ tarball checks


def _tar(path, members):
    with tarfile.open(path, "w:gz") as tar:
        for name, kind in members:
            info = tarfile.TarInfo(name)
            if kind == "symlink":
                info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
                tar.addfile(info)
            elif kind == "dir":
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                data = b"x"
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return path


@pytest.mark.parametrize("members,message", [
    ([("model/saved_model.pb", "f"), ("model/variables/variables.index", "f")],
     r"wrapped in a folder\? top level: model"),
    ([("saved_model.pb", "f"), ("assets/link", "symlink")], r"assets/link is a link"),
    ([("variables/variables.index", "f")], r"no saved_model\.pb at the archive root"),
    ([("saved_model.pb", "f"), ("../evil", "f")], r"escapes the archive root"),
    ([("saved_model.pb", "f"), ("README.md", "f")], r"README\.md is not allowed"),
    ([("saved_model.pb", "f"), (".DS_Store", "f")], r"\.DS_Store is not allowed"),
])
def test_bad_tarballs_are_rejected(tmp_path, members, message):
    path = _tar(tmp_path / "bad.tar.gz", members)
    with pytest.raises(PackageError, match=message):
        check_tarball(path)
    with pytest.raises(PackageError):
        safe_extract(path, tmp_path / "out")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_pack_refuses_a_directory_with_extra_files(micro_dist, tmp_path):
    sm = tmp_path / "sm"
    shutil.copytree(micro_dist / "saved_models" / "micro_1k_224_fe", sm)
    (sm / "notes.txt").write_text("x")
    with pytest.raises(PackageError, match="notes.txt is not allowed"):
        pack(sm, tmp_path / "t.tar.gz")
    assert not (tmp_path / "t.tar.gz").exists()


def test_interrupted_pack_leaves_no_file(micro_dist, tmp_path, monkeypatch):
    """A disk fault mid-write cannot be produced on demand: a patched addfile raises instead."""
    calls = []

    def failing_addfile(self, info, fileobj=None):
        calls.append(info.name)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        return original(self, info, fileobj)

    original = tarfile.TarFile.addfile
    monkeypatch.setattr(tarfile.TarFile, "addfile", failing_addfile)
    with pytest.raises(OSError):
        pack(micro_dist / "saved_models" / "micro_1k_224_fe", tmp_path / "t.tar.gz")
    assert list(tmp_path.iterdir()) == []


def test_safe_extract_round_trip(micro_dist, tmp_path):
    out = safe_extract(micro_dist / "tars" / "micro_1k_224_fe.tar.gz", tmp_path / "x")
    assert (out / "saved_model.pb").is_file() and (out / "variables" / "variables.index").is_file()


def test_cli_verify_a_local_tarball(micro_dist, hub_cache):
    from click.testing import CliRunner

    from hubpub.cli import cli

    tar = micro_dist / "tars" / "micro_1k_224_fe.tar.gz"
    result = CliRunner().invoke(cli, ["verify", str(tar), "--report", str(micro_dist / "reports/micro_1k_224_fe.json")])
    assert result.exit_code == 0, result.output
    assert "loads with hub.KerasLayer; outputs match the build" in result.output
    result = CliRunner().invoke(cli, ["verify", str(tar)])  # default report: dist/reports/micro_1k_224_fe.json
    assert result.exit_code == 1 and "dist/reports/micro_1k_224_fe.json: cannot read the build report" in result.output


def test_fine_tuning_gradients_match_the_keras_model(micro_dist, micro_manifest, micro_checkpoints):
    """hub.KerasLayer(trainable=True) differentiates the exported graph exactly like the Keras model."""
    import tensorflow as tf
    import tensorflow_hub as hub

    from hubpub.pipeline import build_ported

    v = micro_manifest.variant("micro_1k_224")
    model, _ = build_ported(v, micro_checkpoints[v.name], kind="classifier")
    layer = hub.KerasLayer(str(micro_dist / "saved_models" / "micro_1k_224"), trainable=True)
    x = tf.constant(np.random.default_rng(0).random((2, 64, 64, 3), dtype=np.float32))
    w = tf.constant(np.random.default_rng(1).normal(size=(2, 1000)).astype(np.float32))
    with tf.GradientTape() as tape:
        hub_loss = tf.reduce_sum(layer(x, training=True) * w)
    hub_grads = tape.gradient(hub_loss, layer.trainable_weights)
    keras_vars = [v.value for v in model.trainable_weights]
    with tf.GradientTape() as tape:
        keras_loss = tf.reduce_sum(model(x, training=True) * w)
    keras_grads = tape.gradient(keras_loss, keras_vars)
    assert len(hub_grads) == len(keras_grads) == len(model.trainable_weights)
    for hg, kg, var in zip(hub_grads, keras_grads, model.trainable_weights, strict=True):
        np.testing.assert_allclose(hg.numpy(), kg.numpy(), atol=1e-4, rtol=1e-4, err_msg=var.path)


def test_normalized_convention_build(micro_manifest, micro_checkpoints, tmp_path):
    """The original collection's convention: the caller normalises; serving_bytes does it for TF Serving."""
    import tensorflow as tf

    from hubpub.docs import render_docs
    from hubpub.eval.preprocess import preprocess_tf
    from hubpub.parity import normalize
    from hubpub.pipeline import build_variant

    v = micro_manifest.variant("micro_1k_224")
    (report,) = build_variant(v, tmp_path, checkpoint=str(micro_checkpoints[v.name]), kinds=("classifier",),
                              input_convention="normalized", formats=())  # the SavedModel's convention
    assert report.input_convention == "normalized" and report.parity.max_abs <= tolerances.PARITY
    loaded = tf.saved_model.load(str(tmp_path / "saved_models" / v.name))
    image = np.random.default_rng(0).integers(0, 256, (240, 300, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    got = loaded.signatures["serving_bytes"](images=tf.constant([buf.getvalue()]))["logits"].numpy()
    x = normalize(preprocess_tf(image, 224, v.eval).numpy()[None], v.family)
    want = loaded.signatures["serving_default"](images=tf.constant(x))["logits"].numpy()
    np.testing.assert_allclose(got, want, atol=tolerances.ROUND_TRIP)
    render_docs(micro_manifest, dist=tmp_path, out=tmp_path / "docs")
    doc = (tmp_path / "docs/assets/docs/testpub/models/micro_1k_224/1.md").read_text()
    assert "normalised by the\n  caller with the mean (0.485, 0.456, 0.406)" in doc


def _model_graphs(saved_model: Path) -> list[str]:
    """The functions in a SavedModel that read the weights, apart from TensorFlow's own saver ones."""
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    proto.ParseFromString((saved_model / "saved_model.pb").read_bytes())
    return [f.signature.name for f in proto.meta_graphs[0].graph_def.library.function
            if "_traced_" not in f.signature.name and any(n.op == "ReadVariableOp" for n in f.node_def)]


def test_the_model_graph_is_saved_once(micro_dist):
    """__call__ (training True and False), serving_default and serving_bytes share one model graph:
    no retrace by the save, none for serving_bytes' fixed-size batch (each would be saved, and
    loaded, again)."""
    assert len(_model_graphs(micro_dist / "saved_models" / "micro_1k_224")) == 1


def test_a_layer_with_training_behaviour_gets_its_own_graph(tmp_path):
    """Dropout is not training-invariant: the SavedModel's __call__(training=True) must drop units."""
    import keras
    import tensorflow as tf

    from hubpub.export import export_saved_model, round_trip, training_invariant
    from hubpub.manifest import EvalPreprocessing

    inputs = keras.Input((None, None, 3), name="images")
    x = keras.layers.GlobalAveragePooling2D()(inputs)
    x = keras.layers.Dense(64)(x)
    model = keras.Model(inputs, keras.layers.Dropout(0.5)(x))
    assert not training_invariant(model)
    images = np.random.default_rng(0).random((4, 8, 8, 3), dtype=np.float32) + 1
    ev = EvalPreprocessing(resize="shorter", crop_pct=0.875)
    result = export_saved_model(model, tmp_path / "m", kind="feature-extractor", resolution=8, ev=ev, probe=images)
    round_trip(result.probe_outputs, result.path, images, kind="feature-extractor")
    loaded = tf.saved_model.load(str(result.path))
    inference = loaded(tf.constant(images), training=False).numpy()
    training = loaded(tf.constant(images), training=True).numpy()
    np.testing.assert_allclose(inference, result.probe_outputs, atol=1e-6)
    assert (training == 0).mean() > 0.3  # about half the units dropped
    assert len(_model_graphs(result.path)) == 2  # inference and training


def test_export_traces_the_model_once(micro_manifest, micro_checkpoints, tmp_path, monkeypatch):
    """One concrete graph of the model serves __call__ (training=True and False, the model being
    training-invariant), serving_default and serving_bytes: the model is traced exactly once."""
    from hubpub.export import export_saved_model, training_invariant
    from hubpub.families.convnext.model import LayerScale
    from hubpub.pipeline import build_ported

    v = micro_manifest.variant("micro_1k_224")
    model, _ = build_ported(v, micro_checkpoints[v.name], kind="classifier")
    assert training_invariant(model)
    calls = []
    original = LayerScale.call
    monkeypatch.setattr(LayerScale, "call", lambda self, x: calls.append(self.name) or original(self, x))
    export_saved_model(model, tmp_path / "m", kind="classifier", resolution=224, ev=v.eval)
    blocks = sum(v.architecture.depths)
    assert len(calls) == blocks, f"{len(calls) / blocks:g} traces of the model"


def test_a_failed_round_trip_leaves_no_tarball(micro_manifest, micro_checkpoints, tmp_path, monkeypatch):
    """Packing runs beside the round trip; when the round trip fails, its tarball goes too.
    The fault is made by handing the real round trip outputs off by one (a wrong export cannot be
    produced on purpose otherwise)."""
    import hubpub.export
    from hubpub.pipeline import build_variant

    real = hubpub.export.round_trip
    monkeypatch.setattr(hubpub.export, "round_trip", lambda expected, *a, **k: real(expected + 1, *a, **k))
    v = micro_manifest.variant("micro_1k_224")
    with pytest.raises(ExportError, match="differs from the in-memory model"):
        build_variant(v, tmp_path, checkpoint=str(micro_checkpoints[v.name]), kinds=("classifier",), parity=False)
    assert not list((tmp_path / "tars").iterdir()) and not (tmp_path / "reports").exists()


def test_a_failed_parity_leaves_no_saved_model(micro_manifest, micro_checkpoints, tmp_path, monkeypatch):
    """Parity's Keras side runs after the exports (the SavedModel's bytes must not depend on it); when it
    fails, the SavedModels it checked go. The fault is made by a tolerance of 0 (an official checkpoint
    ports within tolerance: a failing port cannot be produced on purpose otherwise)."""
    import hubpub.parity
    from hubpub.errors import ParityError
    from hubpub.pipeline import build_variant

    real = hubpub.parity.check_parity
    monkeypatch.setattr(hubpub.parity, "check_parity", lambda *a, **k: real(*a, **k, tolerance=0.0))
    v = micro_manifest.variant("micro_1k_224")
    with pytest.raises(ParityError, match="> tolerance 0 "):
        build_variant(v, tmp_path, checkpoint=str(micro_checkpoints[v.name]))
    assert not [p for p in tmp_path.rglob("*") if p.is_file()], "files left by a build that failed parity"


def test_the_graph_mode_loader_runs_serving_default(micro_dist):
    """TF Serving and the other C++ loaders restore through the SavedModel's saver and run signatures
    in a session: the TF1 loader does the same from Python."""
    import tensorflow as tf

    path = str(micro_dist / "saved_models" / "micro_1k_224")
    x = np.random.default_rng(0).random((2, 96, 80, 3), dtype=np.float32)
    with tf.Graph().as_default(), tf.compat.v1.Session() as sess:
        meta_graph = tf.compat.v1.saved_model.loader.load(sess, ["serve"], path)
        sig = meta_graph.signature_def["serving_default"]
        got = sess.run(sig.outputs["logits"].name, {sig.inputs["images"].name: x})
    want = tf.saved_model.load(path).signatures["serving_default"](images=tf.constant(x))["logits"].numpy()
    np.testing.assert_allclose(got, want, atol=tolerances.ROUND_TRIP)
