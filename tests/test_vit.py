"""The Vision Transformer family (ViT, DeiT): parity per block against the reference and against timm itself,
any input size (position embeddings resampled in the model), timm's and transformers' layouts.

Tolerance: max |Δ| of the logits (or pre-logits) <= 1e-4 (fp32), hubpub's parity tolerance.
"""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hubpub.convert import official_tensors, port_weights, read_checkpoint, save_checkpoint
from hubpub.errors import CheckpointError
from hubpub.families import FAMILIES
from hubpub.families.vit import model as vit_model
from hubpub.families.vit.rules import to_transformers
from hubpub.parity import TOLERANCE, check_parity, reference_images
from tests import test_hubs
from tests.conftest import ROOT

VIT = FAMILIES["vit"]
# The hub stand-ins' fixtures (`kaggle`, `hf`), for this module too.
kaggle_stand_in = test_hubs.kaggle
hf_stand_in = test_hubs.hf
HERE = Path(__file__).parent / "timm_reference"
MICRO = {"family": "vit", "depth": 2, "width": 32, "heads": 4, "img_size": 64}
CONFIGS = {
    "token": MICRO,
    "distilled": {**MICRO, "distilled": True},
    "avg": {**MICRO, "class_token": False, "global_pool": "avg", "mean": [0.5] * 3, "std": [0.5] * 3},
}
# native, larger and non-square, smaller (the grid shrunk: antialiased resampling), one patch row
SIZES = [(64, 64), (96, 160), (32, 48), (16, 32)]


def _arch(config="token"):
    return VIT.parse(CONFIGS[config])


def _ported(arch, path, classifier=True, num_classes=10):
    model = VIT.build(arch, num_classes=num_classes if classifier else None, input_convention="hub", name="m")
    with read_checkpoint(path) as ckpt:
        port = port_weights(model, ckpt, VIT.converter, arch, classifier=classifier)
    return model, port


def _reference(arch, path, num_classes=10):
    pytest.importorskip("torch")
    with read_checkpoint(path) as ckpt:
        return VIT.reference(arch, num_classes, official_tensors(ckpt, VIT.converter))


@pytest.mark.parametrize("config", list(CONFIGS))
@pytest.mark.parametrize("classifier", [True, False], ids=["classifier", "feature-extractor"])
def test_micro_parity_per_block_at_every_size(tmp_path, config, classifier):
    arch = _arch(config)
    path = save_checkpoint(VIT.random_checkpoint(arch, 10, seed=1), tmp_path / "vit.safetensors")
    model, port = _ported(arch, path, classifier)
    assert port.layout == "timm" and port.parameters == arch.parameter_count(10 if classifier else 0)
    ref = _reference(arch, path)
    for size in SIZES:
        report = check_parity(model, ref, VIT, arch, reference_images(*size), classifier=classifier,
                              raise_on_failure=False)
        assert set(report.taps) == {"patch_embed", "pos_embed", "block_0", "block_1", "pooled",
                                    *(["logits"] if classifier else [])}
        assert all(t.max_abs <= TOLERANCE for t in report.taps.values()), (size, report.taps)


def test_wrong_resampling_is_caught_and_the_native_size_is_not_resampled(tmp_path, monkeypatch):
    """Bicubic without antialiasing (torch's default kernel, a = -0.75) instead of timm's antialiased one
    (a = -0.5): the position-embedding tap and the logits disagree at any other size; at the native size the
    resampling is the identity, so both kernels agree there."""
    arch = _arch()
    path = save_checkpoint(VIT.random_checkpoint(arch, 10, seed=2), tmp_path / "vit.safetensors")
    ref = _reference(arch, path)
    monkeypatch.setattr(vit_model, "_CUBIC_A", -0.75)
    model, _ = _ported(arch, path)
    native = check_parity(model, ref, VIT, arch, reference_images(64, 64), classifier=True, raise_on_failure=False)
    assert native.passed
    other = check_parity(model, ref, VIT, arch, reference_images(96, 160), classifier=True, raise_on_failure=False)
    assert other.taps["pos_embed"].max_abs > 100 * TOLERANCE and not other.passed


