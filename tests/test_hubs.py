"""Publishing to Kaggle Models and the Hugging Face Hub through the real clients (kagglehub with the
Kaggle SDK, huggingface_hub).

Neither hub can be reached from here and neither ships an emulator: the servers these tests talk to
are STAND-INS on loopback (`tests/kaggle_stub.py`, `tests/hf_stub.py`) that implement the endpoints
the clients call and check what they receive against the hubs' documented rules. What passes here
is the clients' real traffic against those rules, not the hubs themselves.
"""

import json
import shutil
from pathlib import Path

import pytest

from hubpub.destination import Destination
from hubpub.docs import render_docs
from hubpub.errors import PublishError
from hubpub.publish import publish
from hubpub.verify import read_reference, verify_handle
from tests.kaggle_stub import KaggleStub

KAGGLE = "kaggle://testpub/micro-models"


@pytest.fixture()
def hub_dist(micro_dist, tmp_path):
    dist = tmp_path / "dist"
    for folder in ("saved_models", "tars", "keras", "reports"):
        shutil.copytree(micro_dist / folder, dist / folder)
    return dist


@pytest.fixture()
def kaggle(monkeypatch, tmp_path):
    """The Kaggle stand-in, and the environment the real clients read: the SDK's test endpoint,
    legacy credentials, a throwaway download cache."""
    monkeypatch.setenv("KAGGLE_API_ENVIRONMENT", "TEST")
    monkeypatch.setenv("KAGGLE_USERNAME", "testpub")
    monkeypatch.setenv("KAGGLE_KEY", "not-a-real-key")
    monkeypatch.delenv("KAGGLE_API_TOKEN", raising=False)
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(tmp_path / "no-kaggle-config"))
    monkeypatch.setenv("KAGGLEHUB_CACHE", str(tmp_path / "kagglehub-cache"))
    with KaggleStub() as stub:
        yield stub


def _docs_for(manifest, dist, base):
    render_docs(manifest, dist=dist, out=dist / "docs", public_url_base=base)


def test_kaggle_round_trip_through_kagglehub(micro_manifest, hub_dist, kaggle, tmp_path):
    import kagglehub

    _docs_for(micro_manifest, hub_dist, KAGGLE)
    result = publish(micro_manifest, hub_dist, Destination.parse(KAGGLE))
    assert [(o.upload.relative, o.status) for o in result.outcomes] == [
        ("tensorFlow2/micro-1k-224", "uploaded"), ("keras/micro-1k-224", "uploaded"),
        ("tensorFlow2/micro-1k-224-fe", "uploaded"), ("keras/micro-1k-224-fe", "uploaded")]
    assert result.visibility == "private" and not kaggle.rejected

    model = kaggle.models[("testpub", "micro-models")]
    assert model.meta["is_private"] is True and model.meta["title"] == "ConvNeXt"
    assert model.meta["subtitle"] == "Micro ConvNeXt models for tests"
    assert "## Image classifiers" in model.meta["description"] and "<!--" not in model.meta["description"]
    assert "micro_1k_224.pth" in model.meta["provenance_sources"]
    tf2 = kaggle.instance("testpub", "micro-models", "tensorFlow2", "micro-1k-224")
    assert tf2.meta["license_name"] == "MIT" and tf2.meta["fine_tunable"] is True
    assert tf2.meta["training_data"] == ["ImageNet-1k"]
    assert "## Overview" in tf2.meta["overview"] and "## Usage" not in tf2.meta["overview"]
    assert "${FRAMEWORK}/${VARIATION_SLUG}/${VERSION_NUMBER}" in tf2.meta["usage"]
    files = set(tf2.versions[0].files)  # the SavedModel whole: sub-directories included
    assert {"saved_model.pb", "variables/variables.index", "variables/variables.data-00000-of-00001",
            "assets/labels.txt", "hubpub.json"} <= files

    # Downloaded as a user does, loaded with hub.KerasLayer: the build's recorded outputs.
    record = read_reference(hub_dist / "reports" / "micro_1k_224.json")
    folder = kagglehub.model_download("testpub/micro-models/tensorFlow2/micro-1k-224/1")
    assert verify_handle(folder, record).max_abs <= 1e-5
    keras_folder = kagglehub.model_download("testpub/micro-models/keras/micro-1k-224/1")
    downloaded = Path(keras_folder) / "micro_1k_224.keras"
    assert (hub_dist / "keras" / "micro_1k_224.keras").read_bytes() == downloaded.read_bytes()

    # Again: identical content makes no version.
    again = publish(micro_manifest, hub_dist, Destination.parse(KAGGLE))
    assert {o.status for o in again.outcomes} == {"already published"}
    assert len(tf2.versions) == 1

    # Other bytes already there (another build published as this version): refused, nothing made.
    marker = json.loads(tf2.versions[0].files["hubpub.json"])
    tf2.versions[0].files["hubpub.json"] = json.dumps({**marker, "sha256": "f" * 64}).encode()
    with pytest.raises(PublishError, match=r"tensorFlow2/micro-1k-224: version 1 holds other bytes .* bump "
                                           r"collection\.model_version .* or pass --force"):
        publish(micro_manifest, hub_dist, Destination.parse(KAGGLE))
    assert len(tf2.versions) == 1
    forced = publish(micro_manifest, hub_dist, Destination.parse(KAGGLE), force=True)
    assert [o.status for o in forced.outcomes].count("overwritten (forced)") == 1
    assert len(tf2.versions) == 2 and record_sha(hub_dist) in tf2.versions[1].notes
    assert "parity" in tf2.versions[1].notes


