"""Inference speed of the Keras 3 artifact, each against a baseline measured in the same run.

1. The `.keras` file on the TensorFlow backend (`predict_on_batch`) against the SavedModel it was
   checked against (`tf.saved_model.load`, the serving function). Target: >= 0.9.
2. The `.keras` file on the PyTorch backend against the PyTorch reference in eager mode (the same
   weights, `torch.inference_mode`). Target: >= 0.8.
convnext_tiny (random weights), 224 px, batch 8, 2 threads; one fresh process per figure, because
the Keras backend is chosen per process. Writes benchmarks/results/keras_artifact.json.
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
kind, path = sys.argv[1], sys.argv[2]
threads, batch, res, repeats = (int(a) for a in sys.argv[3:7])
x = np.random.default_rng(0).random((batch, res, res, 3), dtype=np.float32)
if kind in ("savedmodel", "keras-tensorflow"):
    import tensorflow as tf
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
if kind == "savedmodel":
    import tensorflow as tf
    fn = tf.saved_model.load(path).signatures["serving_default"]
    xt = tf.constant(x)
    run = lambda: fn(images=xt)
elif kind.startswith("keras-"):
    import keras
    model = keras.saving.load_model(path)
    if kind == "keras-torch":
        import torch
        torch.set_num_threads(threads)
    run = lambda: model.predict_on_batch(x)
else:  # the PyTorch reference, eager
    import torch
    torch.set_num_threads(threads)
    sys.path.insert(0, sys.argv[7])
    from hubpub.manifest import load_manifest
    from hubpub.convert import official_tensors, read_checkpoint
    from hubpub.parity import normalize
    v = load_manifest(sys.argv[8]).variant(sys.argv[9])
    with read_checkpoint(path) as c:
        ref = v.family.reference(v.architecture, v.num_classes, official_tensors(c, v.family.converter))
    xr = torch.from_numpy(normalize(x, v.family).transpose(0, 3, 1, 2).copy())
    def run():
        with torch.inference_mode():
            ref(xr)
for _ in range(3):
    run()
times = []
for _ in range(repeats):
    start = time.perf_counter()
    run()
    times.append(time.perf_counter() - start)
print(json.dumps({"images_per_second": batch / sorted(times)[len(times) // 2]}))
"""


def _time(kind: str, path: Path, args, backend: str | None = None, extra: tuple[str, ...] = ()) -> float:
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "3"}
    if backend:
        env["KERAS_BACKEND"] = backend
    out = subprocess.run([sys.executable, "-c", TIMER, kind, str(path), str(args.threads), str(args.batch),
                          "224", str(args.repeats), *extra], check=True, capture_output=True, text=True, env=env,
                         cwd=tempfile.gettempdir())
    return json.loads(out.stdout.strip().splitlines()[-1])["images_per_second"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--variant", default="convnext_tiny_1k_224")
    ap.add_argument("--manifest", default=str(ROOT / "collection.yaml"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "keras_artifact.json"))
    args = ap.parse_args()

    from hubpub.convert import save_checkpoint
    from hubpub.layout import Dist
    from hubpub.manifest import load_manifest
    from hubpub.pipeline import build_variant

    v = load_manifest(args.manifest).variant(args.variant)
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = save_checkpoint(v.family.random_checkpoint(v.architecture, v.num_classes), Path(tmp) / "c.safetensors")
        build_variant(v, Path(tmp) / "dist", checkpoint=str(ckpt), kinds=("classifier",), parity=False)
        dist = Dist(Path(tmp) / "dist")
        figures = {
            "savedmodel": _time("savedmodel", dist.saved_model(v.name), args),
            "keras_tensorflow": _time("keras-tensorflow", dist.keras(v.name), args, "tensorflow"),
            "torch_reference": _time("reference", ckpt, args, None, (str(ROOT), args.manifest, v.name)),
            "keras_torch": _time("keras-torch", dist.keras(v.name), args, "torch"),
        }
    result = {"variant": v.name, "threads": args.threads, "batch": args.batch, "images_per_second": figures,
              "tensorflow_ratio": figures["keras_tensorflow"] / figures["savedmodel"], "tensorflow_target": 0.9,
              "torch_ratio": figures["keras_torch"] / figures["torch_reference"], "torch_target": 0.8}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    for backend, base in (("tensorflow", "SavedModel"), ("torch", "PyTorch reference (eager)")):
        ratio, target = result[f"{backend}_ratio"], result[f"{backend}_target"]
        print(f"{v.name}, batch {args.batch}, {args.threads} threads: .keras on {backend} "
              f"{figures['keras_' + backend]:.1f} img/s vs {base} "
              f"{figures['savedmodel' if backend == 'tensorflow' else 'torch_reference']:.1f} img/s -> ratio "
              f"{ratio:.2f} (target >= {target}): {'PASS' if ratio >= target else 'MISS'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
