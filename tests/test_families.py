"""The family seam, proven by two families that are not ConvNeXt going through the unchanged stages:
ConvNeXt V2 (ported, with a PyTorch reference of the official model) and a user's own Keras model."""

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from hubpub import tolerances
from hubpub.cli import cli
from hubpub.convert import official_tensors, port_weights, read_checkpoint, save_checkpoint
from hubpub.errors import CheckpointError
from hubpub.families import FAMILIES
from hubpub.families.convnext_v2.config import ConvNeXtV2
from hubpub.manifest import load_manifest
from hubpub.parity import TOLERANCE, check_parity, reference_images

V2 = FAMILIES["convnext_v2"]
MICRO_V2 = ConvNeXtV2(family="convnext_v2", depths=[1, 1, 2, 1], dims=[8, 16, 32, 64])


def _v2_parity(path, *, classifier=True, size=(64, 96), batch=2):
    torch = pytest.importorskip("torch")
    model = V2.build(MICRO_V2, num_classes=10 if classifier else None, input_convention="hub", name="m")
    with read_checkpoint(path) as ckpt:
        port = port_weights(model, ckpt, V2.converter, MICRO_V2, classifier=classifier)
        ref = V2.reference(MICRO_V2, 10, official_tensors(ckpt, V2.converter))
    assert isinstance(ref, torch.nn.Module)
    report = check_parity(model, ref, V2, MICRO_V2, reference_images(*size, batch=batch), classifier=classifier,
                          raise_on_failure=False)
    return model, port, report


@pytest.mark.parametrize("classifier", [True, False])
def test_convnext_v2_parity_per_stage(tmp_path, classifier):
    """Official-layout .pth (GRN gamma/beta stored as (1, 1, 1, 4C)) against the official model's forward."""
    pytest.importorskip("torch")
    path = save_checkpoint(V2.random_checkpoint(MICRO_V2, 10, seed=4), tmp_path / "v2.pth")
    model, port, report = _v2_parity(path, classifier=classifier)
    assert port.layout == "official"
    assert report.passed and report.max_abs <= TOLERANCE, report
    assert set(report.taps) >= {"stem", "stage_0", "stage_1", "stage_2", "stage_3", "pooled"}
    assert all(t.max_abs <= TOLERANCE for t in report.taps.values()), report.taps
    # GRN's gamma and beta were ported (random, far from their zero init)
    grn = model.get_layer("stage_2_block_1_grn")
    assert np.abs(grn.gamma.numpy()).min() > 0.1 and np.abs(grn.beta.numpy()).min() > 0.1
    assert port.parameters == MICRO_V2.parameter_count(10 if classifier else 0) == model.count_params()


def test_grn_normalises_each_image_by_its_own_extent():
    """GRN on tokens flattened across the batch would mix images: one image's output must not depend on
    what else is in its batch."""
    model = V2.build(MICRO_V2, num_classes=10, input_convention="hub", name="m")
    rng = np.random.default_rng(0)
    for w in model.weights:  # non-trivial GRN parameters
        if "grn" in w.path:
            w.assign(rng.uniform(0.5, 1.5, w.shape).astype("float32"))
    a, b = reference_images(64, 64, batch=2, seed=1)
    alone = np.asarray(model(a[None]))
    together = np.asarray(model(np.stack([a, b * 0.1])))
    np.testing.assert_allclose(together[:1], alone, atol=1e-5)


def test_convnext_v1_checkpoint_for_a_v2_variant_is_named(tmp_path):
    v1 = FAMILIES["convnext"]
    arch = v1.parse({"family": "convnext", "depths": [1, 1, 2, 1], "dims": [8, 16, 32, 64]})
    path = save_checkpoint(v1.random_checkpoint(arch, 10), tmp_path / "v1.safetensors")
    model = V2.build(MICRO_V2, num_classes=10, input_convention="hub", name="m")
    with read_checkpoint(path) as ckpt, pytest.raises(
            CheckpointError, match=r"checkpoint is ConvNeXt \(V1, no GRN\) depths \[1, 1, 2, 1\] .*variant's "
                                   r"architecture is ConvNeXt V2 depths \[1, 1, 2, 1\]"):
        port_weights(model, ckpt, V2.converter, MICRO_V2, classifier=True)


def test_v2_manifest_matches_the_official_table(root):
    """Parameter counts from the one shape declaration, against the official README's table."""
    m = load_manifest(root / "convnext_v2.yaml")
    published = {"atto": 3.7, "femto": 5.2, "pico": 9.1, "nano": 15.6, "tiny": 28.6, "base": 89, "large": 198,
                 "huge": 660}
    for key, millions in published.items():
        assert round(m.architectures[key].parameter_count(1000) / 1e6, 1 if millions < 80 else 0) == millions
    assert len(m.variants) == 18 and {v.license for v in m.variants} == {"cc-by-nc-4.0"}
    assert m.variant("convnextv2_huge_21k_1k_512").eval.resize == "squash"


