"""ConvNeXt V2 in Keras 3: ConvNeXt's hierarchical model with a GRN layer after each block's GELU."""

from __future__ import annotations

import keras

from hubpub.families.convnext.model import block, hierarchical, hierarchical_taps, image_model


@keras.saving.register_keras_serializable(package="hubpub")
class GRN(keras.layers.Layer):
    """Global Response Normalization on the block's [B*H*W, 4C] tokens.

    Each image's channel norms over its own H x W (hence the reshape by the spatial tensor `like`),
    divided by their mean over channels: out = gamma * (x * N) + beta + x.
    """

    training_invariant = True

    def __init__(self, eps: float = 1e-6, **kwargs):
        super().__init__(**kwargs)
        self.eps = eps

    def build(self, input_shapes):
        dim = input_shapes[0][-1]
        self.gamma = self.add_weight(name="gamma", shape=(dim,), initializer="zeros")
        self.beta = self.add_weight(name="beta", shape=(dim,), initializer="zeros")

    def call(self, inputs):
        tokens, like = inputs
        ops = keras.ops
        dim = tokens.shape[-1]
        x = ops.reshape(tokens, (ops.shape(like)[0], -1, dim))  # [B, H*W, 4C]
        gx = ops.sqrt(ops.sum(ops.square(x), axis=1, keepdims=True))
        nx = gx / (ops.mean(gx, axis=-1, keepdims=True) + self.eps)
        return ops.reshape(self.gamma * (x * nx) + self.beta + x, (-1, dim))

    def compute_output_shape(self, input_shapes):
        return input_shapes[0]

    def get_config(self):
        return {**super().get_config(), "eps": self.eps}


def portable_grn(x, name: str, eps: float = 1e-6):
    """GRN of Keras' own layers and ops on the [B, H, W, C] map, for the `.keras` artifact.

    The L2 norm over H x W is sqrt(H*W) times the root mean square; the factor cancels in G / mean(G),
    up to the epsilon, which shrinks by it (1e-6 against O(1) means: far below float32 resolution).
    `gamma * (x * N) + beta` is a 1x1 depthwise convolution with bias, holding gamma and beta.
    """
    ops = keras.ops
    gx = ops.sqrt(ops.mean(ops.square(x), axis=(1, 2), keepdims=True))
    nx = gx / (ops.mean(gx, axis=-1, keepdims=True) + eps)
    scaled = keras.layers.DepthwiseConv2D(1, name=name)(keras.layers.Multiply(name=f"{name}_apply")([x, nx]))
    return keras.layers.Add(name=f"{name}_residual")([scaled, x])


def build_model(arch, *, num_classes: int | None, input_convention: str = "hub", name: str = "convnext_v2",
                source=None, portable: bool = False):
    eps = arch.layer_norm_eps

    def make_block(x, dim, prefix):
        def after_gelu(y, like, portable_graph):
            if portable_graph:
                return portable_grn(y, f"{prefix}_grn")
            return GRN(name=f"{prefix}_grn")([y, like])

        return block(x, dim, prefix, 0.0, eps, after_gelu=after_gelu, portable=portable)

    return image_model(lambda x: hierarchical(x, arch.depths, arch.dims, eps, make_block), eps=eps,
                       num_classes=num_classes, input_convention=input_convention, name=name)


def tap_layer_names(arch, classifier: bool = True) -> dict[str, str]:
    return hierarchical_taps(arch.depths, classifier)