def test_qkv_read_heads_first_is_caught(tmp_path):
    """A port that reads timm's qkv rows as (heads, q/k/v, dim) instead of (q/k/v, heads, dim): same shapes,
    every key ported, and parity fails."""
    arch = _arch()
    tensors = VIT.random_checkpoint(arch, 10, seed=3)
    path = save_checkpoint(tensors, tmp_path / "right.safetensors")
    ref = _reference(arch, path)
    d = arch.width // arch.heads
    for key in [k for k in tensors if ".attn.qkv." in k]:
        t = tensors[key]
        tensors[key] = t.reshape(3, arch.heads, d, -1).transpose(1, 0, 2, 3).reshape(t.shape)
    model, _ = _ported(arch, save_checkpoint(tensors, tmp_path / "wrong.safetensors"))
    report = check_parity(model, ref, VIT, arch, reference_images(64, 64), classifier=True, raise_on_failure=False)
    assert report.taps["block_0"].max_abs > 100 * TOLERANCE and not report.passed


@pytest.mark.parametrize("config", ["token", "distilled"])
def test_transformers_layout_ports_to_the_same_weights_and_keras_file_bytes(tmp_path, config):
    from hubpub.formats.keras import LayerWeights, write_keras

    arch = _arch(config)
    tensors = VIT.random_checkpoint(arch, 10, seed=4)
    model_prefix = "deit" if arch.distilled else "vit"
    timm_path = save_checkpoint(tensors, tmp_path / "timm.safetensors")
    hf_path = save_checkpoint(to_transformers(tensors, model_prefix), tmp_path / "hf.pth", wrap=False)
    shas = []
    for path in (timm_path, hf_path):
        model, port = _ported(arch, path)
        assert port.layout == ("timm" if path == timm_path else "transformers")
        shas.append(write_keras(LayerWeights(model), lambda: VIT.build(
            arch, num_classes=10, input_convention="hub", name="m", portable=True), tmp_path / f"{path.stem}.keras"))
    assert shas[0] == shas[1]
    # the reference reads the joined qkv too
    ref = _reference(arch, hf_path)
    report = check_parity(model, ref, VIT, arch, reference_images(96, 160), classifier=True, raise_on_failure=False)
    assert report.passed, report.taps


def test_transformers_keys_that_do_not_fit_are_named(tmp_path):
    arch = _arch()
    hf = to_transformers(VIT.random_checkpoint(arch, 10, seed=5))
    hf["vit.pooler.dense.weight"] = np.zeros((32, 32), np.float32)  # ViTModel's pooler: not in the classifier
    del hf["vit.encoder.layer.1.attention.attention.key.bias"]
    with pytest.raises(CheckpointError) as e:
        _ported(arch, save_checkpoint(hf, tmp_path / "hf.safetensors"))
    msg = str(e.value)
    assert "1 missing: block_1_attn_qkv/bias" in msg
    assert "vit.pooler.dense.weight" in msg and "vit.encoder.layer.1.attention.attention.query.bias" in msg


def test_a_checkpoint_of_another_resolution_is_named_as_such(tmp_path):
    other = VIT.parse({**MICRO, "img_size": 96})
    path = save_checkpoint(VIT.random_checkpoint(other, 10), tmp_path / "vit96.safetensors")
    with pytest.raises(CheckpointError, match="6x6 position grid, .* but the variant's architecture is .* 4x4"):
        _ported(_arch(), path)


def test_config_rules_are_explained():
    from pydantic import ValidationError

    for bad, said in (({"heads": 5}, "not a multiple of heads"), ({"class_token": False}, "needs class_token"),
                      ({"distilled": True, "global_pool": "avg"}, "distillation token"),
                      ({"mean": [0.5] * 3}, "both mean and std"), ({"img_size": 60}, "multiple of patch_size")):
        with pytest.raises(ValidationError, match=said):
            VIT.parse({**MICRO, **bad})


@pytest.mark.parametrize("arch,resolution,gmacs", [
    # DeiT's paper, Table 1 ("FLOPs" are multiply-accumulates): DeiT-Ti, -S, -B at 224, -B at 384
    ({"width": 192, "heads": 3}, 224, 1.3), ({"width": 384, "heads": 6}, 224, 4.6),
    ({"width": 768, "heads": 12}, 224, 17.6), ({"width": 768, "heads": 12, "img_size": 384}, 384, 55.5),
])
def test_multiply_accumulates_match_the_papers(arch, resolution, gmacs):
    a = VIT.parse({"family": "vit", "depth": 12, **arch})
    assert round(a.macs(resolution, 1000) / 1e9, 1) == gmacs


