"""build-all memory and one variant's build time, each against a baseline from the same run.

1. Peak RSS of a `--jobs 1` build-all over tiny, small, base and large (random official-format
   checkpoints), per worker process, above the RSS of a process that has only imported TensorFlow,
   as a multiple of the largest model's weight bytes. Target: <= 3.
2. One variant's build (port, export, round-trip, reproducible pack; parity off) against the floor:
   `tf.saved_model.save` of the same model plus a plain tar of its output. Target: <= 1.3x.
   Each is timed in fresh processes, alternated, `--repeats` times; the medians are compared
   (single runs on this 2-core machine vary by +-0.3 s).
Writes benchmarks/results/build.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

TF_BASELINE = r"""
import json, resource
from hubpub._tf import import_tensorflow
import_tensorflow()
import keras  # noqa
print(json.dumps({"rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

BUILD_ALL = r"""
import json, resource, sys
from pathlib import Path
from hubpub.manifest import load_manifest
from hubpub.pipeline import build_all
m = load_manifest(sys.argv[1])
names = sys.argv[3].split(",")
ckpts = {n: str(Path(sys.argv[4]) / f"{n}.pth") for n in names}
# the formats of hubpub.formats convert in processes of their own: bench_onnx.py measures those
report = build_all(m, Path(sys.argv[2]), only=tuple(names), jobs=1, checkpoints=ckpts, parity=True,
                   formats=("keras", "litert"))
assert not report.failed, report.failed
print(json.dumps({"children_peak_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))
"""

TIMED = r"""
import json, sys, tarfile, time
from pathlib import Path
from hubpub._tf import import_tensorflow
tf = import_tensorflow()
from hubpub.manifest import load_manifest
from hubpub.pipeline import build_ported, build_variant
v = load_manifest(sys.argv[1]).variant(sys.argv[2])
out, ckpt, mode = Path(sys.argv[3]), sys.argv[4], sys.argv[5]
start = time.perf_counter()
if mode == "floor":
    model, _ = build_ported(v, ckpt, kind="classifier")
    tf.saved_model.save(model, str(out / "floor"))
    with tarfile.open(out / "floor.tar", "w") as tar:
        tar.add(out / "floor", arcname=".")
else:
    # what the floor does too: port, export, round trip, pack (the .keras, LiteRT and ONNX files are other
    # artifacts; bench_onnx.py times the ONNX stage)
    build_variant(v, out, checkpoint=ckpt, kinds=("classifier",), parity=False, formats=())
print(json.dumps({"seconds": time.perf_counter() - start}))
"""


def _run(code: str, *args: str) -> dict:
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--variants", default="convnext_tiny_1k_224,convnext_small_1k_224,convnext_base_1k_224,"
                                          "convnext_large_1k_224")
    ap.add_argument("--timed-variant", default="convnext_tiny_1k_224")
    ap.add_argument("--repeats", type=int, default=5, help="timed builds of each kind (the median counts)")
    ap.add_argument("--manifest", default=str(ROOT / "collection.yaml"))
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "build.json"))
    args = ap.parse_args()

    from hubpub.convert import save_checkpoint
    from hubpub.manifest import load_manifest

    manifest = load_manifest(args.manifest)
    names = args.variants.split(",")
    result: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for n in set(names) | {args.timed_variant}:
            v = manifest.variant(n)
            save_checkpoint(v.family.random_checkpoint(v.architecture, v.num_classes), tmp / "ckpt" / f"{n}.pth")
        weight_bytes = max(4 * manifest.variant(n).parameter_count() for n in names)
        baseline = _run(TF_BASELINE)["rss_mb"]
        peak = _run(BUILD_ALL, args.manifest, str(tmp / "dist"), ",".join(names), str(tmp / "ckpt"))["children_peak_mb"]
        ratio = (peak - baseline) * 2**20 / weight_bytes
        result["memory"] = {"variants": names, "tf_baseline_mb": baseline, "worker_peak_mb": peak,
                            "largest_weight_bytes": weight_bytes, "ratio": ratio, "target": 3.0}
        print(f"build-all --jobs 1 over {', '.join(names)}: worker peak {peak:.0f} MiB, TF baseline {baseline:.0f} "
              f"MiB, largest weights {weight_bytes / 2**20:.0f} MiB -> ratio {ratio:.2f} (target <= 3): "
              f"{'PASS' if ratio <= 3 else 'FAIL'}")

        ckpt = str(tmp / "ckpt" / f"{args.timed_variant}.pth")
        samples: dict[str, list[float]] = {"floor": [], "ours": []}
        for i in range(args.repeats):  # alternated, so drift on the machine hits both alike
            for mode in samples:
                out = tmp / f"{mode}{i}"
                samples[mode].append(_run(TIMED, args.manifest, args.timed_variant, str(out), ckpt, mode)["seconds"])
        floor, ours = statistics.median(samples["floor"]), statistics.median(samples["ours"])
        result["time"] = {"variant": args.timed_variant, "floor_seconds": floor, "hubpub_seconds": ours,
                          "samples": samples, "ratio": ours / floor, "target": 1.3}
        print(f"{args.timed_variant} classifier, median of {args.repeats} fresh processes each: hubpub build "
              f"{ours:.2f}s (port, export, round-trip, reproducible tar.gz) vs floor {floor:.2f}s (port, "
              f"tf.saved_model.save, plain tar) -> ratio {ours / floor:.2f} (target <= 1.3): "
              f"{'PASS' if ours / floor <= 1.3 else 'FAIL'}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return 0 if result["memory"]["ratio"] <= 3 and result["time"]["ratio"] <= 1.3 else 1


if __name__ == "__main__":
    sys.exit(main())
