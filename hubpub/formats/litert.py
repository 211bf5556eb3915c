"""The LiteRT (TFLite) format: on-device flatbuffers converted from the exported SavedModel, checked
with the LiteRT interpreter (`ai-edge-litert`) against the SavedModel.

Four files per artifact, at the variant's fixed resolution and batch 1, with the normalisation
inside as in the SavedModel: float32; float16 weights; int8 weights with float activations
("dynamic range"); and int8 weights and activations calibrated on real photos ("int8", float
input and output so it is called like the others; an op without an int8 kernel stays float).
Each is compared with the SavedModel on the parity inputs and the sample photos: float32 must agree
within 1e-4; the others are reported (max |Δ|, cosine similarity, top-1 / top-5 agreement) and fail
the build below the manifest's `litert.min_cosine`. The converter is deterministic given its
inputs: two conversions are byte-identical (tested).
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np

from hubpub import tolerances
from hubpub._files import temp_prefix, write_atomic, write_sha256
from hubpub._tf import native_stderr_silenced
from hubpub.errors import ExportError
from hubpub.formats.base import Format, FormatJob
from hubpub.layout import Dist
from hubpub.memory import large_blocks_reused
from hubpub.record import LiteRTFile

log = logging.getLogger(__name__)

FORMATS = ("float32", "float16", "dynamic_int8", "int8")
FLOAT32_TOLERANCE = tolerances.LITERT_FLOAT32


class LiteRTError(ExportError):
    """A LiteRT file could not be made, or disagrees with its SavedModel beyond the limits."""


def fixed_function(saved_model: Path, resolution: int):
    """(the loaded SavedModel, its serving function at [1, resolution, resolution, 3])."""
    import tensorflow as tf

    loaded = tf.saved_model.load(str(saved_model))
    serving = loaded.signatures["serving_default"]
    name = next(iter(serving.structured_input_signature[1]))

    @tf.function(input_signature=[tf.TensorSpec([1, resolution, resolution, 3], tf.float32, name=name)])
    def fixed(images):
        return serving(**{name: images})

    return loaded, fixed.get_concrete_function()


def save_fixed(source, out: Path) -> Path:
    """`fixed_function`'s result as a SavedModel of its own, the converter's input for every format:
    converting a concrete function makes the converter save one first, again for each format."""
    import tensorflow as tf

    loaded, function = source
    tf.saved_model.save(loaded, str(out), signatures={"serving_default": function})
    return out


def convert(fixed_saved_model: Path, fmt: str, *, calibration: np.ndarray | None = None) -> bytes:
    """One LiteRT flatbuffer of a SavedModel whose serving signature has a fixed input shape
    (`save_fixed`)."""
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(str(fixed_saved_model), ["serving_default"])
    if fmt == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif fmt == "dynamic_int8":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif fmt == "int8":
        if calibration is None or not len(calibration):
            raise LiteRTError(f"{fixed_saved_model}: int8 needs calibration images")
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([image[None]] for image in calibration)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8, tf.lite.OpsSet.TFLITE_BUILTINS]
    elif fmt != "float32":
        raise LiteRTError(f"unknown LiteRT format {fmt!r}; known: {', '.join(FORMATS)}")
    try:
        with native_stderr_silenced():  # the quantizer prints its settings from C++
            return converter.convert()
    except Exception as e:  # the converter raises ConverterError and others
        raise LiteRTError(f"{fixed_saved_model}: LiteRT {fmt} conversion failed: "
                          f"{str(e).strip().splitlines()[0]}") from None


def run(model: bytes, images: np.ndarray, threads: int = 2) -> np.ndarray:
    """The flatbuffer's outputs for each image, through the LiteRT interpreter, one at a time."""
    from ai_edge_litert.interpreter import Interpreter

    with native_stderr_silenced():  # "Created TensorFlow Lite XNNPACK delegate for CPU."
        interpreter = Interpreter(model_content=model, num_threads=threads)
        interpreter.allocate_tensors()
    inp = interpreter.get_input_details()[0]
    out = interpreter.get_output_details()[0]
    results = []
    for image in images:
        interpreter.set_tensor(inp["index"], image[None].astype(np.float32))
        interpreter.invoke()
        results.append(interpreter.get_tensor(out["index"])[0].copy())
    return np.stack(results)