def test_multiply_accumulates_less_attention_products_match_timms_model_card():
    """timm's model cards count no attention products: ViT-B/16 at 224, 16.9 G (their counter also counts some
    elementwise work, a few hundredths of a G: within 0.1 G)."""
    a = VIT.parse({"family": "vit", "depth": 12, "width": 768, "heads": 12})
    tokens = 14 * 14 + 1
    assert abs((a.macs(224, 1000) - a.depth * 2 * tokens * tokens * a.width) / 1e9 - 16.9) < 0.1


# ------------------------------------------------------------------ against timm itself

timm_missing = importlib.util.find_spec("timm") is None or importlib.util.find_spec("torch") is None


def timm_reference(model: str, out: Path, sizes: str, kwargs: dict | None = None, num_classes: int = 1000) -> Path:
    """timm's own model with random weights in its own process (tests/timm_reference/make_vit_reference.py)."""
    if timm_missing:
        if os.environ.get("CI") == "true":
            raise RuntimeError("timm and torch must be installed under CI=true (make test installs them)")
        pytest.skip("timm or torch is not installed (make test installs them)")
    args = [sys.executable, str(HERE / "make_vit_reference.py"), model, str(num_classes), str(out), "--sizes", sizes,
            "--kwargs", json.dumps(kwargs or {})]
    proc = subprocess.run(args, env={**os.environ, "PYTHONPATH": str(HERE)}, capture_output=True, text=True,
                          timeout=1800)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def check_against_timm(arch, out: Path, sizes: str, num_classes: int) -> None:
    """hubpub's port of timm's own state_dict, both kinds, against timm's forward (with `dynamic_img_size`)."""
    config = json.loads((out / "config.json").read_text())
    assert [config["mean"], config["std"]] == [list(v) for v in VIT.normalization(arch)]  # as timm's data config
    for classifier in (True, False):
        model, _ = _ported(arch, out / "timm.safetensors", classifier, num_classes)
        for size in sizes.split(","):
            ref = np.load(out / f"{'logits' if classifier else 'prelogits'}_{size}.npy")
            got = np.asarray(model(np.load(out / f"inputs_{size}.npy"), training=False))
            assert np.abs(got - ref).max() <= TOLERANCE, (classifier, size, np.abs(got - ref).max())
            assert np.abs(ref).max() > 1.0  # outputs a wrong port could not match by accident


@pytest.mark.parametrize("timm_name,config", [("vit_small_patch16_224", "avg"), ("deit_base_distilled_patch16_224",
                                                                                  "distilled")])
def test_micro_like_timm(tmp_path, timm_name, config):
    arch = _arch(config)
    kwargs = {"depth": 2, "embed_dim": 32, "num_heads": 4, "img_size": 64}
    if config == "avg":
        kwargs |= {"class_token": False, "global_pool": "avg"}
    out = timm_reference(timm_name, tmp_path / "timm", "64x64,96x160,32x48", kwargs, num_classes=10)
    check_against_timm(arch, out, "64x64,96x160,32x48", 10)


def _variant(name: str):
    from hubpub.manifest import load_manifest

    return load_manifest(ROOT / "vit.yaml").variant(name)


def check_variant_against_timm(name: str, tmp_path: Path) -> None:
    """A vit.yaml variant against timm's model of that name at full size, both kinds, at the native size and
    a larger non-square one; its normalisation and evaluation crop as timm's data config gives them."""
    v = _variant(name)
    sizes = f"{v.resolution}x{v.resolution},{v.resolution + 32}x{v.resolution + 96}"
    out = timm_reference(name, tmp_path / "timm", sizes, num_classes=v.num_classes)
    assert json.loads((out / "config.json").read_text())["crop_pct"] == v.eval.crop_pct
    check_against_timm(v.architecture, out, sizes, v.num_classes)


def test_vit_small_like_timm(tmp_path):
    check_variant_against_timm("vit_small_patch16_224", tmp_path)


