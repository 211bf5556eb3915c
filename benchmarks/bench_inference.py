"""Images/s of the exported convnext_tiny classifier through hub.KerasLayer vs the PyTorch reference.

Same random weights, 224 px, batch 1 and 8, 2 threads each, measured in the same run.
Target: hub.KerasLayer >= 2x PyTorch eager fp32. Writes benchmarks/results/inference.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _rate(fn, batch: int, seconds: float) -> float:
    fn()  # warm-up: tracing, allocation
    fn()
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        fn()
        n += 1
    return n * batch / (time.perf_counter() - start)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--variant", default="convnext_tiny_1k_224")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "inference.json"))
    args = ap.parse_args()

    from hubpub._tf import import_tensorflow

    tf = import_tensorflow()
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    import numpy as np
    import tensorflow_hub as hub
    import torch

    from hubpub.convert import official_tensors, read_checkpoint, save_checkpoint
    from hubpub.manifest import load_manifest
    from hubpub.parity import normalize
    from hubpub.pipeline import build_variant

    torch.set_num_threads(args.threads)
    v = load_manifest(ROOT / "collection.yaml").variant(args.variant)
    results = {"variant": v.name, "threads": args.threads, "resolution": v.resolution, "runs": []}
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = save_checkpoint(v.family.random_checkpoint(v.architecture, v.num_classes),
                               Path(tmp) / "c.safetensors")
        build_variant(v, Path(tmp) / "dist", checkpoint=str(ckpt), kinds=("classifier",), parity=False)
        layer = hub.KerasLayer(str(Path(tmp) / "dist" / "saved_models" / v.name))
        with read_checkpoint(ckpt) as c:
            reference = v.family.reference(v.architecture, v.num_classes, official_tensors(c, v.family.converter))
        for batch in (1, 8):
            images = np.random.default_rng(0).random((batch, v.resolution, v.resolution, 3), dtype=np.float32)
            x_tf = tf.constant(images)
            x_torch = torch.from_numpy(normalize(images, v.family).transpose(0, 3, 1, 2).copy())

            def run_hub(x=x_tf):
                layer(x).numpy()

            def run_torch(x=x_torch):
                with torch.inference_mode():
                    reference(x)

            hub_rate = _rate(run_hub, batch, args.seconds)
            torch_rate = _rate(run_torch, batch, args.seconds)
            row = {"batch": batch, "hub_keras_layer_img_s": hub_rate, "torch_eager_img_s": torch_rate,
                   "ratio": hub_rate / torch_rate}
            results["runs"].append(row)
            print(f"batch {batch}: hub.KerasLayer {hub_rate:.1f} img/s, PyTorch eager {torch_rate:.1f} img/s, "
                  f"ratio {row['ratio']:.2f} (target >= 2.0)")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    ok = all(r["ratio"] >= 2.0 for r in results["runs"])
    print("PASS" if ok else "FAIL: below the 2x target")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
