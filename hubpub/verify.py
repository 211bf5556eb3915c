"""Downstream proof: load an artifact the way a user does (`hub.KerasLayer`) and check it.

Compares the outputs on the reference inputs with those recorded at build time, and with
`fine_tune` runs one SGD step through `hub.KerasLayer(handle, trainable=True)` plus a new head.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlparse, urlsplit, urlunsplit

import numpy as np

from hubpub import tolerances
from hubpub.errors import VerifyError
from hubpub.package import DEFAULT_MAX_UNPACKED
from hubpub.parity import reference_images

VERIFY_TOLERANCE = tolerances.VERIFY
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


def read_reference(report_path: Path) -> dict:
    """The reference record of a build report (`reports/<artifact>.json`), checked for what verify reads."""
    from hubpub.record import RecordError, read_record

    try:
        record = read_record(report_path).reference
    except RecordError as e:
        raise VerifyError(f"{e} (or pass --report with the artifact's build report)") from None
    try:
        inputs, outputs = record["inputs"], record["outputs"]
        for key in ("height", "width", "batch", "seed"):
            int(inputs[key])
        np.asarray(outputs["columns"], dtype=np.float64).reshape(int(inputs["batch"]), -1)
        int(outputs["dim"]), list(outputs["argmax"]), list(outputs["l2"])
    except (KeyError, TypeError, ValueError) as e:
        raise VerifyError(f"{report_path}: the build report's reference record is incomplete ({e}); "
                          "rebuild the artifact") from None
    return record


def verify_handle(handle: str, record: dict, *, fine_tune: bool = False,
                  max_unpacked: int = DEFAULT_MAX_UNPACKED, read_by_tensorflow: bool = False) -> VerifyResult:
    """Load `handle` with tf-keras `hub.KerasLayer`, compare with `record`, optionally fine-tune.

    An archive (a URL or a local `.tar.gz`) is downloaded once and checked first: Hub layout, no
    links or escaping paths, at most `max_unpacked` bytes once unpacked. Only then does
    tensorflow_hub fetch it, over loopback HTTP, into a cache that is removed afterwards.
    Errors name `handle`, never a temporary path or port.
    """
    with _checked_loadable(handle, max_unpacked, read_by_tensorflow) as url:
        from hubpub._tf import import_tensorflow

        tf = import_tensorflow()  # without its start-up chatter, if this is the first import
        import tensorflow_hub as hub

        images = reference_images(**record["inputs"])
        try:
            layer = hub.KerasLayer(url)
            outputs = layer(tf.constant(images)).numpy()
        except Exception as e:  # hub raises many types for a bad archive or SavedModel
            raise VerifyError(f"{handle}: hub.KerasLayer could not load it: {type(e).__name__}: "
                              f"{_first_line(e, url, handle)}") from None
        try:
            delta = compare_to_record(outputs, record)
        except VerifyError as e:
            raise VerifyError(f"{handle}: {e}") from None
        tuned = _fine_tune_step(url, images, handle) if fine_tune else None
    return VerifyResult(handle, delta, tuned)


def run_layer(handle: str, images: np.ndarray, *, max_unpacked: int = DEFAULT_MAX_UNPACKED) -> np.ndarray:
    """`hub.KerasLayer(handle)` on `images`, the archive checked first as `verify_handle` checks it."""
    with _checked_loadable(handle, max_unpacked, read_by_tensorflow=False) as url:
        from hubpub._tf import import_tensorflow

        tf = import_tensorflow()
        import tensorflow_hub as hub

        return hub.KerasLayer(url)(tf.constant(images)).numpy()


def verify_keras(handle: str, record: dict, *, fine_tune: bool = False,
                 max_bytes: int = DEFAULT_MAX_UNPACKED) -> VerifyResult:
    """Load a Keras 3 artifact (path or URL) as its users do, with `keras.saving.load_model` and no
    custom objects, compare with `record`, and with `fine_tune` train one step with a new head."""
    import keras

    from hubpub.keras_files import load_keras_file

    with tempfile.TemporaryDirectory(prefix="hubpub-verify-") as tmp:
        path = _local_file(handle, Path(tmp) / "model.keras", max_bytes)
        model = load_keras_file(path, shown_as=handle, max_unpacked=max_bytes)
        images = reference_images(**record["inputs"])
        try:
            delta = compare_to_record(keras.ops.convert_to_numpy(model(images, training=False)), record)
        except VerifyError as e:
            raise VerifyError(f"{handle}: {e}") from None
        return VerifyResult(handle, delta, _keras_fit_step(model, images, handle) if fine_tune else None)


def verify_format(handle: str, record: dict, fmt, *, max_bytes: int = DEFAULT_MAX_UNPACKED) -> VerifyResult:
    """Run a file of a format of `hubpub.formats` (path or URL) as its users do (ONNX: onnxruntime) and
    compare with `record`, within the looser of the format's tolerance and verify's."""
    from hubpub.extras import require
    from hubpub.formats import FormatError

    require(fmt.extra, f"running a {fmt.title} file")
    with tempfile.TemporaryDirectory(prefix="hubpub-verify-") as tmp:
        path = _local_file(handle, Path(tmp) / f"model{fmt.suffix}", max_bytes)
        if path.stat().st_size > max_bytes:
            raise VerifyError(f"{handle}: {path.stat().st_size} bytes, over the limit of {max_bytes}")
        images = reference_images(**record["inputs"])
        try:
            if "://" in handle:  # a local file's companions are beside it already
                _download_companions(handle, path, fmt.companions(path), max_bytes)
            outputs = fmt.run_file(path, images)
            delta = compare_to_record(outputs, record, max(VERIFY_TOLERANCE, fmt.tolerance))
        except (FormatError, VerifyError) as e:
            raise VerifyError(f"{handle}: {e}") from None
        return VerifyResult(handle, delta, None)


def _download_companions(handle: str, path: Path, names: tuple[str, ...], max_bytes: int) -> None:
    """The files a downloaded format file reads beside it (`Format.companions`: plain names, checked), from
    beside its URL into its folder, each checked against its published `.sha256` when there is one."""
    from hubpub._files import sha256_file
    from hubpub.errors import FetchError
    from hubpub.fetch import download

    parts = urlsplit(handle)
    for name in names:
        url = urlunsplit(parts._replace(path=posixpath.join(posixpath.dirname(parts.path), quote(name)), query="",
                                        fragment=""))
        try:
            download(resolve_handle(url), path.parent / name, max_bytes=max_bytes, shown_as=name)
        except FetchError as e:
            raise VerifyError(f"{e} (a file it reads, beside it)") from None
        published = _published_sha256(url, name)
        if published is not None and published != (digest := sha256_file(path.parent / name)):
            raise VerifyError(f"{name}: sha256 {digest} differs from its published {name}.sha256 ({published})")


def _published_sha256(url: str, name: str) -> str | None:
    """The digest in `<url>.sha256` (`<digest>  <name>`, as `sha256sum` writes it), None if nothing is there."""
    import requests

    try:
        r = requests.get(resolve_handle(url + ".sha256"), timeout=30)
    except requests.RequestException as e:
        raise VerifyError(f"{name}.sha256: cannot be read: {type(e).__name__}") from None
    if r.status_code == 404:
        return None
    digest = (r.text.split() or [""])[0].lower() if r.status_code == 200 and len(r.content) < 4096 else ""
    if not re.fullmatch(r"[0-9a-f]{64}", digest):
        raise VerifyError(f"{name}.sha256: not a sha256 file (HTTP {r.status_code})")
    return digest


def _keras_fit_step(model, images: np.ndarray, handle: str) -> dict:
    import keras

    tuned = keras.Sequential([model, keras.layers.Dense(3, name="new_head")])
    before = [np.array(keras.ops.convert_to_numpy(w)) for w in model.trainable_weights]
    tuned.compile(optimizer=keras.optimizers.SGD(0.1),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    loss = float(tuned.fit(images, np.arange(len(images)) % 3, epochs=1, batch_size=len(images),
                           verbose=0).history["loss"][0])
    changed = sum(not np.array_equal(b, keras.ops.convert_to_numpy(w))
                  for b, w in zip(before, model.trainable_weights, strict=True))
    if not np.isfinite(loss) or changed == 0:
        raise VerifyError(f"{handle}: fine-tuning step failed: loss {loss}, {changed} weights changed")
    return {"loss": loss, "backbone_weights_changed": changed, "backbone_weights": len(before)}


def _first_line(error: Exception, url: str, handle: str) -> str:
    """The error's first line, with verify's throwaway URL and paths turned into what the user gave."""
    line = (str(error).strip().splitlines() or [""])[0].replace(url, handle)
    return re.sub(r"/\S*?hubpub-verify-[^/\s]+/(?:tfhub_cache/[0-9a-f]+/|served/)", "", line)


@contextlib.contextmanager
def _checked_loadable(handle: str, max_unpacked: int, read_by_tensorflow: bool) -> Iterator[str]:
    """What hub.KerasLayer should load for `handle`: a directory as it is; an archive checked, then
    served over loopback (tensorflow_hub extracts only downloads) with a throwaway cache."""
    from hubpub.errors import FetchError, PackageError
    from hubpub.fetch import download
    from hubpub.package import check_tarball

    local = Path(handle)
    if "://" not in handle and local.is_dir():
        yield str(local)
        return
    if read_by_tensorflow:  # a bucket address (gs://): TensorFlow's own file system reads it, extracting nothing
        yield handle
        return
    with tempfile.TemporaryDirectory(prefix="hubpub-verify-") as tmp:
        if "://" in handle:
            if urlparse(handle).scheme not in ("http", "https"):
                raise VerifyError(f"{handle}: not an http(s) or gs:// URL, a directory or a .tar.gz file")
            archive = Path(tmp) / "served" / "model.tar.gz"
            archive.parent.mkdir()
            url = resolve_handle(handle)
            try:  # the request tensorflow_hub makes for a URL
                download(url + ("&" if "?" in url else "?") + "tf-hub-format=compressed", archive,
                         max_bytes=max_unpacked, shown_as=handle)
            except FetchError as e:
                raise VerifyError(str(e)) from None
        elif local.is_file():
            archive = local
        else:
            raise VerifyError(f"{handle}: no such file or directory")
        try:
            check_tarball(archive, max_unpacked=max_unpacked, shown_as=handle)
        except PackageError as e:
            raise VerifyError(str(e)) from None
        with _hub_cache(Path(tmp) / "tfhub_cache"), serve_directory(archive.parent) as base:
            yield f"{base}/{archive.name}"


@contextlib.contextmanager
def _hub_cache(path: Path) -> Iterator[None]:
    """Point tensorflow_hub's cache at `path` while the block runs: a loopback URL is used once."""
    before = os.environ.get("TFHUB_CACHE_DIR")
    os.environ["TFHUB_CACHE_DIR"] = str(path)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("TFHUB_CACHE_DIR", None)
        else:
            os.environ["TFHUB_CACHE_DIR"] = before


