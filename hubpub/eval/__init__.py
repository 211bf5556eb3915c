"""Evaluation with the official preprocessing: top-1/top-5 on an ImageNet-style folder."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hubpub.errors import HubpubError
from hubpub.manifest import EvalPreprocessing

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


class EvalError(HubpubError):
    """The evaluation data or model cannot be used."""


def preprocess_gap(resolution: int, ev: EvalPreprocessing, photos: list[Path]) -> dict:
    """Mean and max |Δ| (0-255 scale) between the in-graph and the Pillow pipelines, from encoded files."""
    import io

    import tensorflow as tf
    from PIL import Image

    from hubpub.eval.preprocess import decode_and_preprocess, preprocess_pil

    diffs = []
    for path in photos:
        data = path.read_bytes()
        host = preprocess_pil(Image.open(io.BytesIO(data)), resolution, ev).astype(np.float64)
        graph = decode_and_preprocess(tf.constant(data), resolution, ev).numpy().astype(np.float64) * 255.0
        diffs.append(np.abs(host - graph))
    d = np.stack(diffs)
    return {"mean": float(d.mean()), "max": float(d.max()), "photos": [p.name for p in photos]}


@dataclass
class Dataset:
    items: list[tuple[Path, int]]
    unknown: dict[str, int] = field(default_factory=dict)  # class (folder or label) -> files skipped


def scan_dataset(data: Path, synsets: list[str], labels_file: Path | None = None) -> Dataset:
    """Class subfolders named by WordNet id, or `labels_file` lines `<relative path> <wnid or index>`."""
    index = {s: i for i, s in enumerate(synsets)}
    if not data.is_dir():
        raise EvalError(f"{data}: not a directory")
    out = Dataset([])
    if labels_file is not None:
        for n, line in enumerate(labels_file.read_text().splitlines(), 1):
            if not line.strip():
                continue
            parts = line.rsplit(None, 1)
            if len(parts) != 2:
                raise EvalError(f"{labels_file}:{n}: expected '<image path> <wnid or class index>'")
            rel, label = parts
            cls = int(label) if label.isdigit() and int(label) < len(synsets) else index.get(label)
            if cls is None:
                out.unknown[label] = out.unknown.get(label, 0) + 1
            else:
                out.items.append((data / rel, cls))
        return out
    for folder in sorted(p for p in data.iterdir() if p.is_dir()):
        files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if folder.name not in index:
            out.unknown[folder.name] = len(files)
            continue
        out.items += [(f, index[folder.name]) for f in files]
    if not out.items:
        raise EvalError(f"{data}: no images in class folders named by WordNet id "
                        f"({len(out.unknown)} unknown folders: {', '.join(list(out.unknown)[:3])})")
    return out


@dataclass
class EvalResult:
    top1: float
    top5: float
    images: int
    correct1: int
    correct5: int
    corrupt: list[str]
    unknown: dict[str, int]
    seconds: float

    def to_dict(self) -> dict:
        return {"top1": self.top1, "top5": self.top5, "images": self.images, "correct_top1": self.correct1,
                "correct_top5": self.correct5, "skipped_corrupt": len(self.corrupt),
                "corrupt_files": self.corrupt[:50], "skipped_unknown_class": sum(self.unknown.values()),
                "unknown_classes": self.unknown, "seconds": self.seconds,
                "images_per_second": self.images / self.seconds if self.seconds else None}


def _load(item: tuple[Path, int], resolution: int, ev: EvalPreprocessing):
    from PIL import Image, UnidentifiedImageError

    from hubpub.eval.preprocess import preprocess_pil

    path, label = item
    try:
        with Image.open(path) as image:
            return preprocess_pil(image, resolution, ev), label, None
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as e:  # PIL's errors for bad files
        return None, label, f"{path}: {type(e).__name__}: {e}"


def _batches(items, resolution, ev, batch_size,
             workers) -> Iterator[tuple[np.ndarray | None, np.ndarray, list[str]]]:
    """Decode and preprocess on `workers` threads (Pillow releases the GIL) while the model runs."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        images, labels, bad = [], [], []
        for array, label, error in pool.map(lambda it: _load(it, resolution, ev), items):
            if error:
                bad.append(error)
                continue
            images.append(array)
            labels.append(label)
            if len(images) == batch_size:
                yield np.stack(images), np.array(labels), bad
                images, labels, bad = [], [], []
        if images or bad:
            yield (np.stack(images) if images else None), np.array(labels), bad


