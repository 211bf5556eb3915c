"""LiteRT files converted from the micro build, run through the LiteRT interpreter (ai-edge-litert)
and compared with the SavedModel."""

import pytest

from hubpub.formats.litert import LiteRTError, build_litert, calibration_images
from hubpub.layout import Dist
from hubpub.verify import reference_images

# The four formats of a build, checked against the SavedModel: the demo's test (tests/test_pipeline.py).


def test_conversion_is_reproducible(micro_dist, micro_manifest, tmp_path):
    """The files micro_dist's build wrote (another process, after other work) and a conversion here: the
    same bytes."""
    from hubpub.record import read_record

    record = read_record(micro_dist / "reports" / "micro_1k_224.json")
    v = micro_manifest.variant("micro_1k_224")
    again = build_litert(micro_dist / "saved_models" / "micro_1k_224", Dist(tmp_path), "micro_1k_224", 224,
                         inputs=reference_images(224, 224, 2, 0), formats=("float32", "int8"), min_cosine=0.9,
                         calibration=calibration_images(224, v.litert_calibration))
    assert [(f.format, f.sha256) for f in again] == [(f.format, f.sha256) for f in record.litert]


@pytest.mark.parametrize("random_weights", [True, False], ids=["random-weights", "real-weights"])
def test_the_quantized_gate_holds_for_real_weights_and_is_said_for_random_ones(micro_manifest, random_weights,
                                                                                tmp_path, caplog):
    """Random weights say nothing of what quantizing does to a model (and cannot be published): below
    `litert.min_cosine` their build goes on, saying so; a checkpoint not marked random is refused, with its
    figures, and no LiteRT file is left."""
    import dataclasses
    import logging

    from hubpub.convert import RANDOM_WEIGHTS_KEY, save_checkpoint
    from hubpub.pipeline import build_variant

    v = dataclasses.replace(micro_manifest.variant("micro_1k_224"), litert_formats=("float32", "int8"),
                            litert_min_cosine=1.0)
    checkpoint = save_checkpoint(v.family.random_checkpoint(v.architecture, v.num_classes, seed=0),
                                 tmp_path / "c.safetensors",
                                 metadata={RANDOM_WEIGHTS_KEY: "true"} if random_weights else None)
    build = lambda: build_variant(v, tmp_path / "dist", checkpoint=str(checkpoint), kinds=("classifier",),  # noqa: E731
                                  parity=False, formats=("litert",))
    if not random_weights:
        with pytest.raises(LiteRTError, match=r"the int8 LiteRT file disagrees with the SavedModel: cosine 0\.\d+ < "
                                              r"1\.0 \(litert\.min_cosine\), max \|Δ\| .*top-1 agreement"):
            build()
        assert not list((tmp_path / "dist").rglob("*.tflite"))
        return
    with caplog.at_level(logging.WARNING, logger="hubpub"):
        (record,) = build()
    int8 = next(f for f in record.litert if f.format == "int8")
    assert record.random_weights and int8.cosine < 1.0
    assert f"micro_1k_224: the int8 LiteRT file's cosine {int8.cosine:.4f} is below litert.min_cosine 1.0: not " \
           "enforced for random weights" in caplog.text
