"""The Keras 3 format: a `.keras` file of layers Keras ships, loadable on TensorFlow, JAX or PyTorch
with `keras.saving.load_model` and no hubpub.

Built from the family's portable graph (same layer names, standard layers only) with the weights of
the fast model copied by layer name, checked equal to it, and written reproducibly: Keras stamps the
save time into `metadata.json` and the zip entries; both are fixed here, as for the SavedModel.
"""

from __future__ import annotations

import gc
import json
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hubpub import tolerances
from hubpub._files import atomic_path, sha256_file, temp_name, write_sha256
from hubpub._tf import call_in_graph
from hubpub.errors import ExportError
from hubpub.formats.base import Format, FormatJob
from hubpub.keras_files import load_keras_file
from hubpub.record import KerasFile

KERAS_TOLERANCE = tolerances.KERAS_FILE  # the reloaded file against the SavedModel
FIXED_DATE = "2000-01-01@00:00:00"
FIXED_ZIP_TIME = (2000, 1, 1, 0, 0, 0)


@dataclass(frozen=True)
class KerasArtifact:
    path: Path
    sha256: str
    size: int
    max_abs: float  # the reloaded file against the fast model on the probe images


class LayerWeights:
    """A model's weights by layer name, as `portable_copy` reads them: (array, weight path) of each weight."""

    def __init__(self, model):
        self.name, self._model = model.name, model

    def layer(self, name: str) -> list[tuple[np.ndarray, str]] | None:
        try:
            layer = self._model.get_layer(name)
        except ValueError:
            return None
        return [(np.asarray(w.numpy()), w.path) for w in layer.weights]


class WeightsOnDisk(LayerWeights):
    """A model's weights saved into `folder` (one `.npy` a weight) and read back a layer at a time: the
    build frees the model before its portable copy is made, so the two never hold the weights at once
    (ConvNeXt large at 384 px: +0.9x the weights at the `.keras` stage when they did)."""

    def __init__(self, model, folder: Path):
        self.name, self.folder = model.name, folder
        folder.mkdir(parents=True, exist_ok=True)
        self._files: dict[str, list[tuple[Path, str]]] = {}
        for i, layer in enumerate(model.layers):
            for j, weight in enumerate(layer.weights):
                path = folder / f"{i}-{j}.npy"
                np.save(path, np.asarray(weight.numpy()))
                self._files.setdefault(layer.name, []).append((path, weight.path))

    def layer(self, name: str) -> list[tuple[np.ndarray, str]] | None:
        files = self._files.get(name)
        return None if files is None else [(np.load(path), where) for path, where in files]


def portable_copy(weights: LayerWeights, build_portable):
    """`build_portable()`'s model with the `weights`, layer by layer by name (reshaped where the
    portable layer stores the same numbers in another shape: a (C,) scale as a (1, 1, C, 1) kernel)."""
    import keras

    # Keras numbers unnamed operations (GRN's keras.ops) from a process-wide counter: reset it, so the
    # file's layer names, and so its bytes, do not depend on what was built before in this process.
    keras.backend.clear_session()
    portable = build_portable()
    for layer in portable.layers:
        if not layer.weights:
            continue
        source = weights.layer(layer.name)
        if source is None:
            raise ExportError(f"{weights.name}: the portable graph's layer {layer.name!r} has no twin")
        if len(source) != len(layer.weights):
            raise ExportError(f"{weights.name}: layer {layer.name!r} holds {len(source)} weights, its portable "
                              f"twin {len(layer.weights)}")
        for target, (array, where) in zip(layer.weights, source, strict=True):
            if array.size != int(np.prod(target.shape)):
                raise ExportError(f"{weights.name}: {where} {array.shape} does not fit {target.path} {target.shape}")
            target.assign(array.reshape(target.shape))
    return portable


