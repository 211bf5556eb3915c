"""Porting by name and parity against the PyTorch reference. Tolerance: max |Δ logits| <= 1e-4 (fp32)."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from hubpub import tolerances
from hubpub.cli import cli
from hubpub.convert import official_tensors, port_weights, read_checkpoint, save_checkpoint
from hubpub.convert import rules as rules_mod
from hubpub.errors import CheckpointError
from hubpub.families import family_of
from hubpub.families.convnext.config import Hierarchical
from hubpub.families.convnext.rules import to_timm
from hubpub.parity import TOLERANCE, check_parity, reference_images

MICRO = Hierarchical(family="convnext", depths=[1, 1, 2, 1], dims=[8, 16, 32, 64])


def random_checkpoint(arch, num_classes, seed=0):
    return family_of(arch).random_checkpoint(arch, num_classes, seed)


def build_model(arch, num_classes):
    return family_of(arch).build(arch, num_classes=num_classes, input_convention="hub", name="model")


def _parity(arch, path, num_classes=10, size=(64, 96), classifier=True):
    family = family_of(arch)
    model = build_model(arch, num_classes=num_classes if classifier else None)
    with read_checkpoint(path) as ckpt:
        port = port_weights(model, ckpt, family.converter, arch, classifier=classifier)
        ref = family.reference(arch, num_classes, official_tensors(ckpt, family.converter))
    report = check_parity(model, ref, family, arch, reference_images(*size), classifier=classifier,
                          raise_on_failure=False)
    return port, report


@pytest.mark.parametrize("fmt,layout,wrap", [
    ("pth", "official", True),          # official: {"model": state_dict}
    ("safetensors", "timm", False),     # timm names, no torch needed to read
    ("pth", "timm", False),             # timm .pth: a bare state_dict
    ("npz", "official", False),
    ("safetensors", "official", False),
])
def test_every_reader_path_ports_with_parity(tmp_path, fmt, layout, wrap):
    tensors = random_checkpoint(MICRO, 10, seed=1)
    if layout == "timm":
        tensors = to_timm(tensors)
    path = save_checkpoint(tensors, tmp_path / f"ckpt.{fmt}", wrap=wrap)
    port, report = _parity(MICRO, path)
    assert port.layout == layout
    assert report.passed and report.max_abs <= TOLERANCE, report
    assert report.top1_agreement == 1.0
    # every stage, not only the output
    assert set(report.taps) == {"stem", "stage_0", "stage_1", "stage_2", "stage_3", "pooled", "logits"}
    assert all(t.max_abs < TOLERANCE for t in report.taps.values())


def test_isotropic_parity_and_feature_extractor_drops_head(micro_manifest, micro_checkpoints):
    v = micro_manifest.variant("micro_iso_1k_224")
    path = micro_checkpoints[v.name]
    port, report = _parity(v.architecture, path, num_classes=1000, size=(64, 80))
    assert port.layout == "official-isotropic" and report.passed
    port, report = _parity(v.architecture, path, num_classes=1000, size=(64, 80), classifier=False)
    assert port.dropped == ("head.bias", "head.weight")
    assert report.output == "pooled" and report.passed


def test_layer_scale_and_norms_are_randomised():
    tensors = random_checkpoint(MICRO, 10)
    gammas = [v for k, v in tensors.items() if k.endswith(".gamma")]
    assert gammas and all(np.abs(g).min() > 0.1 for g in gammas)  # far from the 1e-6 init
    norms = [v for k, v in tensors.items() if "norm" in k and k.endswith("weight")]
    assert all(not np.allclose(n, 1.0) for n in norms)


def test_conv_transform_keeps_height_and_width_apart():
    w = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)  # (O, I, H, W), H != W
    k = rules_mod.apply_transform("conv", w)
    assert k.shape == (4, 5, 3, 2)
    assert k[1, 3, 2, 0] == w[0, 2, 1, 3]


def test_bare_transpose_bug_is_caught_by_parity(tmp_path, monkeypatch):
    """The original port's `.transpose()` (all axes reversed) swapped H and W of square kernels."""
    path = save_checkpoint(random_checkpoint(MICRO, 10, seed=2), tmp_path / "c.safetensors")
    monkeypatch.setitem(rules_mod.TRANSFORMS, "conv", (3, 2, 1, 0))
    monkeypatch.setitem(rules_mod.TRANSFORMS, "depthwise", (3, 2, 0, 1))
    _, report = _parity(MICRO, path)
    assert not report.passed and report.max_abs > 100 * TOLERANCE


