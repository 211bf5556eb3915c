"""The official eval preprocessing, pixel for pixel, and top-1/top-5 on a dataset with known answers."""

import io
import json

import numpy as np
import pytest
import skimage.data
from click.testing import CliRunner
from PIL import Image, ImageOps

from hubpub.cli import cli
from hubpub.eval import Dataset, evaluate, preprocess_gap, scan_dataset
from hubpub.eval.preprocess import preprocess_pil, preprocess_tf
from hubpub.manifest import EvalPreprocessing

SHORTER = EvalPreprocessing(resize="shorter", crop_pct=0.875)
SQUASH = EvalPreprocessing(resize="squash", crop_pct=1.0)


def official_reference(image: Image.Image, res: int, squash: bool) -> np.ndarray:
    """torchvision's eval transform, plainly: Resize(int(res / 0.875)) + CenterCrop(res), or Resize((res, res))."""
    image = ImageOps.exif_transpose(image).convert("RGB")
    if squash:
        return np.asarray(image.resize((res, res), Image.BICUBIC))
    size = int(res / 0.875)
    w, h = image.size
    ow, oh = (size, int(size * h / w)) if w <= h else (int(size * w / h), size)
    image = image.resize((ow, oh), Image.BICUBIC)
    top, left = int(round((oh - res) / 2.0)), int(round((ow - res) / 2.0))
    return np.asarray(image.crop((left, top, left + res, top + res)))


def _exif_rotated() -> Image.Image:
    buf = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90° clockwise to display
    Image.fromarray(skimage.data.coffee()).save(buf, format="JPEG", exif=exif)
    return Image.open(io.BytesIO(buf.getvalue()))


CASES = {
    "landscape": lambda: Image.fromarray(skimage.data.coffee()),
    "portrait": lambda: Image.fromarray(np.ascontiguousarray(np.rot90(skimage.data.rocket()))),
    "square": lambda: Image.fromarray(skimage.data.astronaut()),
    "tiny": lambda: Image.fromarray(skimage.data.chelsea()).resize((90, 61)),
    "grayscale": lambda: Image.fromarray(skimage.data.camera()),
    "rgba": lambda: Image.fromarray(skimage.data.chelsea()).convert("RGBA"),
    "cmyk": lambda: Image.fromarray(skimage.data.coffee()).convert("CMYK"),
    "palette": lambda: Image.fromarray(skimage.data.astronaut()).convert("P"),
    "exif-orientation": _exif_rotated,
}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("res,ev", [(224, SHORTER), (384, SQUASH)], ids=["224-crop", "384-squash"])
def test_host_preprocessing_is_pixel_exact(case, res, ev):
    ours = preprocess_pil(CASES[case](), res, ev)
    ref = official_reference(CASES[case](), res, squash=ev.resize == "squash")
    assert ours.shape == (res, res, 3) and ours.dtype == np.uint8
    assert np.array_equal(ours, ref)  # tolerance 0 on the uint8 stage
    if case == "exif-orientation":
        upright = Image.fromarray(np.asarray(_exif_rotated())).transpose(Image.ROTATE_270)  # pixels, no EXIF
        assert upright.height > upright.width
        assert np.array_equal(ours, official_reference(upright, res, squash=ev.resize == "squash"))


def test_normalised_values_match_torchvision_arithmetic():
    import torch

    from hubpub.families import FAMILIES
    from hubpub.parity import normalize

    ours = normalize(preprocess_pil(CASES["landscape"](), 224, SHORTER).astype(np.float32) / 255.0,
                     FAMILIES["convnext"])
    t = torch.from_numpy(official_reference(CASES["landscape"](), 224, False).copy()).permute(2, 0, 1).float() / 255
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    ref = ((t - mean[:, None, None]) / std[:, None, None]).permute(1, 2, 0).numpy()
    assert np.abs(ours - ref).max() <= 1e-6


def test_in_graph_preprocessing_is_close(root):
    """Not pixel exact (TF's antialiased bicubic is not Pillow's); tolerance: mean <= 0.5, max <= 10 of 255."""
    from hubpub.resources import photos as sample_photos

    photos = sample_photos()
    assert len(photos) == 4
    for res, ev in ((224, SHORTER), (384, SQUASH)):
        gap = preprocess_gap(res, ev, photos)
        assert gap["mean"] <= 0.5 and gap["max"] <= 10, gap
    for case in ("portrait", "tiny"):
        arr = np.asarray(CASES[case]().convert("RGB"))
        graph = preprocess_tf(arr, 224, SHORTER).numpy() * 255
        assert graph.shape == (224, 224, 3)
        assert np.abs(graph - preprocess_pil(CASES[case](), 224, SHORTER)).mean() <= 1.0


# ------------------------------------------------------------------ evaluation with known answers


@pytest.fixture(scope="module")
def colour_model(tmp_path_factory):
    """A classifier whose answer is known: class c wins when the mean red value is nearest (c + 0.5) / 10.

    logit_c = 20 (c + 0.5) r - (c + 0.5)^2 ranks classes by |10 r - (c + 0.5)|, so the top-5 of an image
    of class k are k, k±1, k±2. Classes 10..999 never win.
    """
    import keras

    from hubpub.export import export_saved_model
    from hubpub.resources import data_dir

    inputs = keras.Input((None, None, 3))
    x = keras.layers.GlobalAveragePooling2D()(inputs)
    dense = keras.layers.Dense(1000)
    out = dense(x)
    model = keras.Model(inputs, out)
    kernel = np.zeros((3, 1000), np.float32)
    bias = np.full(1000, -1e6, np.float32)
    c = np.arange(10) + 0.5
    kernel[0, :10] = 20 * c
    bias[:10] = -(c**2)
    dense.set_weights([kernel, bias])
    path = tmp_path_factory.mktemp("colour") / "colour_model"
    export_saved_model(model, path, kind="classifier", resolution=224, ev=SHORTER,
                       labels=data_dir() / "labels/imagenet-1k.txt")
    return path