def record_sha(dist) -> str:
    return json.loads((dist / "reports" / "micro_1k_224.json").read_text())["tarball"]["sha256"]


def test_kaggle_dry_run_needs_no_credentials_and_shows_the_plan(micro_manifest, hub_dist, kaggle, monkeypatch):
    monkeypatch.delenv("KAGGLE_USERNAME")
    monkeypatch.delenv("KAGGLE_KEY")
    _docs_for(micro_manifest, hub_dist, KAGGLE)
    result = publish(micro_manifest, hub_dist, Destination.parse(KAGGLE), dry_run=True)
    assert {o.status for o in result.outcomes} == {"would publish"} and not kaggle.calls
    text = "\n".join(result.plan)
    assert "Kaggle model testpub/micro-models (private): title 'ConvNeXt'" in text
    assert "testpub/micro-models/tensorFlow2/micro-1k-224-fe: license 'MIT'" in text
    assert "variables/variables.index" in text and "micro_1k_224.keras" in text
    with pytest.raises(PublishError, match="no Kaggle credentials: set KAGGLE_USERNAME and KAGGLE_KEY"):
        publish(micro_manifest, hub_dist, Destination.parse(KAGGLE))


def test_kaggle_upload_faults(micro_manifest, hub_dist, kaggle):
    _docs_for(micro_manifest, hub_dist, KAGGLE)
    kaggle.put_faults = [("status", 503)]  # kagglehub does not retry a 5xx: one line, no version
    with pytest.raises(PublishError) as info:
        publish(micro_manifest, hub_dist, Destination.parse(KAGGLE))
    assert "\n" not in str(info.value) and "no version was made" in str(info.value)
    assert not kaggle.models[("testpub", "micro-models")].instances
    kaggle.put_faults = [("reset", 4096)]  # a dropped connection mid-file: kagglehub resumes at the offset
    result = publish(micro_manifest, hub_dist, Destination.parse(KAGGLE))
    assert {o.status for o in result.outcomes} == {"uploaded"}
    assert kaggle.resumed_at and kaggle.resumed_at[0] == 4096  # asked where it stopped, went on from there
    tf2 = kaggle.instance("testpub", "micro-models", "tensorFlow2", "micro-1k-224")
    stored = {name: len(data) for name, data in tf2.versions[0].files.items() if name != "hubpub.json"}
    assert stored == {name: size for name, size in _tar_sizes(hub_dist / "tars" / "micro_1k_224.tar.gz")}


def _tar_sizes(path):
    import tarfile

    with tarfile.open(path) as tar:
        return [(m.name.removeprefix("./"), m.size) for m in tar.getmembers() if m.isfile()]


def test_kaggle_refuses_docs_rendered_for_another_destination(micro_manifest, hub_dist, kaggle):
    _docs_for(micro_manifest, hub_dist, "https://models.example.com/micro")
    with pytest.raises(PublishError, match=r"rendered for another destination .* Run: hubpub docs --dest "
                                           r"kaggle://testpub/micro-models"):
        publish(micro_manifest, hub_dist, Destination.parse(KAGGLE))
    assert not kaggle.calls