def save_keras(model, path: Path) -> tuple[str, int]:
    """Save `model` as a `.keras` file whose bytes depend only on the model; write `<path>.sha256`."""
    with atomic_path(path) as tmp:
        folder = tmp.with_name(tmp.name.removesuffix(".tmp") + ".d.tmp")  # a temp name: swept after an interrupt
        try:
            # Keras' own zip holds the weights file in memory (two more copies of the weights) when it
            # thinks the machine has room, and writes it to disk otherwise: HDF5 lays the two out
            # differently, so the bytes would depend on free memory. Saved as a folder, the weights file
            # is always written straight to disk; the zip is made here, in a fixed order.
            model.save(folder, zipped=False)
            _zip_folder(folder, tmp)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    digest = sha256_file(path)
    write_sha256(path, digest)
    return digest, path.stat().st_size


def _zip_folder(folder: Path, target: Path) -> None:
    """The `.keras` zip of a folder Keras saved: entries sorted, fixed times and modes, no save date."""
    files = sorted((p for p in folder.rglob("*") if p.is_file()), key=lambda p: p.relative_to(folder).as_posix())
    with zipfile.ZipFile(target, "w", zipfile.ZIP_STORED) as zout:
        for file in files:
            name = file.relative_to(folder).as_posix()
            entry = zipfile.ZipInfo(name, date_time=FIXED_ZIP_TIME)
            entry.external_attr = 0o644 << 16
            if name == "metadata.json":
                meta = json.loads(file.read_text())
                meta["date_saved"] = FIXED_DATE  # changes from save to save
                zout.writestr(entry, json.dumps(meta, sort_keys=True).encode())
            elif name == "config.json":
                zout.writestr(entry, json.dumps(_renumber_shared_objects(json.loads(file.read_text()))).encode())
            else:  # the weights, streamed: never a second copy of them in memory
                entry.file_size = file.stat().st_size
                with file.open("rb") as src, zout.open(entry, "w") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)


