"""Peak RSS while building and porting convnext_large, against the weights' size.

Prints (peak RSS above the TensorFlow-imported baseline) / (weight bytes). Target: <= 2.5.
The checkpoint (random weights, official layout) is written by a separate process first, so its
creation does not count. Usage: python benchmarks/bench_port_memory.py [VARIANT] [--format pth|safetensors]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

MEASURE = r"""
import gc, json, resource, sys, time
def rss_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1]) / 1024
from hubpub._tf import import_tensorflow
import_tensorflow()
import keras  # noqa
from hubpub.manifest import load_manifest
from hubpub.pipeline import build_ported
baseline = rss_mb()
v = load_manifest(sys.argv[1]).variant(sys.argv[2])
t = time.perf_counter()
model, report = build_ported(v, sys.argv[3], kind="classifier")
seconds = time.perf_counter() - t
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"baseline_mb": baseline, "peak_mb": peak, "after_mb": rss_mb(),
                  "weight_bytes": report.weight_bytes, "parameters": report.parameters, "seconds": seconds}))
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("variant", nargs="?", default="convnext_large_1k_224")
    ap.add_argument("--format", choices=["pth", "safetensors"], default="pth")
    ap.add_argument("--manifest", default=str(ROOT / "collection.yaml"))
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "port_memory.json"))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = Path(tmp) / f"ckpt.{args.format}"
        make = ("from hubpub.manifest import load_manifest; from hubpub.convert import save_checkpoint; import sys; "
                "v = load_manifest(sys.argv[1]).variant(sys.argv[2]); "
                "save_checkpoint(v.family.random_checkpoint(v.architecture, v.num_classes), sys.argv[3])")
        subprocess.run([sys.executable, "-c", make, args.manifest, args.variant, str(ckpt)], check=True)
        out = subprocess.run([sys.executable, "-c", MEASURE, args.manifest, args.variant, str(ckpt)],
                             check=True, capture_output=True, text=True)
    r = json.loads(out.stdout.strip().splitlines()[-1])
    ratio = (r["peak_mb"] - r["baseline_mb"]) * 2**20 / r["weight_bytes"]
    r.update(variant=args.variant, format=args.format, ratio=ratio, target=2.5)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(r, indent=2) + "\n")
    print(f"{args.variant} ({args.format}): {r['parameters'] / 1e6:.1f}M params, "
          f"{r['weight_bytes'] / 2**20:.0f} MiB weights; baseline {r['baseline_mb']:.0f} MiB, "
          f"peak {r['peak_mb']:.0f} MiB, build+port {r['seconds']:.1f}s")
    print(f"ratio (peak - baseline) / weights = {ratio:.2f} (target <= 2.5): {'PASS' if ratio <= 2.5 else 'FAIL'}")
    return 0 if ratio <= 2.5 else 1


if __name__ == "__main__":
    sys.exit(main())
