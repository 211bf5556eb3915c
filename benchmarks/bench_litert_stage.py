"""The LiteRT stage alone: its time and memory for one artifact, and whether its files are the same bytes
from two processes.

A variant's classifier is built without optional formats (random official-format weights, as
bench_stage_memory.py makes them); then the LiteRT stage (`LiteRT.build`, the four formats, calibrated on
the sample photos) runs in a fresh process, twice. Figures per run: the stage's seconds, its memory rise (the
process's peak during the stage above its resident set just before it, TensorFlow and the libraries imported),
as a multiple of the weight bytes. Targets for ConvNeXt tiny: <= 12 s, rise <= 3x the weights, the two runs'
files byte-identical. Writes benchmarks/results/litert_stage.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET_SECONDS, TARGET_RATIO = 12.0, 3.0
DEFAULT = ("collection.yaml:convnext_tiny_1k_224",)

BUILD = r"""
import sys
from pathlib import Path
from hubpub.convert import RANDOM_WEIGHTS_KEY, save_checkpoint
from hubpub.manifest import load_manifest
from hubpub.pipeline import build_variant
v = load_manifest(sys.argv[1]).variant(sys.argv[2])
ckpt = save_checkpoint(v.family.random_checkpoint(v.architecture, v.num_classes, seed=0),
                       Path(sys.argv[3]) / "c.safetensors", metadata={RANDOM_WEIGHTS_KEY: "true"})
build_variant(v, Path(sys.argv[3]) / "dist", checkpoint=str(ckpt), kinds=("classifier",), parity=False, formats=())
"""

STAGE = r"""
import dataclasses, json, sys, time
from pathlib import Path
from hubpub._tf import import_tensorflow
import_tensorflow()
import ai_edge_litert.interpreter, ai_edge_quantizer.quantizer  # noqa: F401 - imported before the baseline
import numpy as np
from hubpub.formats import FormatJob
from hubpub.formats.litert import FORMATS, LiteRT
from hubpub.layout import Dist
from hubpub.manifest import load_manifest
from hubpub.parity import reference_images

def rss_mb(field):
    return next(int(l.split()[1]) // 1024 for l in open("/proc/self/status") if l.startswith(field + ":"))

v = load_manifest(sys.argv[1]).variant(sys.argv[2])
v = dataclasses.replace(v, litert_formats=FORMATS)
dist = Dist(Path(sys.argv[3]))
images = reference_images(v.resolution, v.resolution, 2, 0)
job = FormatJob(v.name, dist.saved_model(v.name), dist, images, None, v.parameter_count(), variant=v,
                random_weights=True)
Path("/proc/self/clear_refs").write_text("5")  # the peak from here on
before = rss_mb("VmRSS")
start = time.perf_counter()
files = LiteRT().build(job)
seconds = time.perf_counter() - start
print("RESULT " + json.dumps({"seconds": seconds, "before_mb": before, "peak_mb": rss_mb("VmHWM"),
                              "weight_bytes": 4 * v.parameter_count(),
                              "files": {f.format: {"sha256": f.sha256, "size": f.size, "cosine": f.cosine,
                                                   "max_abs": f.max_abs, "top1_agreement": f.top1_agreement}
                                        for f in files}}))
"""


def _run(script: str, *args: str) -> str:
    out = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, cwd=ROOT)
    if out.returncode:
        raise SystemExit(f"{args}: exit {out.returncode}\n{out.stderr[-3000:]}")
    return out.stdout


def measure(item: str, runs: int) -> dict:
    manifest, variant = item.split(":")
    with tempfile.TemporaryDirectory(prefix="hubpub-bench-litert-stage-") as tmp:
        _run(BUILD, manifest, variant, tmp)
        results = []
        for _ in range(runs):
            out = _run(STAGE, manifest, variant, str(Path(tmp) / "dist"))
            results.append(json.loads(next(line for line in out.splitlines() if line.startswith("RESULT "))[7:]))
    first = results[0]
    rises = [(r["peak_mb"] - r["before_mb"]) * 2**20 / r["weight_bytes"] for r in results]
    same = all({k: f["sha256"] for k, f in r["files"].items()} == {k: f["sha256"] for k, f in first["files"].items()}
               for r in results)
    summary = {"variant": variant, "weight_bytes": first["weight_bytes"],
               "seconds": [round(r["seconds"], 2) for r in results],
               "rise_mb": [r["peak_mb"] - r["before_mb"] for r in results],
               "rise_ratio": [round(x, 2) for x in rises], "byte_identical_across_processes": same,
               "files": first["files"],
               "size_ratio": {k: round(f["size"] / first["files"]["float32"]["size"], 3)
                              for k, f in first["files"].items()}}
    ok = max(summary["seconds"]) <= TARGET_SECONDS and max(rises) <= TARGET_RATIO and same
    print(f"{variant}: LiteRT stage {', '.join(f'{s:.1f}' for s in summary['seconds'])} s (<= {TARGET_SECONDS:g}), "
          f"rise {', '.join(str(m) for m in summary['rise_mb'])} MiB = "
          f"{', '.join(f'{x:.2f}' for x in rises)}x the weights (<= {TARGET_RATIO:g}), byte-identical: {same}; "
          + "; ".join(f"{k} cosine {f['cosine']:.4f}" for k, f in first["files"].items())
          + f": {'PASS' if ok else 'MISS'}", flush=True)
    return {**summary, "pass": ok}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--variants", default=",".join(DEFAULT), help="comma-separated MANIFEST:VARIANT")
    ap.add_argument("--runs", type=int, default=2, help="processes per variant (their files are compared)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "litert_stage.json"))
    args = ap.parse_args()
    results = [measure(item, args.runs) for item in args.variants.split(",")]
    Path(args.out).write_text(json.dumps({"command": " ".join(["python", *sys.argv]), "target_seconds":
                                          TARGET_SECONDS, "target_ratio": TARGET_RATIO, "variants": results},
                                         indent=2) + "\n")
    return 0 if all(r["pass"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
