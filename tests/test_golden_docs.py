"""The rendered docs as a user reads them: every combination compared with a reviewed golden file.

A template change shows up here as a diff for someone to read. After reviewing it, refresh with
`HUBPUB_UPDATE_GOLDEN=1 pytest tests/test_golden_docs.py` and commit the files.
"""

import os
import re
from pathlib import Path

import pytest

from hubpub.docs import collection_context, environment, model_context, render, template_dirs
from hubpub.docs.validate import validate_docs
from hubpub.doctree import model_doc_path
from hubpub.manifest import parse_manifest
from hubpub.record import (
    BuildRecord,
    CheckpointInfo,
    FormatFile,
    KerasFile,
    LiteRTFile,
    Output,
    ParityInfo,
    RoundTrip,
    Tarball,
)

GOLDEN = Path(__file__).parent / "golden" / "docs"
UPDATE = os.environ.get("HUBPUB_UPDATE_GOLDEN") == "1"

MANIFEST = """\
schema_version: 2
publisher: {handle: goldpub, name: Golden Publisher, description: ConvNeXt models rendered for review.}
collection: {name: convnext, description: "ConvNeXt image classifiers and feature extractors, every kind of doc."}
publish: {destination: gs://golden-bucket/convnext, public_url_base: "https://storage.googleapis.com/golden-bucket/convnext"}
notebooks: {github: goldpub/convnext-models, branch: main, path: notebooks}
checkpoint_base_url: https://dl.fbaipublicfiles.com/convnext/
eval_presets:
  224: {resize: shorter, crop_pct: 0.875}
  384: {resize: squash, crop_pct: 1.0}
datasets:
  shapes: {title: Shapes, classes: 3, labels: shapes.txt}
architectures:
  tiny: {family: convnext, depths: [3, 3, 9, 3], dims: [96, 192, 384, 768]}
  v2_tiny: {family: convnext_v2, depths: [3, 3, 9, 3], dims: [96, 192, 384, 768]}
  mine: {family: keras, features: features, feature_width: 16, title: ShapeNet-S}
  iso_small: {family: convnext, style: isotropic, depth: 18, dim: 384, patch_size: 16, layer_scale_init: 0.0}
variants:
  - {name: convnext_tiny_1k_224, architecture: tiny, num_classes: 1000, resolution: 224, top1: 82.1,
     checkpoint: {url: convnext_tiny_1k_224_ema.pth}}
  - {name: convnext_tiny_22k_224, architecture: tiny, pretrain: imagenet-21k, num_classes: 21841, resolution: 224,
     checkpoint: {url: convnext_tiny_22k_224.pth}}
  - {name: convnext_tiny_22k_1k_384, architecture: tiny, pretrain: imagenet-21k, finetune: imagenet-1k,
     num_classes: 1000, resolution: 384, top1: 84.1, checkpoint: {url: convnext_tiny_22k_1k_384.pth}}
  - {name: convnext_iso_small_1k_224, architecture: iso_small, num_classes: 1000, resolution: 224, top1: 78.7,
     description: "The isotropic variant: no downsampling, one stage of 18 blocks.",
     checkpoint: {url: convnext_iso_small_1k_224_ema.pth}}
  - {name: convnextv2_tiny_21k_1k_224, architecture: v2_tiny, pretrain: imagenet-21k, finetune: imagenet-1k,
     num_classes: 1000, resolution: 224, top1: 83.9, license: cc-by-nc-4.0,
     checkpoint: {url: "https://dl.fbaipublicfiles.com/convnext/convnextv2/im22k/convnextv2_tiny_22k_224_ema.pt"}}
  - {name: shapenet_s, architecture: mine, pretrain: shapes, num_classes: 3, resolution: 64, top1: 97.0,
     eval: {resize: squash, crop_pct: 1.0}, checkpoint: {path: shapenet.keras}}
"""

# (case, variant, kind, options): every dataset shape x kind with official weights, then the variations.
VARIANTS = ("convnext_tiny_1k_224", "convnext_tiny_22k_224", "convnext_tiny_22k_1k_384", "convnext_iso_small_1k_224",
            "convnextv2_tiny_21k_1k_224", "shapenet_s")