SLOW_VARIANTS = (
    "vit_tiny_patch16_224", "vit_tiny_patch16_384", "vit_small_patch16_384", "vit_base_patch16_224",
    "vit_base_patch16_384", "vit_large_patch16_224", "vit_large_patch16_384", "vit_tiny_patch16_224_in21k",
    "vit_small_patch16_224_in21k", "vit_base_patch16_224_in21k", "vit_large_patch16_224_in21k",
    "deit_tiny_patch16_224", "deit_small_patch16_224", "deit_base_patch16_224", "deit_base_distilled_patch16_224")
SLOW = pytest.mark.skipif(not os.environ.get("HUBPUB_SLOW"),
                          reason="every other vit.yaml variant at full size, against timm: opt in with HUBPUB_SLOW=1")


@SLOW
@pytest.mark.slow
@pytest.mark.parametrize("name", SLOW_VARIANTS)
def test_every_variant_like_timm(tmp_path, name):
    check_variant_against_timm(name, tmp_path)


def test_manifest_lists_every_variant_the_slow_test_checks(root):
    from hubpub.manifest import load_manifest

    names = {v.name for v in load_manifest(root / "vit.yaml").variants}
    assert names == {*SLOW_VARIANTS, "vit_small_patch16_224"}
    m = load_manifest(root / "vit.yaml")
    for v in m.variants:  # timm's Hub file of the model and its tag
        tag = ("augreg_in21k" if v.name.endswith("_in21k") else "fb_in1k" if v.name.startswith("deit")
               else "augreg_in21k_ft_in1k")
        model = v.name.removesuffix("_in21k")
        assert v.checkpoint_url == f"https://huggingface.co/timm/{model}.{tag}/resolve/main/model.safetensors"
        assert v.architecture.img_size == v.resolution
    # the 21k heads' label file: Google's ImageNet-21k classes, in timm's order of them
    labels = m.variant("vit_base_patch16_224_in21k").dataset.labels.read_text().splitlines()
    assert len(labels) == 21843 and all("\t" in line for line in labels)
    if not timm_missing:
        timm_info = Path(importlib.util.find_spec("timm").origin).parent / "data/_info/imagenet21k_goog_synsets.txt"
        assert [line.split("\t")[0] for line in labels] == timm_info.read_text().split()


# ------------------------------------------------------------------ through every stage, one build

PIPELINE = """\
schema_version: 2
publisher: {handle: vittest, name: ViT Test, description: A micro Vision Transformer for the test suite.}
collection: {name: vit-micro, description: A micro distilled ViT.}
docs: {license: apache-2.0, network_architecture: vit}
publish: {destination: PUBLISH_DIR, public_url_base: "http://127.0.0.1:9/vit-micro"}
signing: {key: publisher.pem}
eval_presets:
  64: {resize: shorter, crop_pct: 0.9}
architectures:
  micro: {family: vit, depth: 2, width: 32, heads: 4, img_size: 64, distilled: true, recipe: deit,
          mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5]}
variants:
  - {name: deit_micro_patch16_64, architecture: micro, num_classes: 1000, resolution: 64, top1: 10.0,
     checkpoint: {path: model.safetensors}}
"""
# A consumer's process: no hubpub. The `.keras` file at a size other than the native one, then a fit step.
LOAD = """
import json, sys
sys.modules["hubpub"] = None
import numpy as np
import keras
model = keras.saving.load_model(sys.argv[1])
images = np.load(sys.argv[2])
out = {"backend": keras.backend.backend(), "outputs": keras.ops.convert_to_numpy(model(images)).tolist()}
if len(sys.argv) > 3:
    before = np.array(model.get_layer("pos_embed").get_weights()[0])
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss=loss)
    model.fit(images, np.array([1, 2]), epochs=1, batch_size=2, verbose=0)
    out["changed"] = bool(np.abs(np.array(model.get_layer("pos_embed").get_weights()[0]) - before).max() > 0)
print("RESULT " + json.dumps(out), flush=True)
"""


