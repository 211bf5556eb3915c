"""hubpub: publish a model family as a documented, verified TF-Hub style collection."""

import os

__version__ = "0.1.0"

# Must happen before TensorFlow or Keras is first imported by any stage.
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
