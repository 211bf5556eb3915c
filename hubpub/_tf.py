"""Import TensorFlow without its C++ start-up chatter (oneDNN notice, CUDA probes) on stderr; call a Keras
model in one graph."""

from __future__ import annotations

import contextlib
import os
import sys
import warnings


def import_tensorflow(verbose: bool = False):
    if "tensorflow" in sys.modules or verbose:
        import tensorflow as tf

        return tf
    warnings.filterwarnings("ignore", message="pkg_resources is deprecated")
    with native_stderr_silenced():  # the messages come from C++ before absl logging is configured
        import tensorflow as tf

        tf.config.list_physical_devices()  # the CUDA probe logs on first use, not on import
    return tf


@contextlib.contextmanager
def native_stderr_silenced(active: bool = True):
    """Send what C++ code writes to stderr (file descriptor 2) to /dev/null while the block runs;
    Python's own errors still surface as exceptions."""
    if not active or os.environ.get("HUBPUB_NATIVE_LOGS"):
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


@contextlib.contextmanager
def graph_optimisation_off():
    """Run tf.functions first called inside this block without Grappler's rewrites.

    For a check that runs a model once, the rewrite costs more than it saves. Process-wide while it
    lasts; the previous setting comes back after.
    """
    import tensorflow as tf

    before = tf.config.optimizer.get_experimental_options().get("disable_meta_optimizer", False)
    tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": True})
    try:
        yield
    finally:
        tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": before})


def call_in_graph(model, inputs) -> list:
    """`model(inputs, training=False)` traced into one TensorFlow graph, as Keras' `predict` runs it
    (without XLA), as numpy arrays (a list for a model with several outputs). An eager call of a
    functional Keras model keeps every layer's output until the call ends: ConvNeXt V2 tiny at 384 px,
    batch 2, +1266 MiB eager against +190 MiB in a graph; V2 large's `.keras` check rose 2.5 GB."""
    import logging

    import tensorflow as tf

    # A fresh trace per call is the point (nothing is kept after it): TensorFlow's warning about frequent
    # retracing, which keys on the lambda's code and so counts every call, says nothing here.
    tf_log = logging.getLogger("tensorflow")
    level = tf_log.level
    tf_log.setLevel(max(level, logging.ERROR))
    try:
        outputs = tf.function(lambda x: model(x, training=False), jit_compile=False)(tf.constant(inputs))
    finally:
        tf_log.setLevel(level)
    return [o.numpy() for o in outputs] if isinstance(outputs, list | tuple) else outputs.numpy()