def test_full_size_tiny_parity(tmp_path, root):
    from hubpub.manifest import load_manifest
    from hubpub.pipeline import parity_for_variant

    v = load_manifest(root / "collection.yaml").variant("convnext_tiny_1k_224")
    path = save_checkpoint(v.family.random_checkpoint(v.architecture, 1000, seed=3), tmp_path / "tiny.safetensors")
    result = parity_for_variant(v, path, kinds=("classifier",))
    runs = result["classifier"]["runs"]
    assert [tuple(r["size"]) for r in runs] == [(224, 224), (256, 320)]
    assert result["classifier"]["passed"], result
    assert result["classifier"]["port"]["parameters"] == v.parameter_count()


# ------------------------------------------------------------------ errors, each one clear


def _port(path, arch=MICRO, classifier=True):
    model = build_model(arch, num_classes=10 if classifier else None)
    with read_checkpoint(path) as ckpt:
        return port_weights(model, ckpt, family_of(arch).converter, arch, classifier=classifier)


def test_safetensors_are_read_as_the_library_reads_them_without_keeping_the_file_resident(tmp_path):
    from safetensors.numpy import load_file

    rng = np.random.default_rng(0)
    tensors = {f"w{i}": rng.standard_normal((1024, 1024)).astype(np.float32) for i in range(12)}  # 48 MiB
    tensors |= {"half": rng.standard_normal((3, 5)).astype(np.float16), "count": np.arange(7, dtype=np.int64),
                "empty": np.zeros((0, 4), np.float32), "scalar": np.float32(2.5).reshape(())}
    path = save_checkpoint(tensors, tmp_path / "c.safetensors", metadata={"k": "v"})

    def resident_file_mib() -> int:
        return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("RssFile")) // 1024

    expected = load_file(path)
    with read_checkpoint(path) as ckpt:
        before = resident_file_mib()
        for key in ckpt:
            assert ckpt.shape(key) == expected[key].shape
            np.testing.assert_array_equal(ckpt[key], expected[key].astype(np.float32))
        # The library's own reader keeps each tensor's pages mapped until the file is closed (48 MiB here).
        assert resident_file_mib() - before < 8
        assert ckpt.metadata == {"k": "v"}


@pytest.mark.parametrize("suffix", [".pth", ".safetensors", ".npz"])
def test_corrupt_file(tmp_path, suffix):
    path = tmp_path / f"bad{suffix}"
    path.write_bytes(b"\x00garbage" * 100)
    with pytest.raises(CheckpointError, match=r"bad.*not a readable .* checkpoint"):
        read_checkpoint(path)


@pytest.mark.parametrize("suffix", [".pth", ".safetensors", ".npz"])
def test_truncated_file(tmp_path, suffix):
    path = save_checkpoint(random_checkpoint(MICRO, 10), tmp_path / f"t{suffix}")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(CheckpointError, match=r"t\.\w+") as err:
        _port(path)
    message = str(err.value)
    assert "\n" not in message and len(message) < 400, message  # one line, without a library's advice paragraph


def test_wrong_shape(tmp_path):
    t = random_checkpoint(MICRO, 10)
    t["stages.1.0.pwconv1.weight"] = t["stages.1.0.pwconv1.weight"][:, :8]
    with pytest.raises(CheckpointError, match=r"1 shape mismatch: stages\.1\.0\.pwconv1\.weight \[64, 8\] "
                                              r"-> stage_1_block_0_pwconv1/kernel expects \[16, 64\]"):
        _port(save_checkpoint(t, tmp_path / "c.safetensors"))


def test_missing_key(tmp_path):
    t = random_checkpoint(MICRO, 10)
    del t["stages.2.1.norm.bias"]
    with pytest.raises(CheckpointError, match=r"1 missing: stage_2_block_1_norm/beta"):
        _port(save_checkpoint(t, tmp_path / "c.safetensors"))


def test_extra_key(tmp_path):
    t = random_checkpoint(MICRO, 10)
    t["stages.0.0.pwconv1.extra"] = np.zeros(3, np.float32)
    with pytest.raises(CheckpointError, match=r"1 unexpected: stages\.0\.0\.pwconv1\.extra"):
        _port(save_checkpoint(t, tmp_path / "c.safetensors"))


