"""Export a Keras 3 model as a TF2 Reusable SavedModel for `hub.KerasLayer`, plus serving signatures.

Keras 3's `model.export()` and `tf.saved_model.save(model)` give SavedModels that
`hub.KerasLayer(path, trainable=True)` refuses ("Signature name has to be specified for
non-callable saved models"). What works is a bare AutoTrackable whose `__call__` is a tf.function
over the model, with the raw `tf.Variable`s attached. Attaching the Keras model itself would store
every weight twice.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hubpub import tolerances
from hubpub._files import atomic_path
from hubpub.errors import ExportError
from hubpub.manifest import EvalPreprocessing

ROUND_TRIP_TOLERANCE = tolerances.ROUND_TRIP
OUTPUT_NAMES = {"classifier": "logits", "feature-extractor": "feature_vector"}


@dataclass(frozen=True)
class Signature:
    name: str
    inputs: dict[str, tuple[list[int | None], str]]
    outputs: dict[str, tuple[list[int | None], str]]


@dataclass(frozen=True)
class ExportResult:
    path: Path
    kind: str
    output_name: str
    output_dim: int
    signatures: tuple[Signature, ...]
    probe_outputs: np.ndarray | None = None


def export_saved_model(model, out_dir: str | Path, *, kind: str, resolution: int, ev: EvalPreprocessing,
                       labels: Path | None = None, input_convention: str = "hub",
                       normalization: tuple[tuple[float, ...], tuple[float, ...]] | None = None,
                       probe: np.ndarray | None = None) -> ExportResult:
    """Write `model` as a Reusable SavedModel at `out_dir`, atomically (temp dir, then rename).

    `serving_bytes` decodes to [0, 1]; for a `normalized`-convention model it also applies the
    `normalization` (mean, std) the model expects from its caller. With `probe` images, the result
    carries the in-memory model's outputs on them (`probe_outputs`), for the round trip to compare with.
    """
    import tensorflow as tf

    from hubpub._tf import graph_optimisation_off
    from hubpub.eval.preprocess import decode_and_preprocess

    if input_convention == "normalized" and normalization is None:
        raise ValueError("a normalized-convention export needs the (mean, std) its callers apply")

    out_dir = Path(out_dir)
    output_name = OUTPUT_NAMES[kind]
    output_dim = int(model.output.shape[-1])
    # No custom gradients in these models: serialising them would only make the save slower.
    options = tf.saved_model.SaveOptions(experimental_custom_gradients=False)

    obj = tf.__internal__.tracking.AutoTrackable()
    obj.variables = [w.value for w in model.variables]  # weights and state such as dropout seeds
    obj.trainable_variables = [w.value for w in model.trainable_weights]
    obj.regularization_losses = []

    # Any batch; height and width as the model takes them (free for ConvNeXt, maybe fixed for a user's model).
    image_spec = tf.TensorSpec([None, *model.input.shape[1:]], tf.float32, name="images")
    invariant = training_invariant(model)
    with _tracing_for_save(options):  # traced once, and the save reuses the traces
        # Concrete functions, called as such: a tf.function called with the [None, 224, 224, 3]
        # batch of serving_bytes would trace (and save) the whole model a second time.
        def traced(training: bool):
            def forward(images):
                return model(images, training=training)

            return tf.function(forward, autograph=False).get_concrete_function(image_spec)

        forward = traced(False)
        forward_training = forward if invariant else traced(True)

        # Graph code throughout: AutoGraph would only add time to each trace.
        @tf.function(autograph=False)
        def call(images, training=False):  # hub.KerasLayer passes `training` as a Python bool
            return forward_training(images) if training else forward(images)

        @tf.function(input_signature=[image_spec], autograph=False)
        def serving_default(images):
            return {output_name: forward(images)}

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="images")], autograph=False)
        def serving_bytes(images):
            batch = tf.map_fn(lambda s: decode_and_preprocess(s, resolution, ev), images,
                              fn_output_signature=tf.TensorSpec([resolution, resolution, 3], tf.float32))
            if input_convention == "normalized":
                assert normalization is not None  # checked on entry
                mean, std = normalization
                batch = (batch - tf.constant(mean)) / tf.constant(std)
            return {output_name: forward(batch)}

        for training in (False, True):
            call.get_concrete_function(image_spec, training)
        signatures = {"serving_default": serving_default.get_concrete_function(),
                      "serving_bytes": serving_bytes.get_concrete_function()}
    obj.__call__ = call

    with tempfile.TemporaryDirectory() as staging, atomic_path(out_dir) as tmp:
        if labels is not None:
            # An asset keeps its file's base name; users look for `assets/labels.txt`.
            staged = Path(staging) / "labels.txt"
            shutil.copyfile(labels, staged)
            obj.labels_file = tf.saved_model.Asset(str(staged))
        try:
            tf.saved_model.save(obj, str(tmp), signatures=signatures, options=options)
        except Exception as e:
            raise ExportError(f"{out_dir}: SavedModel export failed: {type(e).__name__}: {e}") from None
        _stabilise_fingerprint(tmp)
    # Not in a thread beside the save: every eager tensor takes a number from the counter that also
    # names the saved functions, and the bytes would depend on the race.
    probe_outputs = None
    if probe is not None:
        with graph_optimisation_off():  # one run: Grappler's rewrite would cost more than it saves
            probe_outputs = forward(tf.constant(probe)).numpy()
    return ExportResult(out_dir, kind, output_name, output_dim, tuple(describe_signatures(out_dir)), probe_outputs)


def training_invariant(model) -> bool:
    """Whether `model` computes the same with `training=True` as without: then one traced graph
    serves both. True only when every layer is of a Keras type known to ignore `training` (Dense
    takes the argument, and ignores it), or a family's layer that says so (`training_invariant =
    True`); anything else, Dropout say, gets its own training graph."""
    import keras

    invariant = {keras.layers.InputLayer, keras.layers.Normalization, keras.layers.Conv2D,
                 keras.layers.DepthwiseConv2D, keras.layers.LayerNormalization, keras.layers.Dense,
                 keras.layers.Add, keras.layers.GlobalAveragePooling2D, keras.layers.Activation,
                 keras.layers.Flatten, keras.layers.Rescaling}
    return all(type(layer) in invariant or getattr(type(layer), "training_invariant", False) is True
               for layer in model.layers)


def _tracing_for_save(options):
    """A save context for tracing ahead of `tf.saved_model.save`.

    The save options are part of a tf.function's trace-cache key, so the save retraces every
    function first traced outside one: here the `__call__` wrappers. Traced inside a context with the
    same options, the save reuses them. Without TensorFlow's private helper the
    export is the same, only slower.
    """
    try:
        from tensorflow.python.saved_model import save_context

        return save_context.save_context(options)
    except (ImportError, AttributeError):
        return contextlib.nullcontext()


def _stabilise_fingerprint(path: Path) -> None:
    """Replace the random `uuid` of fingerprint.pb by one derived from its content hashes.

    TensorFlow writes a fresh random uuid on every save, which alone would make two builds of the
    same model differ byte for byte.
    """
    import hashlib

    from tensorflow.core.protobuf import fingerprint_pb2

    fp_path = path / "fingerprint.pb"
    if not fp_path.is_file():
        return
    fp = fingerprint_pb2.FingerprintDef()
    fp.ParseFromString(fp_path.read_bytes())
    fp.ClearField("uuid")
    digest = hashlib.sha256(fp.SerializeToString(deterministic=True)).digest()
    fp.uuid = str(int.from_bytes(digest[:16], "big"))
    fp_path.write_bytes(fp.SerializeToString(deterministic=True))


def describe_signatures(path: Path) -> list[Signature]:
    """The signatures as written in saved_model.pb; reading the proto loads no weights."""
    import tensorflow as tf
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    proto.ParseFromString((Path(path) / "saved_model.pb").read_bytes())

    def spec(info) -> tuple[list[int | None], str]:
        dims = [None if d.size < 0 else d.size for d in info.tensor_shape.dim]
        return dims, tf.dtypes.as_dtype(info.dtype).name

    out = []
    for name, sig in sorted(proto.meta_graphs[0].signature_def.items()):
        if name.startswith("__"):  # TensorFlow's internal saver signature
            continue
        out.append(Signature(name, {k: spec(v) for k, v in sig.inputs.items()},
                             {k: spec(v) for k, v in sig.outputs.items()}))
    return out


def round_trip(expected: np.ndarray, path: Path, images: np.ndarray, *, kind: str,
               tolerance: float = ROUND_TRIP_TOLERANCE) -> dict[str, float]:
    """Reload the SavedModel and compare `__call__` and `serving_default` with `expected`, the in-memory
    model's outputs on `images` (taken before, so the model can be freed before the reload)."""
    import tensorflow as tf

    from hubpub._tf import graph_optimisation_off

    loaded = tf.saved_model.load(str(path))
    x = tf.constant(images)
    # Both at once: each first call spends most of its time setting up kernels, on one core.
    with graph_optimisation_off(), ThreadPoolExecutor(1) as pool:
        serving = pool.submit(lambda: loaded.signatures["serving_default"](images=x)[OUTPUT_NAMES[kind]].numpy())
        got_call = loaded(x, training=False).numpy()
        got_serving = serving.result()
    diffs = {"call": float(np.abs(got_call - expected).max()),
             "serving_default": float(np.abs(got_serving - expected).max())}
    worst = max(diffs.values())
    if not worst <= tolerance:  # also catches NaN
        raise ExportError(f"{path}: reloaded SavedModel differs from the in-memory model by {worst:.3g} "
                          f"(tolerance {tolerance:g}): {diffs}")
    return diffs
