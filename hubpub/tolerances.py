"""Every numeric tolerance hubpub checks against, in one place: the stages use these, the tests use
these, and the documentation's Tolerances page is generated from this file, each with the comment above
it. All are float32 comparisons on the same inputs."""

# max |Δ| of the final output (logits, or pooled features) of the Keras port against the PyTorch
# reference of the official model (and, in the tests, against timm)
PARITY = 1e-4
# a SavedModel reloaded, against the model it was saved from (the same graph)
ROUND_TRIP = 1e-5
# the `.keras` file reloaded on TensorFlow, against the SavedModel (another graph of the same weights,
# which rounds relative to the values): times the outputs' largest |value| when that is above 1
KERAS_FILE = 1e-5
# the `.keras` file on JAX or PyTorch, against the SavedModel (other kernels: other rounding)
KERAS_OTHER_BACKEND = 1e-4
# a published artifact as a user loads it (hub.KerasLayer, load_model), against the outputs recorded at
# build time: max |Δ| of the recorded columns and relative difference of the L2 norms; same argmax
VERIFY = 1e-4
# the float32 LiteRT file, through the LiteRT interpreter, against the SavedModel
LITERT_FLOAT32 = 1e-4
# the ONNX file, in onnxruntime, against the SavedModel, at the native and a non-square size
ONNX = 1e-4
# the lowest cosine similarity a quantized LiteRT file may have to the SavedModel (litert.min_cosine)
LITERT_MIN_COSINE = 0.98
