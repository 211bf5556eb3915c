"""The Vision Transformer in Keras 3, of Keras' own layers and ops only: the same graph is the fast model
and the portable `.keras` one, and it takes any height and width that are multiples of the patch size.

Layer names mirror timm's module tree, so porting goes by name: `block_3_attn_qkv` is `blocks.3.attn.qkv`.
"""

from __future__ import annotations

import keras
import numpy as np

from hubpub.families.vit.config import ViT

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INPUT_CONVENTIONS = ("hub", "normalized")
_CUBIC_A = -0.5  # the cubic kernel of antialiased bicubic resampling (PIL's), as timm's resampling runs it


def _arange_like(vector):
    """0, 1, ..., n-1 (float32) for a 1-D tensor of length n, known only when the model runs."""
    ones = keras.ops.ones_like(vector, dtype="float32")
    return keras.ops.cumsum(ones) - 1.0, keras.ops.sum(ones)


def _cubic(x):
    x = keras.ops.abs(x)
    a = _CUBIC_A
    near = ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
    far = (((x - 5.0) * x + 8.0) * x - 4.0) * a
    return keras.ops.where(x < 1.0, near, keras.ops.where(x < 2.0, far, keras.ops.zeros_like(x)))


def resample_weights(out_positions, out_size, in_positions, in_size: int):
    """The [out, in] matrix of antialiased bicubic resampling along one axis, without corner alignment:
    what torch's `interpolate(mode="bicubic", antialias=True)` computes (and timm's
    `resample_abs_pos_embed` calls). Output i is centred at (i + 0.5) * in / out; when shrinking, the
    kernel widens by in / out. Taps outside the input are dropped and the rest renormalised."""
    scale = in_size / out_size
    centre = (out_positions + 0.5) * scale
    stretch = keras.ops.minimum(1.0 / scale, 1.0)
    offsets = keras.ops.expand_dims(in_positions + 0.5, 0) - keras.ops.expand_dims(centre, 1)
    w = _cubic(offsets * keras.ops.expand_dims(stretch, -1))
    return w / keras.ops.sum(w, axis=1, keepdims=True)


def resampled_position_embedding(table, patches, arch: ViT):
    """The position embeddings for the patch grid `patches` [B, h, w, C]: the prefix tokens' rows as
    they are, the grid's resampled from `arch.grid` squared to h x w (the identity at h = w = grid)."""
    ops, g, c, n = keras.ops, arch.grid, arch.width, arch.prefix_tokens
    rows, h = _arange_like(patches[0, :, 0, 0])
    cols, w = _arange_like(patches[0, 0, :, 0])
    grid_positions, _ = _arange_like(table[n:n + g, 0])
    wh = resample_weights(rows, h, grid_positions, g)  # [h, g]
    ww = resample_weights(cols, w, grid_positions, g)  # [w, g]
    grid = ops.reshape(table[n:, :], (g, g * c))
    x = ops.reshape(ops.matmul(wh, grid), (-1, g, c))  # [h, g, C]
    x = ops.matmul(ops.expand_dims(ww, 0), x)  # [h, w, C]: ww applied to each row's g columns
    x = ops.reshape(x, (-1, c))  # [h*w, C], rows first as the patches are flattened
    return ops.concatenate([table[:n, :], x], axis=0) if n else x


def attention(x, arch: ViT, prefix: str):
    """timm's `Attention`: one qkv projection, split into heads, softmax(q k^T / sqrt(d)) v, projection."""
    ops, c, heads = keras.ops, arch.width, arch.heads
    head_dim = c // heads
    qkv = keras.layers.Dense(3 * c, use_bias=arch.qkv_bias, name=f"{prefix}_qkv")(x)
    qkv = keras.layers.Reshape((-1, 3, heads, head_dim), name=f"{prefix}_heads")(qkv)  # [B, N, 3, H, d]
    qkv = keras.layers.Permute((2, 3, 1, 4), name=f"{prefix}_qkv_first")(qkv)  # [B, 3, H, N, d]
    q, k, v = qkv[:, 0], qkv[:, 1], qkv[:, 2]
    logits = ops.matmul(q * float(head_dim ** -0.5), ops.swapaxes(k, -1, -2))  # [B, H, N, N]
    weights = keras.layers.Softmax(axis=-1, name=f"{prefix}_softmax")(logits)
    out = keras.layers.Permute((2, 1, 3), name=f"{prefix}_tokens_first")(ops.matmul(weights, v))  # [B, N, H, d]
    out = keras.layers.Reshape((-1, c), name=f"{prefix}_merge")(out)
    return keras.layers.Dense(c, name=f"{prefix}_proj")(out)


