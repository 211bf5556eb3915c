"""Imported once by the build's fork server (`collection._run_workers`): each worker forked from it starts
with TensorFlow and hubpub's build modules already imported, instead of importing them again itself.

Nothing here runs TensorFlow: its thread pools start at the first op, in the worker, after the worker has
set its share of the CPUs (`workers.THREAD_VARIABLES`). PyTorch is not imported here, because its OpenMP
runtime reads its thread count when it loads.
"""

from hubpub._tf import import_tensorflow

import_tensorflow()

import hubpub.pipeline.workers  # noqa: E402, F401  the build's modules, once TensorFlow is in