def agreement(reference: np.ndarray, outputs: np.ndarray) -> dict:
    """max |Δ|, the smallest cosine similarity, and top-1 / top-5 agreement of two [n, d] outputs."""
    ref, out = reference.astype(np.float64), outputs.astype(np.float64)
    cos = (ref * out).sum(-1) / np.maximum(np.linalg.norm(ref, axis=-1) * np.linalg.norm(out, axis=-1), 1e-12)
    top5_ref, top5_out = np.argsort(-ref, -1)[:, :5], np.argsort(-out, -1)[:, :5]
    return {"max_abs": float(np.abs(ref - out).max()), "cosine": float(cos.min()),
            "top1_agreement": float((ref.argmax(-1) == out.argmax(-1)).mean()),
            "top5_agreement": float(np.mean([len(set(a) & set(b)) / 5 for a, b in zip(top5_ref, top5_out,
                                                                                       strict=True)]))}


def build_litert(saved_model: Path, dist: Dist, artifact: str, resolution: int, *, inputs: np.ndarray,
                 calibration: np.ndarray, formats: tuple[str, ...] = FORMATS,
                 min_cosine: float = tolerances.LITERT_MIN_COSINE) -> tuple[LiteRTFile, ...]:
    """Convert, check and write `dist.litert(artifact, format)` for each format (and a classifier's
    class names beside them)."""
    import gc
    import tempfile

    import tensorflow as tf

    source = fixed_function(saved_model, resolution)
    reference = np.concatenate([next(iter(source[1](tf.constant(x[None])).values())).numpy() for x in inputs])
    checked: list[tuple[str, bytes, dict]] = []
    with tempfile.TemporaryDirectory(prefix=temp_prefix("litert")) as tmp:
        fixed = save_fixed(source, Path(tmp) / "fixed")
        del source  # the converter reads the weights from `fixed`
        gc.collect()
        for fmt in formats:
            model = convert(fixed, fmt, calibration=calibration)
            gc.collect()  # the converter's intermediate graphs, before the next format
            figures = agreement(reference, run(model, inputs))
            if fmt == "float32" and figures["max_abs"] > FLOAT32_TOLERANCE:
                raise LiteRTError(f"{artifact}: the float32 LiteRT file differs from the SavedModel by "
                                  f"{figures['max_abs']:.2e} (tolerance {FLOAT32_TOLERANCE:g})")
            if fmt != "float32" and figures["cosine"] < min_cosine:  # float32 has its tolerance above
                raise LiteRTError(f"{artifact}: the {fmt} LiteRT file disagrees with the SavedModel: cosine "
                                  f"{figures['cosine']:.4f} < {min_cosine} (litert.min_cosine), max |Δ| "
                                  f"{figures['max_abs']:.3g}, top-1 agreement {figures['top1_agreement']:.0%}")
            checked.append((fmt, model, figures))
    files = []  # written only once every format has passed
    for fmt, model, figures in checked:
        path = write_atomic(dist.litert(artifact, fmt), model)
        digest = hashlib.sha256(model).hexdigest()
        write_sha256(path, digest)
        files.append(LiteRTFile(fmt, dist.relative(path), digest, len(model), **figures))
    labels = saved_model / "assets" / "labels.txt"
    if labels.is_file():  # a classifier's class names, beside its LiteRT files
        write_atomic(dist.litert_labels(artifact), labels.read_bytes())
    return tuple(files)


