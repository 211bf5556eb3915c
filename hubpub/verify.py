"""Downstream proof: load an artifact the way a user does (`hub.KerasLayer`) and check it.

Compares the outputs on the reference inputs with those recorded at build time, and with
`fine_tune` runs one SGD step through `hub.KerasLayer(handle, trainable=True)` plus a new head.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import numpy as np

from hubpub.errors import VerifyError
from hubpub.parity import reference_images

VERIFY_TOLERANCE = 1e-4
RECORDED_COLUMNS = 64  # enough to pin the outputs down without a 21841-wide table in every report


def reference_record(outputs: np.ndarray, height: int, width: int, batch: int = 2, seed: int = 0) -> dict:
    """What `verify` later compares against: the inputs' recipe (`reference_images(height, width, batch,
    seed)`) and a summary of the model's `outputs` on them."""
    out = np.asarray(outputs, dtype=np.float64)
    return {"inputs": {"height": height, "width": width, "batch": batch, "seed": seed},
            "outputs": {"columns": out[:, :RECORDED_COLUMNS].tolist(), "argmax": out.argmax(-1).tolist(),
                        "l2": np.linalg.norm(out, axis=-1).tolist(), "dim": int(out.shape[-1])}}


def compare_to_record(outputs: np.ndarray, record: dict, tolerance: float = VERIFY_TOLERANCE) -> float:
    rec = record["outputs"]
    if outputs.shape[-1] != rec["dim"]:
        raise VerifyError(f"output width {outputs.shape[-1]} != recorded {rec['dim']}")
    delta = float(np.abs(outputs[:, :RECORDED_COLUMNS] - np.asarray(rec["columns"])).max())
    l2 = np.linalg.norm(outputs.astype(np.float64), axis=-1)
    rel_l2 = float(np.abs(l2 - np.asarray(rec["l2"])).max() / max(np.abs(rec["l2"]).max(), 1e-12))
    if not (delta <= tolerance and rel_l2 <= tolerance) or outputs.argmax(-1).tolist() != rec["argmax"]:
        raise VerifyError(f"outputs differ from the build's record: max |Δ| {delta:.3g}, relative L2 "
                          f"difference {rel_l2:.3g} (tolerance {tolerance:g})")
    return delta


@dataclass(frozen=True)
class VerifyResult:
    handle: str
    max_abs: float
    fine_tune: dict | None


def resolve_handle(handle: str) -> str:
    """Map a public GCS URL to the emulator's host when STORAGE_EMULATOR_HOST is set."""
    emulator = os.environ.get("STORAGE_EMULATOR_HOST")
    parsed = urlparse(handle)
    if emulator and parsed.netloc == "storage.googleapis.com":
        base = emulator if "://" in emulator else f"http://{emulator}"
        return base.rstrip("/") + parsed.path
    return handle


def verify_handle(handle: str, record: dict, *, fine_tune: bool = False) -> VerifyResult:
    """Load `handle` with tf-keras `hub.KerasLayer`, compare with `record`, optionally fine-tune.

    A local `.tar.gz` is served over loopback HTTP, since tensorflow_hub only extracts downloads.
    """
    local = Path(handle)
    if handle.endswith(".tar.gz") and local.is_file():
        with serve_directory(local.parent) as base:
            result = verify_handle(f"{base}/{local.name}", record, fine_tune=fine_tune)
        return VerifyResult(handle, result.max_abs, result.fine_tune)
    return _verify_url(handle, record, fine_tune)


def _verify_url(handle: str, record: dict, fine_tune: bool) -> VerifyResult:
    import tensorflow as tf
    import tensorflow_hub as hub

    url = resolve_handle(handle)
    images = reference_images(**record["inputs"])
    try:
        layer = hub.KerasLayer(url)
        outputs = layer(tf.constant(images)).numpy()
    except Exception as e:  # hub raises many types for a bad URL, archive or SavedModel
        raise VerifyError(f"{handle}: hub.KerasLayer could not load it: {type(e).__name__}: {e}") from None
    try:
        delta = compare_to_record(outputs, record)
    except VerifyError as e:
        raise VerifyError(f"{handle}: {e}") from None
    tuned = _fine_tune_step(url, images) if fine_tune else None
    return VerifyResult(handle, delta, tuned)


def _fine_tune_step(url: str, images: np.ndarray) -> dict:
    import tensorflow as tf
    import tensorflow_hub as hub
    import tf_keras

    layer = hub.KerasLayer(url, trainable=True)
    model = tf_keras.Sequential([tf_keras.Input(images.shape[1:]), layer,
                                 tf_keras.layers.Dense(3, name="new_head")])
    before = [w.numpy().copy() for w in layer.trainable_weights]
    if not before:
        raise VerifyError(f"{url}: hub.KerasLayer(trainable=True) exposes no trainable weights")
    labels = tf.constant(np.arange(len(images)) % 3)
    optimizer = tf_keras.optimizers.SGD(learning_rate=0.1)
    loss_fn = tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    with tf.GradientTape() as tape:
        loss = loss_fn(labels, model(images, training=True))
    grads = tape.gradient(loss, model.trainable_weights)
    optimizer.apply_gradients(zip(grads, model.trainable_weights, strict=True))
    changed = sum(not np.array_equal(b, w.numpy()) for b, w in zip(before, layer.trainable_weights, strict=True))
    loss = float(loss)
    if not np.isfinite(loss) or changed == 0:
        raise VerifyError(f"{url}: fine-tuning step failed: loss {loss}, {changed} backbone weights changed")
    return {"loss": loss, "backbone_weights_changed": changed, "backbone_weights": len(before)}


@contextlib.contextmanager
def serve_directory(root: Path) -> Iterator[str]:
    """Serve a local destination over HTTP on 127.0.0.1, so hub.KerasLayer can fetch a tarball from it.

    tensorflow_hub does not extract a local .tar.gz; over HTTP it does, exactly as for a bucket.
    """
    import threading
    from functools import partial
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(Quiet, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