CASES = [(f"{v}__{k}", v, k, {}) for v in VARIANTS for k in ("classifier", "feature-extractor")]
CASES += [
    ("random_weights__classifier", "convnext_tiny_1k_224", "classifier", {"random_weights": True}),
    ("random_weights__feature-extractor", "convnext_tiny_1k_224", "feature-extractor", {"random_weights": True}),
    ("normalized_input__classifier", "convnext_tiny_22k_1k_384", "classifier", {"input_convention": "normalized"}),
    ("normalized_input__feature-extractor", "convnext_tiny_22k_1k_384", "feature-extractor",
     {"input_convention": "normalized"}),
    ("no_parity__classifier", "convnext_iso_small_1k_224", "classifier", {"parity": False}),
    ("with_eval__classifier", "convnext_tiny_1k_224", "classifier", {"eval": True}),
    ("no_keras_file__classifier", "convnext_tiny_1k_224", "classifier", {"keras": False}),
    ("on_kaggle__feature-extractor", "convnext_tiny_1k_224", "feature-extractor", {"base": "kaggle://goldpub/convnext"}),
    ("on_hf__classifier", "convnext_tiny_1k_224", "classifier", {"base": "hf://goldpub"}),
    ("with_litert__classifier", "convnext_tiny_1k_224", "classifier", {"litert": True}),
    ("with_onnx__classifier", "convnext_tiny_1k_224", "classifier", {"onnx": True}),
    ("with_onnx_on_hf__feature-extractor", "convnext_tiny_22k_1k_384", "feature-extractor",
     {"onnx": True, "base": "hf://goldpub", "input_convention": "normalized"}),
    ("with_onnx_on_kaggle__classifier", "convnext_tiny_1k_224", "classifier",
     {"onnx": True, "base": "kaggle://goldpub/convnext"}),
]
HUB_OPTIONS = ("eval", "base")
EVAL = {"top1": 82.062, "top5": 95.86, "images": 50000}


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    return parse_manifest(MANIFEST, tmp_path_factory.mktemp("golden") / "collection.yaml")


LITERT = (LiteRTFile("float32", "litert/convnext_tiny_1k_224.float32.tflite", "0" * 63 + "3", 114_428_292, 3.8e-06,
                      0.99999999, 1.0, 1.0),
          LiteRTFile("int8", "litert/convnext_tiny_1k_224.int8.tflite", "0" * 63 + "4", 29_842_408, 0.484, 0.99888,
                     1.0, 0.967))


def fake_report(artifact, *, random_weights=False, input_convention="hub", parity=True, keras=True,
                litert=False, onnx=False) -> BuildRecord:
    """A build record with fixed numbers, as the pipeline writes it."""
    v = artifact.variant
    clf = artifact.kind == "classifier"
    runs = ({"size": [v.resolution, v.resolution]}, {"size": [v.resolution + 32, v.resolution + 96]})
    return BuildRecord(
        artifact=artifact.name, variant=v.name, kind=artifact.kind, family=v.family.name, version=1,
        hubpub_version="0.1.0", input_convention=input_convention, random_weights=random_weights,
        checkpoint=CheckpointInfo(v.checkpoint_url, "0" * 64, "official", "pth"),
        parameters=v.parameter_count(artifact.kind) or 1443,
        parity=(ParityInfo("passed", 1e-4, 2.7e-06, runs) if parity and v.family.reference else
                ParityInfo("skipped (torch not installed)" if v.family.reference else
                           f"not checked: the {v.family.name} family has no reference implementation", None, None)),
        round_trip=RoundTrip(1e-5, 0.0, 4.8e-07),
        tarball=Tarball(f"tars/{artifact.name}.tar.gz", "0" * 63 + "1", 106_131_456, ()),
        saved_model=f"saved_models/{artifact.name}",
        output=Output("logits" if clf else "feature_vector", v.num_classes if clf else v.feature_dim),
        signatures={}, timings={}, reference={},
        preprocess_gap={"mean": 0.194, "max": 7.0, "photos": ["astronaut.jpg", "chelsea.jpg", "coffee.jpg",
                                                               "rocket.jpg"]},
        keras=KerasFile(f"keras/{artifact.name}.keras", "0" * 63 + "2", 114_807_868, 3.1e-6) if keras else None,
        litert=LITERT if litert else (),
        formats=(FormatFile("onnx", f"onnx/{artifact.name}.onnx", "0" * 63 + "5", 114_390_528, 2.1e-06, 1e-4),)
        if onnx else ())