class LiteRT(Format):
    """The LiteRT files of an artifact, `dist/litert/<artifact>.<format>.tflite` for each of the manifest's
    `litert.formats`, and a classifier's class names beside them."""

    name = "litert"
    title = "LiteRT"
    suffix = ".tflite"
    extra = "litert"
    kaggle_framework = "tfLite"
    runner = "ai_edge_litert"
    tolerance = FLOAT32_TOLERANCE  # the float32 file's; the quantized ones are held to litert.min_cosine
    in_formats = False  # the record's `litert`
    hf_library, hf_tags = "litert", ("litert", "tflite")
    holds = "the LiteRT files (`ai_edge_litert`)"

    def path(self, dist: Dist, artifact: str, fmt: str = "float32") -> Path:
        return dist.litert(artifact, fmt)

    def wanted(self, job: FormatJob) -> str | None:
        if job.variant is None or not job.variant.litert_formats:
            return "the manifest's litert settings leave it out (litert.max_parameters, or the variant's litert)"
        return None

    def build(self, job: FormatJob) -> tuple[LiteRTFile, ...]:
        """The quantized files' gate (`litert.min_cosine`) judges what quantizing did to real weights; random
        weights (a build that cannot be published) say nothing of that, so there a file below it is said, not
        refused (random ConvNeXt V2 nano at 384 px: int8 0.976)."""
        v = job.variant
        assert v is not None  # wanted(): LiteRT is built only for a manifest's variant
        calibration = calibration_images(v.resolution, v.litert_calibration)
        inputs = np.concatenate([job.inputs, calibration])  # the build's fixed inputs and real photos
        with large_blocks_reused():  # the converter makes and frees many large blocks: reused, not mapped anew
            files = build_litert(job.saved_model, job.dist, job.artifact, v.resolution, inputs=inputs,
                                 calibration=calibration, formats=v.litert_formats,
                                 min_cosine=0.0 if job.random_weights else v.litert_min_cosine)
        for f in files if job.random_weights else ():
            if f.format != "float32" and f.cosine < v.litert_min_cosine:
                log.warning("warning: %s: the %s LiteRT file's cosine %.4f is below litert.min_cosine %s: not "
                            "enforced for random weights (such a build cannot be published)", job.artifact, f.format,
                            f.cosine, v.litert_min_cosine)
        return files

    def entries(self, record) -> tuple:
        return record.litert

    def record_fields(self, fields: dict, entries: tuple) -> dict:
        return {"litert": entries}

    def objects(self, artifact, record, dist: Dist) -> list[tuple[Path, str]]:
        from hubpub._files import sha256_file, sha256_sidecar

        files = []
        for lite in record.litert:  # with its .sha256 (made from the record for a build older than that)
            path = dist.root / lite.path
            if path.is_file() and not sha256_sidecar(path).is_file() and sha256_file(path) == lite.sha256:
                write_sha256(path, lite.sha256)
            obj = artifact.litert_object(lite.format)
            files += [(path, obj), (sha256_sidecar(path), obj + ".sha256")]
        if record.litert and (labels := dist.litert_labels(artifact.name)).is_file():
            files.append((labels, artifact.object_name(".labels.txt")))
        return files

    def hub_files(self, record, dist: Dist) -> list[tuple[str, Path]]:
        files = super().hub_files(record, dist)
        labels = dist.litert_labels(record.artifact)  # a classifier's class names, beside its files
        return files + ([(labels.name, labels)] if record.litert and labels.is_file() else [])

    def hub_sha256(self, record) -> dict:
        return {f.format: f.sha256 for f in record.litert}

    def describe(self, record) -> str:
        return "LiteRT " + "; ".join(f"{f.format} sha256 {f.sha256[:16]}... cosine {f.cosine:.4f}"
                                     for f in record.litert)

    def downloads(self, artifact, record, links: dict, beside: bool) -> list[tuple]:
        return [(f"LiteRT {f.format} (.tflite), cosine {f.cosine:.4f} to the SavedModel",
                 f"../../{artifact.litert_object(f.format)}" if beside else
                 f"{links['litert_prefix']}{f.format}.tflite", f.path, f.size, f.sha256) for f in record.litert]

    def run(self, data: bytes, images: np.ndarray) -> np.ndarray:
        return run(data, images)


def calibration_images(resolution: int, folders: tuple[Path, ...] = (), limit: int = 64) -> np.ndarray:
    """Real photos, resized and centre-cropped to `resolution`, in [0, 1]: the package's sample photos
    and any image files in `folders`."""
    from PIL import Image

    from hubpub.resources import photos

    paths = list(photos()) + [p for f in folders for p in sorted(Path(f).rglob("*"))
                              if p.suffix.lower() in (".jpg", ".jpeg", ".png")]
    out = []
    for path in paths[:limit]:
        image = Image.open(path).convert("RGB")
        scale = resolution / min(image.size)
        image = image.resize((max(resolution, round(image.width * scale)), max(resolution, round(image.height *
                                                                                               scale))),
                             Image.Resampling.BICUBIC)
        left, top = (image.width - resolution) // 2, (image.height - resolution) // 2
        out.append(np.asarray(image.crop((left, top, left + resolution, top + resolution)), np.float32) / 255.0)
    return np.stack(out)