def _fine_tune_step(url: str, images: np.ndarray, handle: str) -> dict:
    from hubpub._tf import import_tensorflow

    tf = import_tensorflow()
    import tensorflow_hub as hub
    import tf_keras

    layer = hub.KerasLayer(url, trainable=True)
    model = tf_keras.Sequential([tf_keras.Input(images.shape[1:]), layer,
                                 tf_keras.layers.Dense(3, name="new_head")])
    before = [w.numpy().copy() for w in layer.trainable_weights]
    if not before:
        raise VerifyError(f"{handle}: hub.KerasLayer(trainable=True) exposes no trainable weights")
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
        raise VerifyError(f"{handle}: fine-tuning step failed: loss {loss}, {changed} backbone weights changed")
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
    # A short poll: shutdown() waits for the serving loop's next look, 0.5 s by default, on every verify.
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def check_signature(handle: str, *, public_key: Path | None = None, identity: str | None = None,
                    issuer: str | None = None, max_bytes: int = DEFAULT_MAX_UNPACKED) -> None:
    """The signature beside a file or URL (`<handle>.sig`) over its bytes: SignatureError names the file."""
    from hubpub.signing import SUFFIX, SignatureError, read_public_key, verify

    if public_key is not None:  # before anything is downloaded
        read_public_key(public_key)
    if "://" not in handle and Path(handle).is_dir():
        raise SignatureError(f"{handle}: a folder has no signature; check the signed file (.tar.gz, .keras, ...)")
    if urlparse(handle).scheme == "gs":
        raise SignatureError(f"{handle}: give its https:// URL to check the signature")
    with tempfile.TemporaryDirectory(prefix="hubpub-verify-") as tmp:
        name = Path(urlparse(handle).path).name or "artifact"
        local = _local_file(handle, Path(tmp) / name, max_bytes)
        sig = Path(tmp) / (name + SUFFIX)
        try:
            _local_file(handle + SUFFIX, sig, 1 << 20)
        except VerifyError:
            raise SignatureError(f"{handle}: no signature ({handle}{SUFFIX} cannot be read)") from None
        verify(local, sig if sig.is_file() else Path(handle + SUFFIX), public_key=public_key, identity=identity,
               issuer=issuer, shown_as=handle)


def _local_file(handle: str, into: Path, max_bytes: int) -> Path:
    """`handle` itself if it is a local file, else its URL downloaded to `into` (at most `max_bytes`)."""
    from hubpub.errors import FetchError
    from hubpub.fetch import download

    if "://" not in handle:
        if not Path(handle).is_file():
            raise VerifyError(f"{handle}: no such file")
        return Path(handle)
    try:
        download(resolve_handle(handle), into, max_bytes=max_bytes, shown_as=handle)
    except FetchError as e:
        raise VerifyError(str(e)) from None
    return into
