"""The ONNX file of the convnext_tiny classifier in onnxruntime against its SavedModel in TensorFlow.

Same random weights, 224 px, batch 1 and 8, 2 threads each, measured in the same run; and the ONNX stage's
time in the build against the SavedModel export's, and the conversion process's peak memory above its
baseline (a process that imports what it imports and exits) as a ratio of the weights. Target:
onnxruntime images/s >= 1x the SavedModel's
(the file is worth publishing only if it is not slower than what users already have). Writes
benchmarks/results/onnx.json, which `report.py` turns into README rows.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET = 1.0


def _rate(fn, batch: int, seconds: float) -> float:
    fn()  # warm-up: tracing, allocation, the session's first run
    fn()
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        fn()
        n += 1
    return n * batch / (time.perf_counter() - start)


def _baseline_mb() -> float:
    """The peak resident memory of a process that imports what the conversion process imports, and exits."""
    import os
    import subprocess

    code = ("import resource, tensorflow, torch, keras, onnxscript, onnxruntime, hubpub.formats.onnx; "
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)")
    child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={**os.environ, "KERAS_BACKEND": "torch", "TF_CPP_MIN_LOG_LEVEL": "2"})
    return float(child.stdout.split()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--variant", default="convnext_tiny_1k_224")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "onnx.json"))
    args = ap.parse_args()

    from hubpub._tf import import_tensorflow

    tf = import_tensorflow()
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    import numpy as np
    import onnxruntime as ort

    from hubpub.convert import save_checkpoint
    from hubpub.manifest import load_manifest
    from hubpub.pipeline import build_variant

    v = load_manifest(ROOT / "collection.yaml").variant(args.variant)
    result = {"variant": v.name, "threads": args.threads, "resolution": v.resolution, "runs": []}
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = save_checkpoint(v.family.random_checkpoint(v.architecture, v.num_classes),
                               Path(tmp) / "c.safetensors")
        [record] = build_variant(v, Path(tmp) / "dist", checkpoint=str(ckpt), kinds=("classifier",), parity=False,
                                 formats=("keras", "onnx"))
        [onnx_file] = record.formats
        # the conversion runs in a child process (the build's only one here): its peak resident memory
        result["conversion_peak_mb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        result["conversion_baseline_mb"] = _baseline_mb()
        result["weight_mb"] = record.parameters * 4 / 2**20
        result["onnx_seconds"], result["export_seconds"] = record.timings["onnx"], record.timings["export"]
        result["onnx_max_abs"], result["onnx_mib"] = onnx_file.max_abs, onnx_file.size / 2**20
        serving = tf.saved_model.load(str(Path(tmp) / "dist" / record.saved_model)).signatures["serving_default"]
        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = args.threads, 1
        session = ort.InferenceSession(str(Path(tmp) / "dist" / onnx_file.path), options,
                                       providers=["CPUExecutionProvider"])
        for batch in (1, 8):
            images = np.random.default_rng(0).random((batch, v.resolution, v.resolution, 3), dtype=np.float32)
            tensor = tf.constant(images)
            saved = _rate(lambda t=tensor: serving(images=t)["logits"].numpy(), batch, args.seconds)
            onnx = _rate(lambda x=images: session.run(["logits"], {"images": x}), batch, args.seconds)
            result["runs"].append({"batch": batch, "saved_model_images_per_s": saved,
                                   "onnxruntime_images_per_s": onnx, "ratio": onnx / saved})
            print(f"batch {batch}: SavedModel {saved:.1f} img/s, onnxruntime {onnx:.1f} img/s, "
                  f"ratio {onnx / saved:.2f}")
    print(f"ONNX stage {result['onnx_seconds']:.1f} s, SavedModel export {result['export_seconds']:.1f} s")
    rise = result["conversion_peak_mb"] - result["conversion_baseline_mb"]
    result["command"] = " ".join(["python", "benchmarks/bench_onnx.py", *sys.argv[1:]])
    result["rows"] = [
        {"script": "bench_onnx.py", "measures": f"onnxruntime images/s, {v.name}, {v.resolution} px, batch "
         f"{r['batch']}, {args.threads} threads", "baseline": "the SavedModel in TensorFlow",
         "figure": f"{r['ratio']:.2f}", "target": f">= {TARGET:g}: {'met' if r['ratio'] >= TARGET else 'missed'}"}
        for r in result["runs"]]
    result["rows"].append(
        {"script": "bench_onnx.py", "measures": f"peak memory of the ONNX conversion process, {v.name} "
         f"above its baseline ({rise:.0f} MiB for {result['weight_mb']:.0f} MiB of weights; "
         "`CONVERSION_BYTES_PER_WEIGHT_BYTE` sizes the models it is tried for)", "baseline": "the weights' bytes",
         "figure": f"{rise / result['weight_mb']:.2f}", "target": "<= 3"})
    result["rows"].append(
        {"script": "bench_onnx.py", "measures": f"the ONNX stage of {v.name}'s classifier build (convert in a "
         f"child process, check at two sizes; {result['onnx_mib']:.0f} MiB)", "baseline": "its SavedModel export",
         "figure": f"{result['onnx_seconds'] / result['export_seconds']:.2f}", "target": "<= 2"})
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return 0 if all(r["ratio"] >= TARGET for r in result["runs"]) else 1


if __name__ == "__main__":
    sys.exit(main())
