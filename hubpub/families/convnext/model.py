"""ConvNeXt (hierarchical and isotropic) in Keras 3, channels-last, any input height and width.

Layer names are deterministic and mirror the official module tree, so weight porting can go by
name: `stage_2_block_8_pwconv1` is official `stages.2.8.pwconv1`.
"""

from __future__ import annotations

import keras
import numpy as np

from hubpub.families.convnext.config import ConvNeXtConfig, Hierarchical, Isotropic

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# `hub`: float32 RGB in [0, 1], normalised inside the model (the TF-Hub image convention).
# `normalized`: the caller applies ImageNet mean/std, as in the original TF collection.
INPUT_CONVENTIONS = ("hub", "normalized")


@keras.saving.register_keras_serializable(package="hubpub")
class LayerScale(keras.layers.Layer):
    """Per-channel scale of a block's residual branch (`gamma` in the official code)."""

    training_invariant = True  # computes the same with training=True: the export traces one graph

    def __init__(self, dim: int, init_value: float = 1e-6, **kwargs):
        super().__init__(**kwargs)
        self.dim = dim
        self.init_value = init_value

    def build(self, input_shape):
        self.gamma = self.add_weight(
            name="gamma", shape=(self.dim,),
            initializer=keras.initializers.Constant(self.init_value), trainable=True)

    def call(self, x):
        return x * self.gamma

    def get_config(self):
        return {**super().get_config(), "dim": self.dim, "init_value": self.init_value}


@keras.saving.register_keras_serializable(package="hubpub")
class ToTokens(keras.layers.Layer):
    """[B, H, W, C] -> [B*H*W, C]: the pointwise MLP runs as plain 2-D matmuls.

    On a 4-D input, Dense goes through tensordot and its bias and GELU stay separate ops; on 2-D,
    TensorFlow fuses them with the MatMul, which makes the block MLP markedly faster (see the
    benchmarks' inference rows).
    """

    training_invariant = True

    def call(self, x):
        return keras.ops.reshape(x, (-1, x.shape[-1]))

    def compute_output_shape(self, input_shape):
        return (None, input_shape[-1])


@keras.saving.register_keras_serializable(package="hubpub")
class FromTokens(keras.layers.Layer):
    """[B*H*W, C] back to the spatial shape of a reference [B, H, W, C] tensor."""

    training_invariant = True

    def call(self, inputs):
        tokens, like = inputs
        return keras.ops.reshape(tokens, keras.ops.shape(like))

    def compute_output_shape(self, input_shapes):
        return input_shapes[1]


def block(x, dim: int, prefix: str, layer_scale_init: float, eps: float, after_gelu=None, portable: bool = False):
    """dwconv 7x7 -> LayerNorm -> Linear(4C) -> GELU (erf) [-> after_gelu] -> Linear(C) -> [gamma] -> residual.

    `after_gelu(x, like, portable)` adds a family's layer after the GELU (ConvNeXt V2's GRN): on the
    [B*H*W, 4C] tokens, with `like` the [B, H, W, C] tensor that gives back their spatial shape; or,
    `portable`, on the [B, H, W, 4C] map. The portable block uses only layers Keras ships (Dense on
    4-D input, the layer scale as a bias-free 1x1 depthwise convolution), for a `.keras` file that
    loads without hubpub; the default one runs the MLP as 2-D matmuls, which TensorFlow fuses.
    """
    shortcut = x
    # DepthwiseConv2D, not Conv2D(groups=C): on CPU the grouped form goes through XLA, several times slower.
    x = keras.layers.DepthwiseConv2D(7, padding="same", name=f"{prefix}_dwconv")(x)
    spatial = x
    if not portable:
        x = ToTokens(name=f"{prefix}_tokens")(x)
    x = keras.layers.LayerNormalization(epsilon=eps, name=f"{prefix}_norm")(x)
    x = keras.layers.Dense(4 * dim, activation="gelu", name=f"{prefix}_pwconv1")(x)
    if after_gelu is not None:
        x = after_gelu(x, spatial, portable)
    x = keras.layers.Dense(dim, name=f"{prefix}_pwconv2")(x)
    if layer_scale_init > 0 and portable:
        x = keras.layers.DepthwiseConv2D(1, use_bias=False, name=f"{prefix}_layer_scale")(x)
    elif layer_scale_init > 0:
        x = LayerScale(dim, layer_scale_init, name=f"{prefix}_layer_scale")(x)
    if not portable:
        x = FromTokens(name=f"{prefix}_spatial")([x, spatial])
    return keras.layers.Add(name=f"{prefix}_add")([shortcut, x])