@pytest.fixture(scope="session")
def vit_build(tmp_path_factory, worker_id):
    """build-all of the micro ViT with --publish, once per test run: under pytest-xdist the first worker to ask
    builds it in the run's shared temp folder, the others wait (tests copy what they change)."""
    from filelock import FileLock

    from tests.conftest import _shared_folder

    pytest.importorskip("torch")
    shared = _shared_folder(tmp_path_factory, worker_id)
    root = shared / "vit_pipeline"
    with FileLock(str(shared / "vit_pipeline.lock")):
        if not (root / "stdout.txt").is_file():
            root.mkdir(exist_ok=True)
            (root / "collection.yaml").write_text(PIPELINE.replace("PUBLISH_DIR", str(root / "published")))
            _key_pair(root, "publisher")
            save_checkpoint(VIT.random_checkpoint(VIT.parse(yaml_arch()), 1000, seed=6), root / "model.safetensors")
            result = subprocess.run([sys.executable, "-m", "hubpub", "-q", "build-all", "--manifest",
                                     str(root / "collection.yaml"), "--out", str(root / "dist"), "--publish",
                                     str(root / "published"), "--public-url", "https://models.example.com/vit"],
                                    capture_output=True, text=True, timeout=900)
            assert result.returncode == 0, result.stderr[-3000:]
            (root / "stdout.txt").write_text(result.stdout)
    return root, (root / "stdout.txt").read_text()


def _key_pair(folder: Path, name: str) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    (folder / f"{name}.pem").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    (folder / f"{name}.pub.pem").write_bytes(key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))


def yaml_arch() -> dict:
    import yaml

    return yaml.safe_load(PIPELINE.replace("PUBLISH_DIR", "x"))["architectures"]["micro"]


def test_every_stage_and_format_of_a_micro_vit(vit_build, hub_cache):
    from click.testing import CliRunner

    from hubpub import tolerances
    from hubpub.cli import cli
    from hubpub.record import read_record

    root, stdout = vit_build
    for name, kind in (("deit_micro_patch16_64", "classifier"), ("deit_micro_patch16_64_fe", "feature-extractor")):
        rec = read_record(root / f"dist/reports/{name}.json")
        assert rec.parity.status == "passed" and rec.parity.max_abs <= TOLERANCE
        assert [tuple(r["size"]) for r in rec.parity.runs] == [(64, 64), (96, 160)]  # the native size, and another
        assert {f"block_{i}" for i in range(2)} <= set(rec.parity.runs[1]["taps"])
        assert rec.round_trip.max_abs <= tolerances.ROUND_TRIP
        assert rec.keras.max_abs <= tolerances.KERAS_FILE
        assert [f.format for f in rec.litert] == ["float32", "float16", "dynamic_int8", "int8"]
        assert rec.litert[0].max_abs <= tolerances.LITERT_FLOAT32
        assert [f.format for f in rec.formats] == ["onnx"] and rec.formats[0].max_abs <= tolerances.ONNX
        doc = (root / f"dist/docs/assets/docs/vittest/models/{name}/1.md").read_text()
        assert "<!-- network-architecture: vit -->" in doc
        assert "This is DeiT-32/16 from [Training data-efficient image transformers" in doc  # its own paper
        assert "An Image is Worth 16x16 Words" in doc  # the family's, among the references
        assert "The normalisation (mean\n  0.5, 0.5, 0.5, standard deviation 0.5, 0.5, 0.5)" in doc  # the variant's own
        published = root / "published" / name / "1.tar.gz"
        out = CliRunner().invoke(cli, ["verify", str(published), "--report", str(root / f"dist/reports/{name}.json"),
                                       *(["--fine-tune"] if kind == "classifier" else [])])
        assert out.exit_code == 0, out.output
        assert "outputs match the build" in out.output
        assert kind == "feature-extractor" or "backbone weights changed" in out.output


def test_keras_file_any_size_on_torch_without_hubpub(vit_build, tmp_path):
    """The `.keras` file at 96x160 on PyTorch, against the SavedModel on the same images, then one fit step
    that changes the position embeddings."""
    import tensorflow as tf

    from hubpub import tolerances

    if importlib.util.find_spec("torch") is None:
        if os.environ.get("CI") == "true":
            raise RuntimeError("torch must be installed under CI=true (make test installs it)")
        pytest.skip("torch is not installed, so Keras' torch backend cannot load the .keras file "
                    "(make test installs it)")
    root, _ = vit_build
    images = reference_images(96, 160, 2, seed=3)
    np.save(tmp_path / "x.npy", images)
    expected = tf.saved_model.load(str(root / "dist/saved_models/deit_micro_patch16_64"))(tf.constant(images)).numpy()
    proc = subprocess.run([sys.executable, "-c", LOAD, str(root / "dist/keras/deit_micro_patch16_64.keras"),
                           str(tmp_path / "x.npy"), "fit"], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "KERAS_BACKEND": "torch", "CUDA_VISIBLE_DEVICES": ""}, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(next(x for x in proc.stdout.splitlines() if x.startswith("RESULT ")).removeprefix("RESULT "))
    assert result["backend"] == "torch" and result["changed"]
    assert np.abs(np.asarray(result["outputs"]) - expected).max() <= tolerances.KERAS_OTHER_BACKEND


