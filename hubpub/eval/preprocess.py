"""The official (ConvNeXt and timm style) eval transform, on the host (Pillow) and in-graph (TensorFlow).

Official (torchvision): at 224, Resize(int(224 / 0.875) = 256) of the shorter side, bicubic, aspect
kept (the longer side is int(256 * long / short)), then CenterCrop(224) with offsets
int(round((size - 224) / 2)); at 384, Resize((384, 384)), no crop. Then ToTensor (/255); the
ImageNet mean/std normalisation happens inside our `hub`-convention models.
"""

from __future__ import annotations

import numpy as np

from hubpub.manifest import EvalPreprocessing


def resized_size(height: int, width: int, resolution: int, ev: EvalPreprocessing) -> tuple[int, int]:
    """(height, width) after the resize step, rounded exactly as torchvision does."""
    if ev.resize == "squash":
        return resolution, resolution
    size = int(resolution / ev.crop_pct)
    if width <= height:
        return int(size * height / width), size
    return size, int(size * width / height)


def crop_box(height: int, width: int, resolution: int) -> tuple[int, int]:
    """Top and left offsets of the centre crop (round half to even, like Python's round)."""
    return int(round((height - resolution) / 2.0)), int(round((width - resolution) / 2.0))


def to_rgb(image):
    """Apply EXIF orientation, then convert palette, grayscale, CMYK or RGBA to RGB."""
    from PIL import ImageOps

    image = ImageOps.exif_transpose(image)
    return image if image.mode == "RGB" else image.convert("RGB")


def preprocess_pil(image, resolution: int, ev: EvalPreprocessing) -> np.ndarray:
    """A PIL image -> uint8 [resolution, resolution, 3], pixel for pixel the official transform."""
    from PIL import Image

    image = to_rgb(image)
    h, w = resized_size(image.height, image.width, resolution, ev)
    image = image.resize((w, h), Image.Resampling.BICUBIC)
    if ev.resize == "shorter":
        top, left = crop_box(h, w, resolution)
        image = image.crop((left, top, left + resolution, top + resolution))
    return np.asarray(image, dtype=np.uint8)


def preprocess_tf(image, resolution: int, ev: EvalPreprocessing):
    """In-graph: uint8 [H, W, 3] tensor -> float32 [resolution, resolution, 3] in [0, 1].

    Bicubic with antialiasing in float, then rounded and clipped to uint8 values as Pillow does.
    Close to, not identical with, Pillow; the measured gap is in the model docs.
    """
    import tensorflow as tf

    image = tf.convert_to_tensor(image)
    shape = tf.shape(image)
    h, w = tf.cast(shape[0], tf.float64), tf.cast(shape[1], tf.float64)
    if ev.resize == "squash":
        new_h = new_w = tf.constant(resolution, tf.int32)
    else:
        size = tf.constant(float(int(resolution / ev.crop_pct)), tf.float64)
        new_h = tf.cast(tf.where(w <= h, tf.floor(size * h / w), size), tf.int32)
        new_w = tf.cast(tf.where(w <= h, size, tf.floor(size * w / h)), tf.int32)
    resized = tf.image.resize(tf.cast(image, tf.float32), tf.stack([new_h, new_w]), method="bicubic",
                              antialias=True)
    resized = tf.clip_by_value(tf.round(resized), 0.0, 255.0)
    if ev.resize == "shorter":
        top = tf.cast(tf.round(tf.cast(new_h - resolution, tf.float32) / 2.0), tf.int32)
        left = tf.cast(tf.round(tf.cast(new_w - resolution, tf.float32) / 2.0), tf.int32)
        resized = resized[top:top + resolution, left:left + resolution]
    return tf.ensure_shape(resized / 255.0, [resolution, resolution, 3])


def decode_and_preprocess(encoded, resolution: int, ev: EvalPreprocessing):
    """A JPEG/PNG/GIF/BMP string tensor -> float32 [resolution, resolution, 3] in [0, 1]."""
    import tensorflow as tf

    # TensorFlow's default JPEG IDCT is the fast integer one; Pillow uses the accurate one.
    image = tf.cond(
        tf.io.is_jpeg(encoded),
        lambda: tf.io.decode_jpeg(encoded, channels=3, dct_method="INTEGER_ACCURATE"),
        lambda: tf.io.decode_image(encoded, channels=3, expand_animations=False, dtype=tf.uint8))
    image.set_shape([None, None, 3])
    return preprocess_tf(image, resolution, ev)
