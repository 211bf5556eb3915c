"""Import TensorFlow without its C++ start-up chatter (oneDNN notice, CUDA probes) on stderr."""

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

    For a check that runs a model once, the rewrite costs more than it saves (tiny, 2 images:
    0.55 -> 0.36 s). Process-wide while it lasts; the previous setting comes back after.
    """
    import tensorflow as tf

    before = tf.config.optimizer.get_experimental_options().get("disable_meta_optimizer", False)
    tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": True})
    try:
        yield
    finally:
        tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": before})