def _renumber_shared_objects(config):
    """Keras marks objects shared between layers (a dtype policy) with their Python `id()`: a memory
    address, different in every process. Number them 1, 2, ... in order of appearance instead."""
    numbers: dict[int, int] = {}

    def walk(node):
        if isinstance(node, dict):
            return {k: (numbers.setdefault(v, len(numbers) + 1) if k == "shared_object_id" else walk(v))
                    for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    return walk(config)


def check_keras_file(path: Path, images: np.ndarray, expected: np.ndarray) -> float:
    """Load the file with Keras' loader (no custom objects, safe mode) and compare with `expected`."""
    with zipfile.ZipFile(path) as z:
        if '"hubpub>' in z.read("config.json").decode():
            raise ExportError(f"{path}: refers to hubpub's own layers; it would not load without hubpub")
        # From a .keras zip, Keras reads the whole weights file into memory before loading it (when it
        # judges there is room); from the extracted folder it reads each weight from disk: the same
        # loader on the same bytes (CRC-checked on extraction), without those copies. The zip path
        # itself is what the tests load in fresh processes.
        with tempfile.TemporaryDirectory(prefix=".keras-check-", suffix=".tmp", dir=path.parent) as folder:
            z.extractall(folder)
            got = call_in_graph(load_keras_file(Path(folder), shown_as=str(path)), images)
    delta, allowed = float(np.abs(got - expected).max()), keras_tolerance(expected)
    if not delta <= allowed:
        raise ExportError(f"{path}: the Keras file's outputs differ from the SavedModel's by {delta:.3g} "
                          f"(tolerance {allowed:.3g}: {KERAS_TOLERANCE:g} x the outputs' scale)")
    return delta


def keras_tolerance(expected: np.ndarray) -> float:
    """`KERAS_FILE` scaled by the outputs' largest |value| (at least 1). Another graph of the same weights
    rounds otherwise, relative to the values: the feature vector of ConvNeXt V2 large (random weights)
    differed by 1.12e-5 after 36 blocks, a few float32 steps of its values (benchmarks/bench_collection.py)."""
    return KERAS_TOLERANCE * max(1.0, float(np.abs(expected).max()))


def write_keras(weights: LayerWeights, build_portable, path: Path) -> tuple[str, int]:
    """The portable copy of the model whose `weights` these are, written reproducibly to `path`: (sha256,
    size). Check it with `checked_keras`: the check loads another copy."""
    portable = portable_copy(weights, build_portable)
    try:
        return save_keras(portable, path)
    finally:
        del portable
        gc.collect()


def checked_keras(path: Path, sha256: str, size: int, images: np.ndarray, expected: np.ndarray) -> KerasArtifact:
    """`path` reloaded as a user loads it and compared with `expected` (the SavedModel's outputs on
    `images`); a file that fails the check is removed."""
    try:
        delta = check_keras_file(path, images, expected)
    except BaseException:
        path.unlink(missing_ok=True)
        path.with_name(path.name + ".sha256").unlink(missing_ok=True)
        raise
    return KerasArtifact(path, sha256, size, delta)


def export_keras(fast, build_portable, path: Path, images: np.ndarray, expected: np.ndarray) -> KerasArtifact:
    """The whole stage at once, from a model in memory: `write_keras`, then `checked_keras`."""
    return checked_keras(path, *write_keras(LayerWeights(fast), build_portable, path), images, expected)


class Keras(Format):
    """The `.keras` file, `dist/keras/<artifact>.keras`. The model's weights are saved to disk while it
    exists (`prepare`); once the build has freed it, the portable copy is made from them, saved, freed,
    and the file reloaded as a user loads it and checked (`build`): at most one copy of the weights at a
    time beside the build's own."""

    name = "keras"
    title = "Keras 3"
    suffix = ".keras"
    extra = None  # Keras is the core's
    kaggle_framework = "keras"
    runner = "keras.saving.load_model"
    tolerance = KERAS_TOLERANCE  # scaled by the outputs' largest |value| (`keras_tolerance`)
    content_type = "application/zip"
    source = "model"
    in_formats = False  # the record's `keras`
    hf_library, hf_tags = "keras", ("keras", "tensorflow")  # huggingface.js counts config.json downloads
    holds = "the Keras 3 model (`keras.saving.load_model`)"
    hf_suffix = ""  # the artifact's own repository: what `keras.saving.load_model("hf://ORG/<artifact>")` reads

    def path(self, dist, artifact: str) -> Path:
        return dist.keras(artifact)

    def prepare(self, job: FormatJob, model, build_portable) -> tuple[WeightsOnDisk, object]:
        # A temp name beside the file: what an interrupted build leaves is cleaned up by the next one.
        folder = temp_name(self.path(job.dist, job.artifact).with_suffix(".weights"))
        shutil.rmtree(folder, ignore_errors=True)
        try:
            return WeightsOnDisk(model, folder), build_portable
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise

    def discard(self, prepared) -> None:
        shutil.rmtree(prepared[0].folder, ignore_errors=True)

    def build(self, job: FormatJob) -> tuple[KerasFile]:
        weights, build_portable = job.prepared
        path = self.path(job.dist, job.artifact)
        try:
            written = write_keras(weights, build_portable, path)
        finally:
            shutil.rmtree(weights.folder, ignore_errors=True)
        checked = checked_keras(path, *written, job.inputs, job.expected)
        return (KerasFile(job.dist.relative(checked.path), checked.sha256, checked.size, checked.max_abs),)

    def entries(self, record) -> tuple:
        return (record.keras,) if record.keras is not None else ()

    def record_fields(self, fields: dict, entries: tuple) -> dict:
        return {"keras": entries[0]}

    def downloads(self, artifact, record, links: dict, beside: bool) -> list[tuple]:
        if record.keras is None or links["keras_source"] != "url":  # a hub's Keras files: its page says how
            return []
        f = record.keras
        return [("Keras 3 (.keras), for keras.saving.load_model",
                 f"../../{artifact.keras_object}" if beside else links["keras_url"], f.path, f.size, f.sha256)]

    def run(self, data: bytes, images: np.ndarray) -> np.ndarray:
        import keras

        with tempfile.TemporaryDirectory(prefix="hubpub-keras-") as tmp:
            path = Path(tmp) / "model.keras"
            path.write_bytes(data)
            model = load_keras_file(path)
            return keras.ops.convert_to_numpy(model(images, training=False))


__all__ = ["KERAS_TOLERANCE", "Keras", "KerasArtifact", "LayerWeights", "WeightsOnDisk", "checked_keras",
           "export_keras", "keras_tolerance", "portable_copy", "save_keras", "write_keras"]