def test_reference_traces_for_export_at_any_size():
    """The reference as `torch.export` (the front end of `torch.onnx.export(dynamo=True)`) traces it, with
    the batch, height and width dynamic: one program, right at sizes other than the traced one (of two
    patches or more a side: torch.export treats a size of 1 as a special case of its own)."""
    torch = pytest.importorskip("torch")
    arch = _arch("distilled")
    ref = VIT.reference(arch, 10, VIT.random_checkpoint(arch, 10, seed=7).items())
    h, w = torch.export.Dim("h", min=2, max=64), torch.export.Dim("w", min=2, max=64)
    program = torch.export.export(ref, (torch.rand(2, 3, 96, 160),),
                                  dynamic_shapes={"x": {0: torch.export.Dim("b", min=1, max=64), 2: 16 * h, 3: 16 * w}})
    for size in SIZES[:3]:
        x = torch.rand(1, 3, *size)
        with torch.no_grad():
            assert (program.module()(x) - ref(x)).abs().max().item() <= 1e-6


def test_signed_audited_and_on_both_hubs(vit_build, tmp_path, kaggle_stand_in, hf_stand_in, hub_cache):
    """The signed directory publication passes `audit` (signatures, links, one load of each kind and format);
    the same files go to the Kaggle and HF Hub stand-ins through their real clients, each verified by loading."""
    from click.testing import CliRunner

    from hubpub.cli import cli
    from tests.conftest import copy_built

    root, _ = vit_build
    audit = CliRunner().invoke(cli, ["audit", str(root / "published"), "--public-url", "https://models.example.com/vit",
                                     "--public-key", str(root / "publisher.pub.pem"), "--checkout", str(tmp_path)])
    assert audit.exit_code == 0, audit.output
    assert list((root / "published" / "deit_micro_patch16_64").glob("1.*.sig"))
    dist = copy_built(root / "dist", tmp_path / "dist")
    for dest, said in (("kaggle://testpub/vit-micro", "tensorFlow2/deit-micro-patch16-64"),
                       ("hf://testpub", "deit_micro_patch16_64")):
        args = ["--manifest", str(root / "collection.yaml"), "--dist", str(dist)]
        docs = CliRunner().invoke(cli, ["docs", *args, "--dest", dest])
        assert docs.exit_code == 0, docs.output
        out = CliRunner().invoke(cli, ["publish", *args, "--dest", dest])
        assert out.exit_code == 0, out.output
        assert said in out.output and "verified" in out.output


def test_transformers_checkpoint_builds_the_same_tarball(vit_build, tmp_path):
    """The build's weights in transformers' layout, built in a fresh process: the same tarball bytes as the
    timm-layout build (a SavedModel's bytes depend on the model and its process's TensorFlow work only)."""
    from hubpub.convert import read_checkpoint

    root, _ = vit_build
    with read_checkpoint(root / "model.safetensors") as ckpt:
        hf = save_checkpoint(to_transformers({k: ckpt[k] for k in ckpt}, "deit"), tmp_path / "hf.safetensors")
    proc = subprocess.run([sys.executable, "-m", "hubpub", "-q", "build", "deit_micro_patch16_64", "--manifest",
                           str(root / "collection.yaml"), "--checkpoint", str(hf), "--kinds", "classifier",
                           "--no-parity", "--no-keras", "--no-litert", "--no-onnx", "--out", str(tmp_path / "dist")],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    name = "tars/deit_micro_patch16_64.tar.gz.sha256"
    assert (tmp_path / "dist" / name).read_text() == (root / "dist" / name).read_text()
    assert json.loads((tmp_path / "dist/reports/deit_micro_patch16_64.json").read_text())["checkpoint"]["layout"] \
        == "transformers"
