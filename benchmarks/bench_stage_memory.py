"""Which stage sets a build's peak memory: one variant at a time, built in a fresh process with every
stage its manifest asks for, from a random official-format checkpoint (written by another process).

Each build record holds the process's peak RSS at the end of each stage (`peak_rss_mb`); the stage at
which it first reaches its final value is the one that set it. Per variant: the TensorFlow-imported
baseline (this process, before the build), each stage's rise of the peak, the stage that set it, and
the peak above the baseline as a multiple of the weight bytes (the target of #24: <= 3). The ONNX
conversion runs in a child process: its memory is bench_onnx.py's.

And the floor (`--floor`): a build of only what every artifact needs (the classifier ported,
exported, its round trip and tarball; no parity, no optional format), for the smallest variant and
ConvNeXt tiny. The two give its rise as a fixed part (TensorFlow's cost of tracing and saving a graph,
whatever the weights) plus a slope times the weights: below the size where that line crosses 3x, no
arrangement of the other stages meets the target. Writes benchmarks/results/stage_memory.json
(`--floor` alone: only its `floor`).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET = 3.0
DEFAULT = ("collection.yaml:convnext_tiny_1k_224", "collection.yaml:convnext_large_1k_384",
           "convnext_v2.yaml:convnextv2_large_21k_1k_384")
FLOOR = ("convnext_v2.yaml:convnextv2_atto_1k_224", "collection.yaml:convnext_tiny_1k_224")  # smallest, and tiny

CHECKPOINT = r"""
import sys
from hubpub.convert import RANDOM_WEIGHTS_KEY, save_checkpoint
from hubpub.manifest import load_manifest
v = load_manifest(sys.argv[1]).variant(sys.argv[2])
save_checkpoint(v.family.random_checkpoint(v.architecture, v.num_classes, seed=0), sys.argv[3],
                metadata={RANDOM_WEIGHTS_KEY: "true"})
"""

BUILD = r"""
import json, sys
from pathlib import Path
from hubpub._tf import import_tensorflow
import_tensorflow()
import keras  # noqa: F401 - the baseline is a process with TensorFlow and Keras imported
from hubpub.memory import peak_rss_mb
baseline = peak_rss_mb()
from hubpub.manifest import load_manifest
from hubpub.pipeline import build_variant
v = load_manifest(sys.argv[1]).variant(sys.argv[2])
floor = dict(kinds=("classifier",), parity=False, formats=()) if sys.argv[5:] == ["floor"] else {}
records = build_variant(v, Path(sys.argv[4]), checkpoint=sys.argv[3], **floor)
print("RESULT " + json.dumps({"baseline_mb": baseline, "weight_bytes": 4 * v.parameter_count(),
                              "stages": {r.kind: r.peak_rss_mb for r in records},
                              "seconds": {r.kind: r.timings for r in records}}))
"""


def _run(script: str, *args: str) -> str:
    out = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, cwd=ROOT)
    if out.returncode:
        raise SystemExit(f"{args}: exit {out.returncode}\n{out.stderr[-3000:]}")
    return out.stdout


def rises(stages: dict[str, dict[str, int]], baseline: int) -> tuple[dict[str, int], str]:
    """Each stage's rise of the process's peak (the kinds' stages in the order they ran), and the stage
    that set the peak."""
    order = []  # the variant's stages, then each kind's (a stage both kinds ran is named by kind)
    for kind, peaks in stages.items():
        for stage, mb in peaks.items():
            shared = all(stage in p and p[stage] == mb for p in stages.values())
            name = stage if shared else f"{stage} ({kind})"
            if name not in dict(order):
                order.append((name, mb))
    order.sort(key=lambda item: item[1])  # the peak never falls: sorted by it is the order they ran in
    out, before = {}, baseline
    for name, mb in order:
        out[name], before = mb - before, mb
    peak = max(mb for _, mb in order)
    return out, next(name for name, mb in order if mb == peak)


def measure(item: str, floor: bool = False) -> dict:
    """One build of MANIFEST:VARIANT in a fresh process (`floor`: only what every artifact needs)."""
    manifest, variant = item.split(":")
    with tempfile.TemporaryDirectory(prefix="hubpub-bench-stage-memory-") as tmp:
        checkpoint = str(Path(tmp) / f"{variant}.safetensors")
        _run(CHECKPOINT, manifest, variant, checkpoint)
        out = _run(BUILD, manifest, variant, checkpoint, str(Path(tmp) / "dist"), *(["floor"] if floor else []))
    built = json.loads(next(line for line in out.splitlines() if line.startswith("RESULT "))[7:])
    rise, setter = rises(built["stages"], built["baseline_mb"])
    peak = max(mb for peaks in built["stages"].values() for mb in peaks.values())
    ratio = (peak - built["baseline_mb"]) * 2**20 / built["weight_bytes"]
    top = ", ".join(f"{k} +{v}" for k, v in sorted(rise.items(), key=lambda kv: -kv[1])[:3])
    print(f"{variant}{' (floor)' if floor else ''}: peak {peak} MiB, {ratio:.2f}x the weights above TensorFlow's "
          f"{built['baseline_mb']} MiB, set by {setter}; the largest rises (MiB): {top}", flush=True)
    return {"variant": variant, "weight_bytes": built["weight_bytes"], "baseline_mb": built["baseline_mb"],
            "peak_mb": peak, "ratio": round(ratio, 2), "set_by": setter, "rise_mb": rise, "seconds": built["seconds"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--variants", default=",".join(DEFAULT), help="comma-separated MANIFEST:VARIANT")
    ap.add_argument("--floor", action="store_true", help=f"measure only the floor ({', '.join(FLOOR)}) and "
                    "keep the variants' results on file")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "stage_memory.json"))
    args = ap.parse_args()
    out = Path(args.out)
    if args.floor:
        results = json.loads(out.read_text()) if out.is_file() else {"variants": [], "target": TARGET}
        results["floor"] = [measure(item, floor=True) for item in FLOOR]
    else:
        results = {"variants": [measure(item) for item in args.variants.split(",")],
                   "floor": [measure(item, floor=True) for item in FLOOR], "target": TARGET}
    out.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