def evaluate(predict, dataset: Dataset, *, resolution: int, ev: EvalPreprocessing, batch_size: int = 32,
             limit: int | None = None, workers: int = 2, progress=None) -> EvalResult:
    """Top-1/top-5 of `predict(float32 [B, H, W, 3] in [0, 1]) -> logits` over the dataset."""
    items = dataset.items[:limit] if limit else dataset.items
    start = time.perf_counter()
    n = c1 = c5 = 0
    corrupt: list[str] = []
    for images, labels, bad in _batches(items, resolution, ev, batch_size, workers):
        for message in bad:
            log.warning("skipped %s", message)
        corrupt += bad
        if images is not None:
            logits = np.asarray(predict(images.astype(np.float32) / 255.0))
            top5 = np.argsort(-logits, axis=-1)[:, :5]
            c1 += int((top5[:, 0] == labels).sum())
            c5 += int((top5 == labels[:, None]).any(axis=-1).sum())
            n += len(labels)
        if progress:
            progress(len(labels) + len(bad))
    if n == 0:
        raise EvalError(f"no image could be evaluated ({len(corrupt)} corrupt)")
    return EvalResult(100.0 * c1 / n, 100.0 * c5 / n, n, c1, c5, corrupt, dataset.unknown,
                      time.perf_counter() - start)


def evaluate_artifact(manifest, artifact_or_url: str, data: Path, *, dist: Path, labels_file: Path | None = None,
                      limit: int | None = None, batch_size: int = 32) -> tuple[str, EvalResult, Path, Dataset]:
    """Evaluate a classifier (artifact name: its built SavedModel; or a directory or URL named after it)
    and write its eval report beside its build record; (artifact, result, report path, dataset scanned)."""
    from hubpub._files import write_json
    from hubpub.labels import read_labels
    from hubpub.layout import Dist
    from hubpub.progress import progress_bar

    layout = Dist(dist)
    by_name = {a.name: a for a in manifest.artifacts()}
    handle = artifact_or_url
    name = artifact_or_url if artifact_or_url in by_name else None
    if name:
        handle = str(layout.saved_model(name))
    else:  # .../<artifact>/<version>.tar.gz, or a directory named after the artifact
        parts = artifact_or_url.rstrip("/").split("?")[0].split("/")
        name = next((p for p in reversed(parts) if p in by_name), None)
    if name is None:
        raise EvalError(f"{artifact_or_url}: not an artifact of {manifest.path} (cannot tell its resolution)")
    artifact = by_name[name]
    if artifact.kind != "classifier":
        raise EvalError(f"{name} is a feature extractor; evaluate its classifier {artifact.variant.name}")
    from hubpub._tf import import_tensorflow

    tf = import_tensorflow()
    import tensorflow_hub as hub

    try:
        local = Path(hub.resolve(handle))
        layer = hub.KerasLayer(str(local))
    except Exception as e:
        raise EvalError(f"{handle}: cannot load the model: {type(e).__name__}: {e}") from None
    synsets = [label[0] for label in read_labels(local / "assets" / "labels.txt")]
    dataset = scan_dataset(data, synsets, labels_file)
    v = artifact.variant
    total = min(len(dataset.items), limit or len(dataset.items))
    with progress_bar(total=total, unit="img", desc=f"eval {name}") as bar:
        result = evaluate(lambda x: layer(tf.constant(x)).numpy(), dataset, resolution=v.resolution, ev=v.eval,
                          batch_size=batch_size, limit=limit, progress=bar.update)
    report = {"artifact": name, "handle": handle, "data": str(data), "preprocessing": v.eval.model_dump(),
              "resolution": v.resolution, "published_top1": v.top1, **result.to_dict()}
    return name, result, write_json(layout.eval_report(name), report), dataset
