"""Numeric parity between a ported Keras model and the PyTorch reference on the same inputs."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from hubpub import tolerances
from hubpub._tf import call_in_graph
from hubpub.errors import ParityError
from hubpub.families import ArchConfig, Family

TOLERANCE = tolerances.PARITY  # max |Δ| of the final output (logits, or pooled features), fp32


@dataclass(frozen=True)
class TapDiff:
    shape: tuple[int, ...]
    max_abs: float
    max_rel: float  # max |Δ| / max |reference|: scale-free, unlike an element-wise ratio near 0


@dataclass(frozen=True)
class ParityReport:
    size: tuple[int, int]
    batch: int
    tolerance: float
    output: str
    taps: dict[str, TapDiff]
    top1_agreement: float | None
    input_convention: str

    @property
    def max_abs(self) -> float:
        return self.taps[self.output].max_abs

    @property
    def passed(self) -> bool:
        return self.max_abs <= self.tolerance

    def to_dict(self) -> dict:
        d = asdict(self)
        d["max_abs"] = self.max_abs
        d["passed"] = self.passed
        d["max_rel_definition"] = "max|keras - torch| / max|torch|"
        return d


def reference_images(height: int, width: int, batch: int = 2, seed: int = 0) -> np.ndarray:
    """Deterministic float32 RGB images in [0, 1], NHWC: smooth structure plus noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.meshgrid(np.linspace(0, 1, height), np.linspace(0, 1, width), indexing="ij")
    base = np.stack([xx, yy, 0.5 * (xx + yy)], axis=-1)
    noise = rng.random((batch, height, width, 3))
    return np.clip(0.6 * base[None] + 0.4 * noise, 0, 1).astype(np.float32)


def normalize(images: np.ndarray, family: Family, arch: ArchConfig | None = None) -> np.ndarray:
    """What a `normalized`-convention model (and the reference) takes: (x - mean) / std, the architecture's
    own normalisation if it has one."""
    mean, std = family.normalization(arch)
    return ((images - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)).astype(np.float32)


def reference_taps(torch_model, family: Family, images: np.ndarray,
                   arch: ArchConfig | None = None) -> dict[str, np.ndarray]:
    """The PyTorch reference's outputs at every tap on `images` (NHWC in [0, 1]), channels last: what
    `check_parity` compares with. Computed first, the reference can go before the Keras model is built."""
    import torch

    with torch.no_grad():
        ref = torch_model.forward_taps(torch.from_numpy(normalize(images, family, arch).transpose(0, 3, 1, 2)))
    return {name: (t.numpy().transpose(0, 2, 3, 1) if t.ndim == 4 else t.numpy()) for name, t in ref.items()}


def check_parity(keras_model, reference, family: Family, arch: ArchConfig, images: np.ndarray, *,
                 classifier: bool, input_convention: str = "hub", tolerance: float = TOLERANCE,
                 raise_on_failure: bool = True) -> ParityReport:
    """Compare per-stage outputs, pooled features and logits with the reference (the PyTorch model, or its
    `reference_taps` on the same images); raise `ParityError` above tolerance."""
    import keras

    ref = reference if isinstance(reference, dict) else reference_taps(reference, family, images, arch)
    assert family.taps is not None  # parity is checked only for a family with a reference, and so with taps
    taps = family.taps(arch, classifier)
    probe = keras.Model(keras_model.input, [keras_model.get_layer(n).output for n in taps.values()])
    keras_in = images if input_convention == "hub" else normalize(images, family, arch)
    outputs = call_in_graph(probe, keras_in)  # an eager call would hold every layer's output to its end
    keras_out = dict(zip(taps, outputs if isinstance(outputs, list) else [outputs], strict=True))
    diffs = {}
    for name, k in keras_out.items():
        r = ref[name]
        delta = float(np.abs(k - r).max())
        diffs[name] = TapDiff(tuple(k.shape), delta, delta / max(float(np.abs(r).max()), 1e-12))
    output = "logits" if classifier else "pooled"
    agreement = None
    if classifier:
        agreement = float(np.mean(keras_out["logits"].argmax(-1) == ref["logits"].argmax(-1)))
    report = ParityReport(size=tuple(images.shape[1:3]), batch=len(images), tolerance=tolerance,
                          output=output, taps=diffs, top1_agreement=agreement,
                          input_convention=input_convention)
    if raise_on_failure and not report.passed:
        worst = ", ".join(f"{n} {d.max_abs:.3g}" for n, d in diffs.items())
        raise ParityError(f"max |Δ {output}| {report.max_abs:.3g} > tolerance {tolerance:g} "
                          f"at {images.shape[1]}x{images.shape[2]} (per tap: {worst})")
    return report