def test_wrong_architecture(tmp_path):
    other = Hierarchical(family="convnext", depths=[1, 1, 3, 1], dims=[8, 16, 32, 64])
    path = save_checkpoint(random_checkpoint(other, 10), tmp_path / "c.safetensors")
    with pytest.raises(CheckpointError, match=r"checkpoint is hierarchical depths \[1, 1, 3, 1\].*"
                                              r"variant's architecture is hierarchical depths \[1, 1, 2, 1\]"):
        _port(path)


def test_isotropic_checkpoint_for_hierarchical_variant(micro_checkpoints):
    with pytest.raises(CheckpointError, match=r"checkpoint is isotropic depth 2 dim 32"):
        _port(micro_checkpoints["micro_iso_1k_224"])


def test_unknown_layout():
    with pytest.raises(CheckpointError, match="unrecognised checkpoint layout"):
        family_of(MICRO).converter.to_official(["encoder.layer.0.weight"])


def test_safetensors_path_needs_no_torch(tmp_path):
    path = save_checkpoint(to_timm(random_checkpoint(MICRO, 10)), tmp_path / "c.safetensors")
    code = f"""
import sys
sys.modules["torch"] = None  # any import of torch now fails
from hubpub.convert import read_checkpoint, port_weights
from hubpub.families import FAMILIES
from hubpub.families.convnext.config import Hierarchical
arch = Hierarchical(family="convnext", depths=[1, 1, 2, 1], dims=[8, 16, 32, 64])
family = FAMILIES["convnext"]
m = family.build(arch, num_classes=10, input_convention="hub", name="m")
with read_checkpoint({str(path)!r}) as c:
    print(port_weights(m, c, family.converter, arch, classifier=True).assigned)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == str(len(random_checkpoint(MICRO, 10)))


def test_cli_verify_parity(tmp_path, micro_manifest_path, micro_checkpoints):
    report = tmp_path / "r.json"
    args = ["verify-parity", "micro_1k_224", "--checkpoint", str(micro_checkpoints["micro_1k_224"]),
            "--manifest", str(micro_manifest_path), "--size", "64", "64", "--size", "64", "96",
            "--report", str(report)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    import json

    data = json.loads(report.read_text())
    assert data["tolerance"] == tolerances.PARITY
    assert data["kinds"]["classifier"]["passed"] and len(data["kinds"]["classifier"]["runs"]) == 2


def test_cli_verify_parity_wrong_checkpoint_is_one_clear_error(micro_manifest_path, micro_checkpoints):
    args = ["verify-parity", "micro_1k_224", "--checkpoint", str(micro_checkpoints["micro_iso_1k_224"]),
            "--manifest", str(micro_manifest_path)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert result.output.startswith("error: ") and "isotropic" in result.output


SLOW = pytest.mark.skipif(not os.environ.get("HUBPUB_SLOW"),
                          reason="full-size models of every variant: opt in with HUBPUB_SLOW=1")
MANIFESTS = ("collection.yaml", "convnext_v2.yaml")  # ConvNeXt and ConvNeXt V2
ALL_VARIANTS = [(m, v["name"]) for m in MANIFESTS
                for v in yaml.safe_load((Path(__file__).parents[1] / m).read_text())["variants"]]


@SLOW
@pytest.mark.parametrize("manifest,name", ALL_VARIANTS)
def test_full_size_parity_every_variant(tmp_path, root, manifest, name):
    from hubpub.manifest import load_manifest
    from hubpub.pipeline import parity_for_variant

    v = load_manifest(root / manifest).variant(name)
    path = save_checkpoint(random_checkpoint(v.architecture, v.num_classes), tmp_path / "c.pth")
    result = parity_for_variant(v, path, batch=1)
    assert all(r["passed"] for r in result.values()), result


def test_keras_model_serialises_with_its_custom_layers(tmp_path):
    """Custom layers implement get_config: a .keras file reloads to the same function."""
    import keras

    model = build_model(MICRO, num_classes=10)
    port_weights(model, read_checkpoint(save_checkpoint(random_checkpoint(MICRO, 10), tmp_path / "c.npz")),
                 family_of(MICRO).converter, MICRO, classifier=True)
    model.save(tmp_path / "m.keras")
    again = keras.models.load_model(tmp_path / "m.keras")
    x = np.random.default_rng(0).random((1, 48, 80, 3), dtype=np.float32)
    np.testing.assert_allclose(np.asarray(again(x)), np.asarray(model(x)), atol=1e-6)
    names = [layer.name for layer in again.layers]
    assert names[:4] == ["images", "normalize", "stem_conv", "stem_norm"] and "stage_2_block_1_layer_scale" in names