def _solid(path, k, size=(300, 200)):
    red = int(round((k + 0.5) / 10 * 255))
    Image.new("RGB", size, (red, 40, 200)).save(path)


@pytest.fixture
def colour_data(tmp_path, root):
    from hubpub.labels import read_labels
    from hubpub.resources import data_dir

    synsets = [s for s, _ in read_labels(data_dir() / "labels/imagenet-1k.txt")]
    data = tmp_path / "val"
    expected1 = expected5 = n = 0
    for cls in range(10):
        folder = data / synsets[cls]
        folder.mkdir(parents=True)
        for j, shown in enumerate([cls, cls, (cls + 1) % 10, (cls + 4) % 10]):  # some images in the wrong folder
            _solid(folder / f"{j}.JPEG", shown)
            n += 1
            expected1 += shown == cls
            expected5 += cls in _top5(shown)
    (data / synsets[3] / "broken.JPEG").write_bytes(b"not a jpeg at all")
    (data / "n99999999").mkdir()
    _solid(data / "n99999999" / "x.png", 1)
    return data, synsets, n, expected1, expected5


def _top5(k):
    return set(sorted(range(10), key=lambda c: abs(k - c))[:5])  # no ties at the 5th place for k in 0..9


def test_eval_counts_top1_top5_exactly(colour_model, colour_data):
    import tensorflow as tf
    import tensorflow_hub as hub

    data, synsets, n, expected1, expected5 = colour_data
    dataset = scan_dataset(data, synsets)
    assert dataset.unknown == {"n99999999": 1}
    layer = hub.KerasLayer(str(colour_model))
    result = evaluate(lambda x: layer(tf.constant(x)).numpy(), dataset, resolution=224, ev=SHORTER, batch_size=7)
    assert result.images == n == 40
    assert (result.correct1, result.correct5) == (expected1, expected5) == (20, 30)
    assert result.top1 == 50.0 and result.top5 == 75.0
    assert len(result.corrupt) == 1 and "broken.JPEG" in result.corrupt[0]


def test_eval_with_a_labels_file(colour_model, colour_data, tmp_path):
    import tensorflow as tf
    import tensorflow_hub as hub

    data, synsets, *_ = colour_data
    lines = [f"{synsets[0]}/0.JPEG {synsets[0]}", f"{synsets[0]}/2.JPEG 0", f"{synsets[5]}/0.JPEG 5",
             f"{synsets[5]}/0.JPEG n00000000"]
    (tmp_path / "labels.txt").write_text("\n".join(lines) + "\n")
    dataset = scan_dataset(data, synsets, tmp_path / "labels.txt")
    assert len(dataset.items) == 3 and dataset.unknown == {"n00000000": 1}
    layer = hub.KerasLayer(str(colour_model))
    result = evaluate(lambda x: layer(tf.constant(x)).numpy(), dataset, resolution=224, ev=SHORTER)
    assert (result.correct1, result.images) == (2, 3)


def test_cli_eval_writes_the_report_and_feeds_the_collection_doc(micro_manifest_path, micro_dist, colour_data,
                                                                 tmp_path):
    import shutil

    from hubpub.docs import render_docs
    from hubpub.manifest import load_manifest

    dist = tmp_path / "dist"
    shutil.copytree(micro_dist, dist)
    data = colour_data[0]
    result = CliRunner().invoke(cli, ["eval", "micro_1k_224", "--data", str(data), "--dist", str(dist),
                                      "--manifest", str(micro_manifest_path), "--limit", "12"])
    assert result.exit_code == 0, result.output
    report = json.loads((dist / "reports" / "micro_1k_224.eval.json").read_text())
    assert report["images"] == 12 and report["skipped_unknown_class"] == 1 and report["published_top1"] == 50.0
    render_docs(load_manifest(micro_manifest_path), dist=dist, out=dist / "docs")
    coll = (dist / "docs/assets/docs/testpub/collections/micro/1.md").read_text()
    row = next(line for line in coll.splitlines() if line.startswith("| [micro\\_1k\\_224]"))
    # the measured top-1 in its column, even when it is 0.00 (random weights): a number, never the dash
    assert row.split(" | ")[5] == f"{report['top1']:.2f}", row
    result = CliRunner().invoke(cli, ["eval", "micro_1k_224_fe", "--data", str(data), "--dist", str(dist),
                                      "--manifest", str(micro_manifest_path)])
    assert result.exit_code == 1 and "is a feature extractor" in result.output


def test_scan_rejects_a_folder_without_classes(tmp_path):
    from hubpub.eval import EvalError

    (tmp_path / "junk").mkdir()
    with pytest.raises(EvalError, match="no images in class folders named by WordNet id"):
        scan_dataset(tmp_path, ["n01440764"])
    assert isinstance(Dataset([]).unknown, dict)