def hierarchical(x, depths, dims, eps: float, make_block):
    """Stem, then per stage: [LayerNorm + 2x2 downsampling,] `make_block(x, dim, prefix)` per block."""
    x = keras.layers.Conv2D(dims[0], 4, strides=4, name="stem_conv")(x)
    x = keras.layers.LayerNormalization(epsilon=eps, name="stem_norm")(x)
    for s, (depth, dim) in enumerate(zip(depths, dims, strict=True)):
        if s > 0:
            x = keras.layers.LayerNormalization(epsilon=eps, name=f"stage_{s}_downsample_norm")(x)
            x = keras.layers.Conv2D(dim, 2, strides=2, name=f"stage_{s}_downsample_conv")(x)
        for b in range(depth):
            x = make_block(x, dim, f"stage_{s}_block_{b}")
    return x


def _isotropic(x, arch: Isotropic, portable: bool):
    x = keras.layers.Conv2D(arch.dim, arch.patch_size, strides=arch.patch_size, name="stem_conv")(x)
    for i in range(arch.depth):
        x = block(x, arch.dim, f"block_{i}", arch.layer_scale_init, arch.layer_norm_eps, portable=portable)
    return x


def image_model(body, *, eps: float, num_classes: int | None, input_convention: str, name: str) -> keras.Model:
    """images -> [normalize] -> `body` -> pool -> LayerNorm [-> head]: a classifier (logits) when
    `num_classes` is set, else a feature extractor (pooled features)."""
    if input_convention not in INPUT_CONVENTIONS:
        raise ValueError(f"input_convention must be one of {INPUT_CONVENTIONS}, not {input_convention!r}")
    inputs = keras.Input((None, None, 3), dtype="float32", name="images")
    x = inputs
    if input_convention == "hub":
        x = keras.layers.Normalization(
            mean=IMAGENET_MEAN, variance=np.square(IMAGENET_STD), name="normalize")(x)
    x = body(x)
    x = keras.layers.GlobalAveragePooling2D(name="head_pool")(x)
    x = keras.layers.LayerNormalization(epsilon=eps, name="head_norm")(x)
    if num_classes:
        x = keras.layers.Dense(num_classes, name="head_fc")(x)
    return keras.Model(inputs, x, name=name)


def build_model(arch: ConvNeXtConfig, *, num_classes: int | None, input_convention: str = "hub",
                name: str = "convnext", source=None, portable: bool = False) -> keras.Model:
    """Build a classifier (`num_classes` set: logits) or a feature extractor (`None`: pooled features);
    `portable`: of layers Keras ships only (see `block`), with the same layer names.

    `source` (the checkpoint) is not read here: its weights are ported into the model afterwards."""
    eps = arch.layer_norm_eps
    if isinstance(arch, Hierarchical):
        def body(x):
            return hierarchical(x, arch.depths, arch.dims, eps, lambda y, dim, prefix: block(
                y, dim, prefix, arch.layer_scale_init, eps, portable=portable))
    else:
        def body(x):
            return _isotropic(x, arch, portable)
    return image_model(body, eps=eps, num_classes=num_classes, input_convention=input_convention, name=name)


def hierarchical_taps(depths, classifier: bool) -> dict[str, str]:
    taps = {"stem": "stem_norm"}
    taps |= {f"stage_{s}": f"stage_{s}_block_{d - 1}_add" for s, d in enumerate(depths)}
    return taps | head_taps(classifier)


def head_taps(classifier: bool) -> dict[str, str]:
    return {"pooled": "head_norm", **({"logits": "head_fc"} if classifier else {})}


def tap_layer_names(arch: ConvNeXtConfig, classifier: bool = True) -> dict[str, str]:
    """Intermediate outputs compared against the reference: name -> Keras layer name."""
    if isinstance(arch, Hierarchical):
        return hierarchical_taps(arch.depths, classifier)
    return {"stem": "stem_conv", "blocks": f"block_{arch.depth - 1}_add"} | head_taps(classifier)
