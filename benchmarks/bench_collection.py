"""The whole collection built end to end on this machine: wall time, each variant's stages, and memory.

Every variant of the manifests (default: ConvNeXt's 24 and ConvNeXt V2's 18, at full size, random
official-format checkpoints marked as random weights) is built with `build-all --jobs 2` (`--jobs 1` for
a pair that would not fit in memory together): every stage the manifest asks for (port, parity, export,
round trip, pack, `.keras`, LiteRT and ONNX where wanted), both kinds. To stay within this disk,
variants go in pairs: a pair's checkpoints are written, the pair is built in a fresh process, its
records are kept and its files removed. Per pair: the wall time, and the workers' peak RSS (the ONNX
conversion processes apart: bench_onnx.py reports theirs) above a process that has only imported
TensorFlow, as a multiple of the larger variant's weight bytes (target <= 3, as bench_build.py). Per
variant: the seconds of each stage, from its build records. The baseline is the TensorFlow-imported
process, measured in the same run. Writes benchmarks/results/collection.json. A rerun of some variants
(`--only GLOBS --merge --out benchmarks/results/collection_rerun.json`) keeps its own file, the whole
run's figures apart.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET = 3.0

TF_BASELINE = r"""
import json, resource
from hubpub._tf import import_tensorflow
import_tensorflow()
import keras  # noqa
print(json.dumps({"rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

# The workers' own peak (VmHWM of this process's children, sampled): not their children's, the ONNX
# conversion processes, whose memory bench_onnx.py reports (RUSAGE_CHILDREN would count those too).
BUILD_PAIR = r"""
import json, os, sys, threading, time
from pathlib import Path
from hubpub.manifest import load_manifest
from hubpub.pipeline import build_all
peaks, done = {}, threading.Event()
def sample():
    while not done.is_set():
        for task in Path(f"/proc/{os.getpid()}/task").iterdir():
            for pid in (task / "children").read_text().split():
                try:
                    hwm = next(int(line.split()[1]) for line in open(f"/proc/{pid}/status") if line.startswith("VmHWM"))
                except (OSError, StopIteration):
                    continue
                peaks[pid] = max(peaks.get(pid, 0), hwm)
        time.sleep(0.2)
threading.Thread(target=sample, daemon=True).start()
m = load_manifest(sys.argv[1])
names = sys.argv[3].split(",")
ckpts = {n: str(Path(sys.argv[4]) / f"{n}.safetensors") for n in names}
report = build_all(m, Path(sys.argv[2]), only=tuple(names), jobs=int(sys.argv[5]), checkpoints=ckpts, force=True)
done.set()
errors = {r.artifact: r.error for r in report.artifacts if r.status == "failed"}
peak = max(peaks.values(), default=0) / 1024
print(json.dumps({"failed": report.failed, "errors": errors, "children_peak_mb": peak}))
"""


def _run(code: str, *args: str) -> dict:
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def _peak_set_by(record, records) -> str | None:
    """The stage of `record` at whose end its build process had first reached the process's peak (the
    stages of both kinds run in one process); None if another artifact's stage reached it."""
    peak = max((mb for r in records if r.variant == record.variant for mb in r.peak_rss_mb.values()), default=None)
    return next((stage for stage, mb in record.peak_rss_mb.items() if mb == peak), None)


def main() -> int:
    import os

    from hubpub.convert import RANDOM_WEIGHTS_KEY, save_checkpoint
    from hubpub.manifest import load_manifest
    from hubpub.pipeline.cluster import memory_needed
    from hubpub.record import read_records

    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--manifests", default="collection.yaml,convnext_v2.yaml")
    ap.add_argument("--only", default="*", help="comma-separated globs on variant names")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "collection.json"))
    ap.add_argument("--merge", action="store_true",
                    help="add this run's pairs to --out (a rerun of some variants), replacing theirs")
    ap.add_argument("--deadline-minutes", type=float, default=None,
                    help="start no pair after this long (the result then says how many variants it holds)")
    args = ap.parse_args()
    globs = args.only.split(",")
    baseline = _run(TF_BASELINE)["rss_mb"]
    pairs, variants, start = [], {}, time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="hubpub-bench-collection-") as tmp:
        for manifest_name in args.manifests.split(","):
            manifest_path = ROOT / manifest_name
            manifest = load_manifest(manifest_path)
            selected = [v for v in manifest.variants if any(fnmatch.fnmatch(v.name, g) for g in globs)]
            for i in range(0, len(selected), 2):
                if args.deadline_minutes and time.perf_counter() - start > 60 * args.deadline_minutes:
                    break
                pair = selected[i:i + 2]
                work = Path(tmp) / f"{manifest_name}-{i}"
                for v in pair:
                    save_checkpoint(v.family.random_checkpoint(v.architecture, v.num_classes),
                                    work / "ckpt" / f"{v.name}.safetensors", metadata={RANDOM_WEIGHTS_KEY: "true"})
                # two at once only where both fit, as hubpub.pipeline.cluster.memory_needed sizes them
                jobs = 2 if sum(memory_needed(v.parameter_count()) for v in pair) < 0.8 * memory else 1
                began = time.perf_counter()
                built = _run(BUILD_PAIR, str(manifest_path), str(work / "dist"), ",".join(v.name for v in pair),
                             str(work / "ckpt"), str(jobs))
                seconds = time.perf_counter() - began
                weights = max(4 * v.parameter_count() for v in pair)
                ratio = (built["children_peak_mb"] - baseline) * 2**20 / weights
                pairs.append({"variants": [v.name for v in pair], "jobs": jobs, "seconds": round(seconds, 1),
                              "worker_peak_mb": round(built["children_peak_mb"]), "largest_weight_bytes": weights,
                              "ratio": round(ratio, 2), "failed": built["failed"], "errors": built["errors"]})
                records = read_records(work / "dist" / "reports")
                for name, record in records.items():
                    variants[name] = {"variant": record.variant, "parameters": record.parameters,
                                      "stages": record.timings, "seconds": round(sum(record.timings.values()), 1),
                                      "peak_rss_mb": record.peak_rss_mb,
                                      "peak_set_by": _peak_set_by(record, records.values())}
                print(f"{', '.join(v.name for v in pair)}: {seconds:.0f} s, worker peak "
                      f"{built['children_peak_mb']:.0f} MiB, ratio {ratio:.2f} (target <= {TARGET})", flush=True)
                shutil.rmtree(work)  # this disk holds a pair's files, not the collection's
    total = time.perf_counter() - start
    wanted = sum(1 for name in args.manifests.split(",") for v in load_manifest(ROOT / name).variants
                 if any(fnmatch.fnmatch(v.name, g) for g in globs))
    if args.merge and Path(args.out).is_file():  # the runs' figures add up; a variant rebuilt replaces its own
        before = json.loads(Path(args.out).read_text())
        ours = {v for p in pairs for v in p["variants"]}
        pairs = [p for p in before["pairs"] if not ours & set(p["variants"])] + pairs
        variants = {k: v for k, v in before["artifacts_stages"].items() if v["variant"] not in ours} | variants
        total, wanted = total + before["wall_seconds"], wanted + before["variants_selected"]
    worst = max(p["ratio"] for p in pairs)
    result = {"manifests": args.manifests.split(","), "variants": sum(len(p["variants"]) for p in pairs),
              "variants_selected": wanted,
              "artifacts": len(variants), "wall_seconds": round(total, 1), "tf_baseline_mb": round(baseline),
              "worst_ratio": worst, "target": TARGET, "pairs": pairs, "artifacts_stages": variants}
    print(f"{result['variants']} variants ({len(variants)} artifacts) in {total / 60:.1f} min; the worst peak RSS "
          f"{worst:.2f}x the weights (target <= {TARGET})")
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return 0 if worst <= TARGET and not any(p["failed"] for p in pairs) else 1


if __name__ == "__main__":
    sys.exit(main())