# --------------------------------------------------------------------------- end to end, both new families

MANIFEST = """\
schema_version: 2
publisher: {handle: famtest, name: Family Test, description: Models of two families for the test suite.}
collection: {name: families, description: ConvNeXt V2 and a Keras model of our own.}
docs: {license: apache-2.0}
publish: {destination: PUBLISH_DIR, public_url_base: "http://127.0.0.1:9/families"}
# ONNX is converted by the test itself (`_check_onnx_of_each_family`): one file per family, where build-all
# would make one per artifact (its ONNX stage is tested by the demo and the micro builds).
formats: {onnx: false}
litert: {formats: [float32, int8]}  # the other two are the same path (test_litert, the demo)
eval_presets:
  64: {resize: shorter, crop_pct: 0.875}
datasets:
  shapes: {title: Shapes, classes: 3, labels: shapes-labels.txt}
architectures:
  v2_micro: {family: convnext_v2, depths: [1, 1, 2, 1], dims: [8, 16, 32, 64]}
  mine: {family: keras, features: features, feature_width: 16, min_size: 8, title: ShapeNet-S}
variants:
  - {name: v2_micro_1k_64, architecture: v2_micro, num_classes: 1000, resolution: 64, top1: 12.5,
     license: cc-by-nc-4.0, checkpoint: {path: v2_micro.pth}}
  - {name: shapenet_s, architecture: mine, pretrain: shapes, num_classes: 3, resolution: 64, top1: 97.0,
     description: "A small convolutional network of our own, trained on three shapes.",
     checkpoint: {path: shapenet.keras}}
"""


def _user_model(path: Path) -> Path:
    """A user's own Keras model with only built-in layers, any input size, preprocessing inside."""
    import keras

    inputs = keras.Input((None, None, 3), name="pixels")
    x = keras.layers.Rescaling(2.0, offset=-1.0, name="to_signed")(inputs)
    x = keras.layers.Conv2D(8, 3, strides=2, activation="relu", name="conv1")(x)
    x = keras.layers.Conv2D(16, 3, strides=2, activation="relu", name="conv2")(x)
    x = keras.layers.GlobalAveragePooling2D(name="features")(x)
    outputs = keras.layers.Dense(3, name="logits")(x)
    keras.Model(inputs, outputs, name="shapenet").save(path)
    return path


@pytest.fixture(scope="module")
def family_collection(tmp_path_factory):
    pytest.importorskip("torch")
    root = tmp_path_factory.mktemp("families")
    (root / "collection.yaml").write_text(MANIFEST.replace("PUBLISH_DIR", str(root / "published")))
    (root / "shapes-labels.txt").write_text("circle\ttrue circles\nsquare\tsquares\ntriangle\ttriangles\n")
    manifest = load_manifest(root / "collection.yaml")
    v2 = manifest.variant("v2_micro_1k_64")
    save_checkpoint(v2.family.random_checkpoint(v2.architecture, 1000, seed=5), root / "v2_micro.pth")
    _user_model(root / "shapenet.keras")
    return root


