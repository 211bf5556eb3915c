"""A no-op rerun of `hubpub build-all` against `hubpub validate` of the same manifest, in one run.

For N variants (default 3 and 42, the size of the ConvNeXt and ConvNeXt V2 collections), a manifest of
N micro ConvNeXt variants (random official-format checkpoints, given with `--checkpoint` as local files:
the stat-keyed hash path) is built once with `--jobs 2`. Then `hubpub build-all` with everything up to
date (records, docs, notebooks, site) and `hubpub validate` each run `--repeats` times in fresh
processes, alternated; the medians are compared. Target: the rerun costs at most 2x the validate.
The artifacts are micro models: what a no-op rerun reads (records, manifest, templates) grows with the
number of artifacts, not with their weights, which it never reads.
Writes benchmarks/results/noop.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
TARGET = 2.0

MANIFEST = """\
schema_version: 2
publisher: {{handle: benchpub, name: Bench Publisher, description: Models for the no-op benchmark.}}
collection: {{name: micro, description: Micro ConvNeXt models for a benchmark.}}
publish: {{destination: gs://bench-bucket/micro, public_url_base: "https://storage.googleapis.com/bench-bucket/micro"}}
litert: {{max_parameters: 0}}
formats: {{onnx: false}}
eval_presets:
  224: {{resize: shorter, crop_pct: 0.875}}
architectures:
  micro: {{family: convnext, depths: [1, 1, 2, 1], dims: [8, 16, 32, 64]}}
variants:
{variants}
"""


def _timed(args: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "hubpub", "-q", *args], cwd=cwd, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"hubpub {' '.join(args[:2])} failed:\n{proc.stderr[-2000:]}")
    return seconds


def measure(n: int, repeats: int, work: Path) -> dict:
    from hubpub.convert import save_checkpoint
    from hubpub.manifest import parse_manifest

    names = [f"micro_{i:02d}_1k_224" for i in range(n)]
    variants = "\n".join(f"  - {{name: {name}, architecture: micro, num_classes: 1000, resolution: 224, "
                         f"checkpoint: {{url: \"https://example.invalid/{name}.pth\"}}}}" for name in names)
    built = (work / "dist" / "build-report.json").is_file()  # --work: a folder of an earlier run, reused
    work.mkdir(parents=True, exist_ok=True)
    text = MANIFEST.format(variants=variants)
    (work / "collection.yaml").write_text(text)
    manifest = parse_manifest(text, work / "collection.yaml")
    overrides = []
    for v in manifest.variants:
        path = work / f"{v.name}.pth"
        if not built:
            save_checkpoint(v.family.random_checkpoint(v.architecture, v.num_classes), path)
        overrides += ["--checkpoint", f"{v.name}={path}"]
    start = time.perf_counter()
    if not built:
        _timed(["build-all", "--jobs", "2", *overrides], work)
    first = time.perf_counter() - start if not built else None
    _timed(["build-all", *overrides], work)  # the report says "up to date" from here on
    rerun, validate = [], []
    for _ in range(repeats):
        rerun.append(_timed(["build-all", *overrides], work))
        validate.append(_timed(["validate"], work))
    result = {"variants": n, "artifacts": 2 * n, "first_build_s": first and round(first, 1),
              "rerun_s": round(statistics.median(rerun), 3), "validate_s": round(statistics.median(validate), 3)}
    result["ratio"] = round(result["rerun_s"] / result["validate_s"], 2)
    print(f"{n} variants: no-op build-all {result['rerun_s']:.2f} s, validate {result['validate_s']:.2f} s "
          f"-> ratio {result['ratio']:.2f} (target <= {TARGET})" + (f"; first build {first:.0f} s" if first else ""),
          flush=True)
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--variants", default="3,42", help="comma-separated collection sizes")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "noop.json"))
    ap.add_argument("--work", help="keep the builds in this folder, and reuse them on the next run")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="hubpub-bench-noop-") as tmp:
        base = Path(args.work) if args.work else Path(tmp)
        runs = [measure(int(n), args.repeats, base / f"n{n}") for n in args.variants.split(",")]
    Path(args.out).write_text(json.dumps({"target": TARGET, "runs": runs}, indent=2) + "\n")
    return 0 if all(r["ratio"] <= TARGET for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