def _rendered(manifest) -> dict[str, str]:
    env = environment(template_dirs())
    artifacts = {(a.variant.name, a.kind): a for a in manifest.artifacts()}
    out = {}
    for case, variant, kind, options in CASES:
        artifact = artifacts[(variant, kind)]
        report = fake_report(artifact, **{k: v for k, v in options.items() if k not in HUB_OPTIONS})
        ctx = model_context(manifest, artifact, report, EVAL if options.get("eval") else None,
                            public_url_base=options.get("base"))
        out[f"{case}.md"] = render(env, "model.md.j2", ctx)
        for lite in ctx["litert"][1:]:  # the tfhub.dev `# Lite` doc of one LiteRT file
            out[f"{case}__lite_{lite['format']}.md"] = render(env, "lite.md.j2", {**ctx, "lite": lite})
    built = [(a, fake_report(a)) for a in manifest.artifacts()]
    out["collection.md"] = render(env, "collection.md.j2",
                                  collection_context(manifest, built, {"convnext_tiny_1k_224": EVAL}))
    out["collection_on_kaggle.md"] = render(env, "collection.md.j2", collection_context(
        manifest, built[:4], {}, public_url_base="kaggle://goldpub/convnext"))
    out["publisher.md"] = render(env, "publisher.md.j2", {"publisher": manifest.publisher.model_dump(),
                                                          "collection": manifest.collection.model_dump()})
    return out


def test_docs_match_the_golden_files(manifest):
    rendered = _rendered(manifest)
    if UPDATE:
        GOLDEN.mkdir(parents=True, exist_ok=True)
        for old in GOLDEN.glob("*.md"):
            old.unlink()
        for name, text in rendered.items():
            (GOLDEN / name).write_text(text, encoding="utf-8", newline="\n")
    assert sorted(p.name for p in GOLDEN.glob("*.md")) == sorted(rendered), "golden files missing or stale"
    for name, text in rendered.items():
        assert (GOLDEN / name).read_text(encoding="utf-8") == text, f"{name} differs from its golden file"


def test_golden_docs_read_as_prose(manifest):
    """No words glued together by whitespace control, nothing left of the template."""
    for name, text in _rendered(manifest).items():
        assert not re.search(r"\{\{|\{%|%\}|\}\}|\bNone\b", text), name
        prose = re.sub(r"```.*?```", "", text, flags=re.S)  # code blocks are not prose
        for pattern in (r"[a-z]\(\[", r"\bby name[a-z]", r"[a-z]{3,}(and|with|ported)\b", r"\S  +\S"):
            found = [line for line in prose.splitlines() if re.search(pattern, line) and not line.startswith("|")]
            assert not found, f"{name}: {pattern!r} in {found}"


def test_golden_tree_passes_the_validator(manifest, tmp_path):
    """The real-weights docs laid out as a tfhub.dev tree validate, collection links included."""
    rendered = _rendered(manifest)
    pub = manifest.publisher.handle
    for artifact in manifest.artifacts():
        case = f"{artifact.variant.name}__{artifact.kind}.md"
        path = tmp_path / model_doc_path(pub, artifact)
        path.parent.mkdir(parents=True)
        path.write_text(rendered[case])
    (tmp_path / pub / "collections" / "convnext").mkdir(parents=True)
    (tmp_path / pub / "collections" / "convnext" / "1.md").write_text(rendered["collection.md"])
    (tmp_path / pub / f"{pub}.md").write_text(rendered["publisher.md"])
    lite = tmp_path / pub / "models" / "convnext_tiny_1k_224" / "int8" / "lite" / "1.md"
    lite.parent.mkdir(parents=True)
    lite.write_text(rendered["with_litert__classifier__lite_int8.md"])
    docs = validate_docs(tmp_path)
    assert len(docs) == 3 + 2 * len(VARIANTS)
    assert [d.kind for d in docs if d.name.endswith("/int8")] == ["lite"]
