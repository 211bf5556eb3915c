"""build-all on a Dask cluster against build-all on this machine, in one run.

The ConvNeXt V2 atto, femto and pico (random official-format checkpoints, given with `--checkpoint`)
are built end to end (both kinds, every stage and format the manifest asks for) twice, each into a
fresh folder: with `--jobs 2` (two worker processes here), and with `--scheduler local:2` (a Dask
LocalCluster of two single-threaded workers, started by the command, each variant a task run in a
fresh process). Throughput is variants per second of the whole command, cluster start included.
Target: the cluster's throughput at least 0.9x the local one (its overhead at most 10 %). The two
builds' artifacts are compared byte for byte too.
Writes benchmarks/results/cluster.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
TARGET = 0.9
VARIANTS = ("convnextv2_atto_1k_224", "convnextv2_femto_1k_224", "convnextv2_pico_1k_224")


def _build(how: list[str], out: Path, overrides: list[str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "hubpub", "-q", "build-all", "--manifest",
                           str(ROOT / "convnext_v2.yaml"), "--out", str(out), *how, *overrides],
                          capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"build-all {' '.join(how)} failed:\n{proc.stderr[-3000:]}")
    return seconds


def _artifacts(dist: Path) -> dict[str, bytes]:
    return {p.relative_to(dist).as_posix(): p.read_bytes()
            for folder in ("tars", "keras", "litert", "onnx") for p in sorted((dist / folder).rglob("*"))
            if p.is_file()}


def main() -> int:
    from hubpub.convert import save_checkpoint
    from hubpub.manifest import load_manifest

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "cluster.json"))
    args = ap.parse_args()
    manifest = load_manifest(ROOT / "convnext_v2.yaml")
    with tempfile.TemporaryDirectory(prefix="hubpub-bench-cluster-") as tmp:
        work, overrides = Path(tmp), []
        for name in VARIANTS:
            v = manifest.variant(name)
            path = save_checkpoint(v.family.random_checkpoint(v.architecture, v.num_classes),
                                   work / f"{name}.safetensors")
            overrides += ["--only", name, "--checkpoint", f"{name}={path}"]
        local = _build(["--jobs", "2"], work / "local", overrides)
        print(f"--jobs 2: {local:.1f} s", flush=True)
        cluster = _build(["--scheduler", "local:2"], work / "cluster", overrides)
        print(f"--scheduler local:2: {cluster:.1f} s", flush=True)
        a, b = _artifacts(work / "local"), _artifacts(work / "cluster")
        identical = a.keys() == b.keys() and all(a[k] == b[k] for k in a)
    ratio = round(local / cluster, 3)
    result = {"variants": list(VARIANTS), "local_jobs2_s": round(local, 1), "cluster_local2_s": round(cluster, 1),
              "throughput_ratio": ratio, "target": TARGET, "files_compared": len(a), "identical": identical}
    print(f"cluster throughput {ratio:.2f}x local (target >= {TARGET}); {len(a)} files, "
          f"{'identical' if identical else 'DIFFERENT'}")
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return 0 if ratio >= TARGET and identical else 1


if __name__ == "__main__":
    sys.exit(main())