def test_both_families_through_build_all_docs_publish_and_verify(family_collection, hub_cache):
    root = family_collection
    common = ["--manifest", str(root / "collection.yaml")]
    result = subprocess.run([sys.executable, "-m", "hubpub", "-q", "build-all", *common, "--out", str(root / "dist"),
                             "--jobs", "2", "--publish", str(root / "published"), "--public-url",
                             "https://models.example.com/families"], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = {line.split()[0]: line.split() for line in result.stdout.splitlines()[2:6]}
    assert set(rows) == {"v2_micro_1k_64", "v2_micro_1k_64_fe", "shapenet_s", "shapenet_s_fe"}
    assert float(rows["v2_micro_1k_64"][-2]) <= TOLERANCE and rows["shapenet_s"][-2] == "-"  # parity column

    docs = root / "dist/docs/assets/docs/famtest"
    v2_doc = (docs / "models/v2_micro_1k_64/1.md").read_text()
    assert "network-architecture" not in v2_doc  # tfhub.dev's tags/network_architecture.yaml has no V2 id
    assert "<!-- license: cc-by-nc-4.0 -->" in v2_doc  # its tags/license.yaml does have this one
    assert "The weights are released under the CC-BY-NC-4.0 license." in v2_doc
    assert "[ConvNeXt V2: Co-designing and Scaling ConvNets with Masked Autoencoders]" in v2_doc
    assert "and verified against a PyTorch reference" in v2_doc.splitlines()[1]
    mine = (docs / "models/shapenet_s/1.md").read_text()
    assert mine.splitlines()[1].startswith("ShapeNet-S image classifier trained on Shapes at 64x64, giving logits "
                                           "over 3 classes, exported from the publisher's own Keras model.")
    assert "Parity against a PyTorch reference: not checked: the keras family has no reference" in mine
    assert "<!-- license: apache-2.0 -->" in mine and "network-architecture" not in mine
    assert "A small convolutional network of our own" in mine and "ConvNeXt" not in mine
    assert "It returns the output of its layer `features`" in (docs / "models/shapenet_s_fe/1.md").read_text()
    collection = (docs / "collections/families/1.md").read_text()
    assert "ConvNeXt V2 models from" in collection and "Keras models of the publisher's own" in collection

    from hubpub.record import read_record

    rec = read_record(root / "dist/reports/shapenet_s.json")
    assert rec.family == "keras" and rec.parity.max_abs is None and rec.round_trip.max_abs <= tolerances.ROUND_TRIP
    _check_onnx_of_each_family(root / "dist")
    # LiteRT by size: V2 micro's is known from the manifest; a Keras model's only once loaded (`litert: true`)
    assert [f.format for f in read_record(root / "dist/reports/v2_micro_1k_64.json").litert] == ["float32", "int8"]
    assert read_record(root / "dist/reports/shapenet_s.json").litert == ()
    assert rec.parameters == 8 * 27 + 8 + 16 * 72 + 16 + 16 * 3 + 3
    labels = (root / "dist/saved_models/shapenet_s/assets/labels.txt").read_text().splitlines()
    assert labels[2] == "triangle\ttriangles"

    published = root / "published"
    for name in ("v2_micro_1k_64", "shapenet_s_fe"):
        assert (published / name / "1.tar.gz").is_file()
        out = CliRunner().invoke(cli, ["verify", str(published / name / "1.tar.gz"), "--report",
                                       str(root / f"dist/reports/{name}.json"), "--fine-tune"])
        assert out.exit_code == 0, out.output
        assert "outputs match the build" in out.output and "backbone weights changed" in out.output


def _check_onnx_of_each_family(dist: Path) -> None:
    """Each family's `.keras` file converts to ONNX (in one conversion process, as a build's kinds share
    one) and agrees with its SavedModel in onnxruntime at the native and a non-square size."""
    from hubpub.formats import FormatJob, onnx
    from hubpub.layout import Dist
    from hubpub.record import read_record

    d = Dist(dist)
    with onnx.Onnx().session() as converter:
        for name in ("v2_micro_1k_64", "shapenet_s_fe"):
            record = read_record(d.report(name))
            images = reference_images(64, 64, 2, 0)
            saved_model = d.root / record.saved_model
            job = FormatJob(name, saved_model, d, images, _saved_model_run(saved_model, images), record.parameters,
                            made={"keras": (record.keras,)}, session=converter)
            [built] = onnx.Onnx().build(job)
            assert built.max_abs <= tolerances.ONNX and (d.root / built.path).is_file()


def _saved_model_run(saved_model: Path, images: np.ndarray) -> np.ndarray:
    import tensorflow as tf

    return tf.saved_model.load(str(saved_model))(tf.constant(images)).numpy()


def test_hubpub_has_no_family_knowledge_outside_the_families(root):
    """The generic stages name no family: only hubpub/families/ (and its explicit list) does."""
    found = []
    for path in (root / "hubpub").rglob("*.py"):
        rel = path.relative_to(root / "hubpub").as_posix()
        if rel.startswith("families/"):
            continue
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"Hierarchical|convnext", line):
                found.append(f"{rel}:{n}: {line.strip()}")
    assert not found, "\n".join(found)


@pytest.mark.parametrize("manifest,variant,gmacs", [
    ("collection.yaml", "convnext_tiny_1k_224", 4.5), ("collection.yaml", "convnext_small_1k_224", 8.7),
    ("collection.yaml", "convnext_base_1k_384", 45.1), ("collection.yaml", "convnext_large_1k_384", 101.0),
    ("collection.yaml", "convnext_iso_small_1k_224", 4.3), ("collection.yaml", "convnext_iso_large_1k_224", 59.7),
    ("convnext_v2.yaml", "convnextv2_atto_1k_224", 0.55), ("convnext_v2.yaml", "convnextv2_nano_1k_224", 2.45),
])
def test_multiply_accumulates_match_the_papers_tables(root, manifest, variant, gmacs):
    """The papers' "FLOPs" (multiply-accumulates) for each size, from the architecture settings alone."""
    from hubpub.manifest import load_manifest

    v = load_manifest(root / manifest).variant(variant)
    assert round(v.architecture.macs(v.resolution, v.num_classes) / 1e9, 2 if gmacs < 3 else 1) == gmacs
