"""LiteRT speed and size against the SavedModel, measured in the same run, one process per figure.

images/s at batch 1 with 2 threads: the int8 and float16 LiteRT files through the LiteRT interpreter
(`ai-edge-litert`, XNNPACK) against the float32 SavedModel through `tf.saved_model.load` (its
serving function). ConvNeXt tiny and ConvNeXt V2 atto, random weights in the official layout, built
by hubpub as `build` does. Targets: int8 >= 2x the SavedModel, cosine similarity of the int8
outputs >= 0.99 on the sample photos (top-1 agreement reported, not gated: random weights), int8
file <= 0.3x the float32 file. Two int8 files are measured: int8 weights with float activations
(`dynamic_int8`, gated) and full integer (`int8`, reported: see the README for why it is slower
here). Writes benchmarks/results/litert.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

TIMER = r"""
import json, sys, time
import numpy as np
kind, path, res, threads, repeats = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
x = np.random.default_rng(0).random((1, res, res, 3), dtype=np.float32)
if kind == "savedmodel":
    import tensorflow as tf
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    fn = tf.saved_model.load(path).signatures["serving_default"]
    xt = tf.constant(x)
    run = lambda: fn(images=xt)
else:
    from ai_edge_litert.interpreter import Interpreter
    it = Interpreter(model_path=path, num_threads=threads)
    it.allocate_tensors()
    i, o = it.get_input_details()[0]["index"], it.get_output_details()[0]["index"]
    def run():
        it.set_tensor(i, x)
        it.invoke()
        it.get_tensor(o)
for _ in range(3):
    run()
times = []
for _ in range(repeats):
    start = time.perf_counter()
    run()
    times.append(time.perf_counter() - start)
print(json.dumps({"images_per_second": 1 / sorted(times)[len(times) // 2]}))
"""


def _time(kind: str, path: Path, res: int, args) -> float:
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "3"}
    out = subprocess.run([sys.executable, "-c", TIMER, kind, str(path), str(res), str(args.threads),
                          str(args.repeats)], check=True, capture_output=True, text=True, env=env,
                         cwd=tempfile.gettempdir())
    return json.loads(out.stdout.strip().splitlines()[-1])["images_per_second"]


def measure(manifest_path: str, variant: str, args) -> dict:
    import dataclasses

    from hubpub.convert import save_checkpoint
    from hubpub.layout import Dist
    from hubpub.manifest import load_manifest
    from hubpub.pipeline import build_variant
    from hubpub.record import read_record

    v = load_manifest(manifest_path).variant(variant)
    v = dataclasses.replace(v, litert_formats=("float32", "float16", "dynamic_int8", "int8"), litert_min_cosine=0.0)
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = save_checkpoint(v.family.random_checkpoint(v.architecture, v.num_classes), Path(tmp) / "c.safetensors")
        build_variant(v, Path(tmp) / "dist", checkpoint=str(ckpt), kinds=("classifier",), parity=False,
                      formats=("litert",))
        dist = Dist(Path(tmp) / "dist")
        record = read_record(dist.report(v.name))
        files = {f.format: f for f in record.litert}
        speed = {"savedmodel": _time("savedmodel", dist.saved_model(v.name), v.resolution, args)}
        for fmt in ("float16", "dynamic_int8", "int8"):
            speed[fmt] = _time("litert", dist.litert(v.name, fmt), v.resolution, args)
    return {"variant": v.name, "images_per_second": speed,
            **{f"{fmt}_speedup": speed[fmt] / speed["savedmodel"] for fmt in ("float16", "dynamic_int8", "int8")},
            **{f"{fmt}_{k}": getattr(files[fmt], k) for fmt in ("dynamic_int8", "int8")
               for k in ("cosine", "top1_agreement")},
            **{f"{fmt}_size_ratio": files[fmt].size / files["float32"].size
               for fmt in ("float16", "dynamic_int8", "int8")}}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "litert.json"))
    args = ap.parse_args()
    results = [measure(str(ROOT / "collection.yaml"), "convnext_tiny_1k_224", args),
               measure(str(ROOT / "convnext_v2.yaml"), "convnextv2_atto_1k_224", args)]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    ok = True
    for r in results:
        s = r["images_per_second"]
        passed = (r["dynamic_int8_speedup"] >= 2 and r["dynamic_int8_cosine"] >= 0.99
                  and r["dynamic_int8_size_ratio"] <= 0.3)
        ok &= passed
        print(f"{r['variant']}, batch 1, {args.threads} threads: SavedModel {s['savedmodel']:.1f} img/s; LiteRT "
              f"float16 {s['float16']:.1f} ({r['float16_speedup']:.2f}x); int8 weights (dynamic_int8) "
              f"{s['dynamic_int8']:.1f} ({r['dynamic_int8_speedup']:.2f}x, target >= 2), cosine "
              f"{r['dynamic_int8_cosine']:.4f} (>= 0.99), top-1 agreement {r['dynamic_int8_top1_agreement']:.0%}, "
              f"size {r['dynamic_int8_size_ratio']:.2f}x (<= 0.3): {'PASS' if passed else 'MISS'}; full integer "
              f"(int8) {s['int8']:.1f} ({r['int8_speedup']:.2f}x), cosine {r['int8_cosine']:.4f}, size "
              f"{r['int8_size_ratio']:.2f}x")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