def block(x, arch: ViT, i: int):
    """Pre-norm: x + attn(norm1(x)), then x + mlp(norm2(x)) with a GELU (erf) MLP."""
    eps, prefix = arch.layer_norm_eps, f"block_{i}"
    y = keras.layers.LayerNormalization(epsilon=eps, name=f"{prefix}_norm1")(x)
    x = keras.layers.Add(name=f"{prefix}_attn_add")([x, attention(y, arch, f"{prefix}_attn")])
    y = keras.layers.LayerNormalization(epsilon=eps, name=f"{prefix}_norm2")(x)
    y = keras.layers.Dense(arch.hidden, activation="gelu", name=f"{prefix}_mlp_fc1")(y)
    y = keras.layers.Dense(arch.width, name=f"{prefix}_mlp_fc2")(y)
    return keras.layers.Add(name=prefix)([x, y])


def embed(x, arch: ViT):
    """Patches -> tokens, the prefix tokens before them, plus the (resampled) position embeddings."""
    ops, c = keras.ops, arch.width
    patches = keras.layers.Conv2D(c, arch.patch_size, strides=arch.patch_size, name="patch_embed")(x)
    tokens = keras.layers.Reshape((-1, c), name="patch_tokens")(patches)
    # Parameters that are not a layer's transform are embedding tables, looked up at fixed rows: a
    # weight of Keras' own layers, as the portable file needs.
    zero = ops.zeros_like(tokens[:, :1, 0], dtype="int32")  # [B, 1]
    prefix = [keras.layers.Embedding(1, c, name=name)(zero)
              for name, on in (("cls_token", arch.class_token), ("dist_token", arch.distilled)) if on]
    if prefix:
        tokens = keras.layers.Concatenate(axis=1, name="tokens")([*prefix, tokens])
    rows = ops.cast(_arange_like(ops.broadcast_to(zero[0, :], (arch.grid ** 2 + arch.prefix_tokens,)))[0], "int32")
    table = keras.layers.Embedding(arch.grid ** 2 + arch.prefix_tokens, c, name="pos_embed")(rows)
    position = ops.expand_dims(resampled_position_embedding(table, patches, arch), 0)
    return patches, keras.layers.Add(name="pos_add")([tokens, position])


def head(x, arch: ViT, num_classes: int | None):
    """Final norm and pooling -> `pre_logits` (the feature vector, as timm's `forward_head(pre_logits=True)`)
    [-> the classifier; DeiT's distilled model averages its two heads as timm does at inference]."""
    eps, n = arch.layer_norm_eps, arch.prefix_tokens
    if arch.global_pool == "avg":
        pooled = keras.layers.GlobalAveragePooling1D(name="pool")(x[:, n:])
        features = keras.layers.LayerNormalization(epsilon=eps, name="fc_norm")(pooled)
        features = keras.layers.Identity(name="pre_logits")(features)
    else:
        x = keras.layers.LayerNormalization(epsilon=eps, name="norm")(x)
        if arch.distilled:
            cls, dist = x[:, 0], x[:, 1]
            features = keras.layers.Average(name="pre_logits")([cls, dist])
        else:
            features = keras.layers.Identity(name="pre_logits")(x[:, 0])
    if not num_classes:
        return features
    if arch.distilled:
        # The distillation token taken back from the pre-logits (2 * mean - class token), so the classifier's
        # graph holds the feature extractor's output (where the pipeline cuts it).
        dist = keras.layers.Subtract(name="dist_pooled")([2.0 * features, cls])
        return keras.layers.Average(name="logits")([keras.layers.Dense(num_classes, name="head")(cls),
                                                     keras.layers.Dense(num_classes, name="head_dist")(dist)])
    return keras.layers.Dense(num_classes, name="head")(features)


def build_model(arch: ViT, *, num_classes: int | None, input_convention: str = "hub", name: str = "vit",
                source=None, portable: bool = False) -> keras.Model:
    """A classifier (`num_classes` set: logits) or a feature extractor (`None`: pre-logits). The graph is
    of Keras' own layers either way (`portable` changes nothing); `source` is ported into it afterwards."""
    if input_convention not in INPUT_CONVENTIONS:
        raise ValueError(f"input_convention must be one of {INPUT_CONVENTIONS}, not {input_convention!r}")
    mean, std = arch.normalization or (IMAGENET_MEAN, IMAGENET_STD)
    inputs = keras.Input((None, None, 3), dtype="float32", name="images")
    x = inputs
    if input_convention == "hub":
        x = keras.layers.Normalization(mean=mean, variance=np.square(std), name="normalize")(x)
    _, x = embed(x, arch)
    for i in range(arch.depth):
        x = block(x, arch, i)
    return keras.Model(inputs, head(x, arch, num_classes), name=name)


def tap_layer_names(arch: ViT, classifier: bool = True) -> dict[str, str]:
    """Intermediate outputs compared against the reference: name -> Keras layer name."""
    taps = {"patch_embed": "patch_embed", "pos_embed": "pos_add"}
    taps |= {f"block_{i}": f"block_{i}" for i in range(arch.depth)}
    taps["pooled"] = "pre_logits"
    if classifier:
        taps["logits"] = "logits" if arch.distilled else "head"
    return taps
