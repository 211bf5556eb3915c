"""Porting checked against timm, a ConvNeXt implementation hubpub did not write.

timm's models with random weights are saved with timm's own `state_dict()` (the timm layout) and
hubpub ports that file; an official-layout checkpoint is loaded into timm through timm's own
`checkpoint_filter_fn`, strictly (so timm, not hubpub's shape list, says it is the official layout),
and hubpub ports the same file. Both are compared with timm's forward on the same images, at a
non-square size, within hubpub's parity tolerance. timm runs in its own process, without hubpub,
with a few torchvision names stood in (tests/timm_reference/README.md).
"""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hubpub.manifest import load_manifest
from hubpub.parity import TOLERANCE
from tests.conftest import ROOT

if importlib.util.find_spec("timm") is None or importlib.util.find_spec("torch") is None:  # not imported here
    if os.environ.get("CI") == "true":
        raise RuntimeError("timm and torch must be installed under CI=true (make test installs them)")
    pytest.skip("timm or torch is not installed (make test installs them)", allow_module_level=True)

HERE = Path(__file__).parent / "timm_reference"
# timm's model -> (manifest, architecture): every ConvNeXt and ConvNeXt V2 timm has (timm has no isotropic one)
MODELS = {"convnext_tiny": ("collection.yaml", "tiny"), "convnext_small": ("collection.yaml", "small"),
          "convnext_base": ("collection.yaml", "base"), "convnext_large": ("collection.yaml", "large"),
          "convnext_xlarge": ("collection.yaml", "xlarge"),
          **{f"convnextv2_{a}": ("convnext_v2.yaml", a)
             for a in ("atto", "femto", "pico", "nano", "tiny", "base", "large", "huge")}}
DEFAULT = ("convnext_tiny", "convnextv2_atto")
SLOW = pytest.mark.skipif(not os.environ.get("HUBPUB_SLOW"),
                          reason="the other sizes at full size, against timm: opt in with HUBPUB_SLOW=1")


def _variant(timm_name: str):
    manifest_file, arch = MODELS[timm_name]
    manifest = load_manifest(ROOT / manifest_file)
    return next(v for v in manifest.variants if v.architecture_name == arch and v.num_classes == 1000)


def _timm(timm_name: str, out: Path, official: Path) -> dict[str, np.ndarray]:
    env = {**os.environ, "PYTHONPATH": str(HERE)}
    proc = subprocess.run([sys.executable, str(HERE / "make_reference.py"), timm_name, "1000", str(out),
                           "--official", str(official)], env=env, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {name: np.load(out / f"{name}.npy") for name in ("inputs", "timm_logits", "official_logits")}


def _hubpub_logits(variant, checkpoint: Path, images: np.ndarray) -> np.ndarray:
    from hubpub.pipeline import build_ported

    model, _ = build_ported(variant, checkpoint, kind="classifier")
    return np.asarray(model(images, training=False))


def check_against_timm(timm_name: str, tmp_path: Path) -> None:
    from hubpub.convert import save_checkpoint
    from hubpub.errors import CheckpointError

    variant = _variant(timm_name)
    official = save_checkpoint(variant.family.random_checkpoint(variant.architecture, 1000, seed=3),
                               tmp_path / "official.safetensors")
    ref = _timm(timm_name, tmp_path / "timm", official)
    got = _hubpub_logits(variant, official, ref["inputs"])
    assert np.abs(got - ref["official_logits"]).max() <= TOLERANCE
    assert np.abs(ref["official_logits"]).max() > 1.0  # logits that a wrong port could not match by accident
    timm_file = tmp_path / "timm" / "timm.safetensors"
    if variant.family.name == "convnext":
        got = _hubpub_logits(variant, timm_file, ref["inputs"])
        assert np.abs(got - ref["timm_logits"]).max() <= TOLERANCE
    else:  # hubpub reads ConvNeXt V2 in the official layout only, and says so
        with pytest.raises(CheckpointError, match="official"):
            _hubpub_logits(variant, timm_file, ref["inputs"])


@pytest.mark.parametrize("timm_name", DEFAULT)
def test_ported_like_timm(timm_name, tmp_path):
    check_against_timm(timm_name, tmp_path)


@SLOW
@pytest.mark.slow
@pytest.mark.parametrize("timm_name", [n for n in MODELS if n not in DEFAULT])
def test_ported_like_timm_full_size(timm_name, tmp_path):
    check_against_timm(timm_name, tmp_path)
