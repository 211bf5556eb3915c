"""Publishing to Kaggle Models and the Hugging Face Hub through the real clients (kagglehub with the
Kaggle SDK, huggingface_hub).

Neither hub can be reached from here and neither ships an emulator: the servers these tests talk to
are STAND-INS on loopback (`tests/kaggle_stub.py`, `tests/hf_stub.py`) that implement the endpoints
the clients call and check what they receive against the hubs' documented rules. What passes here
is the clients' real traffic against those rules, not the hubs themselves.
"""

import hashlib
import json
import os
from pathlib import Path

import pytest

from hubpub import tolerances
from hubpub.destinations import parse as parse_destination
from hubpub.docs import render_docs
from hubpub.errors import PublishError, VerifyError
from hubpub.formats import by_name
from hubpub.publish import publish
from hubpub.verify import read_reference, verify_format, verify_handle
from tests.conftest import copy_built
from tests.kaggle_stub import KaggleStub

KAGGLE = "kaggle://testpub/micro-models"


@pytest.fixture()
def hub_dist(micro_dist, tmp_path):
    dist = tmp_path / "dist"
    copy_built(micro_dist, dist)
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
    result = publish(micro_manifest, hub_dist, parse_destination(KAGGLE))
    assert [(o.upload.relative, o.status) for o in result.outcomes] == [
        ("tensorFlow2/micro-1k-224", "uploaded"), ("keras/micro-1k-224", "uploaded"),
        ("tfLite/micro-1k-224", "uploaded"), ("onnx/micro-1k-224", "uploaded"),
        ("tensorFlow2/micro-1k-224-fe", "uploaded"), ("keras/micro-1k-224-fe", "uploaded"),
        ("tfLite/micro-1k-224-fe", "uploaded"), ("onnx/micro-1k-224-fe", "uploaded")]
    assert result.visibility == "private"
    # kagglehub's own agent on every call (hubpub computes it once: destinations/kaggle_client.one_user_agent)
    assert kaggle.user_agents == {f"kagglehub/{kagglehub.__version__}"}, kaggle.user_agents
    # what the clients asked before creating: each variation, then the model (Kaggle answers 404); no other
    assert kaggle.errors == ["404 GetModelInstance"] * 8 + ["404 GetModel"]

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
    lite = kaggle.instance("testpub", "micro-models", "tfLite", "micro-1k-224")
    assert set(lite.versions[0].files) == {"micro_1k_224.float32.tflite", "micro_1k_224.int8.tflite",
                                           "micro_1k_224.labels.txt", "hubpub.json"}
    assert lite.versions[0].files["micro_1k_224.int8.tflite"] == \
        (hub_dist / "litert" / "micro_1k_224.int8.tflite").read_bytes()
    files = set(tf2.versions[0].files)  # the SavedModel whole: sub-directories included
    assert {"saved_model.pb", "variables/variables.index", "variables/variables.data-00000-of-00001",
            "assets/labels.txt", "hubpub.json"} <= files

    # Downloaded as a user does, loaded with hub.KerasLayer: the build's recorded outputs.
    record = read_reference(hub_dist / "reports" / "micro_1k_224.json")
    folder = kagglehub.model_download("testpub/micro-models/tensorFlow2/micro-1k-224/1")
    assert verify_handle(folder, record).max_abs <= tolerances.VERIFY
    kaggle.downloaded.clear()
    keras_folder = kagglehub.model_download("testpub/micro-models/keras/micro-1k-224/1")
    downloaded = Path(keras_folder) / "micro_1k_224.keras"
    assert (hub_dist / "keras" / "micro_1k_224.keras").read_bytes() == downloaded.read_bytes()
    # the Keras variation holds the Keras file and hubpub's small marker: that is all a Keras user downloads
    assert sorted(name for name, _ in kaggle.downloaded) == ["hubpub.json", "micro_1k_224.keras"]
    assert sum(n for _, n in kaggle.downloaded) <= 1.2 * downloaded.stat().st_size
    onnx = kaggle.instance("testpub", "micro-models", "onnx", "micro-1k-224")  # sent as MODEL_FRAMEWORK_ONNX
    assert onnx.versions[0].files["micro_1k_224.onnx"] == (hub_dist / "onnx" / "micro_1k_224.onnx").read_bytes()
    assert json.loads(onnx.versions[0].files["hubpub.json"])["format"] == "onnx"
    onnx_folder = kagglehub.model_download("testpub/micro-models/onnx/micro-1k-224/1")
    assert set(os.listdir(onnx_folder)) == {"micro_1k_224.onnx", "hubpub.json"}
    assert verify_format(str(Path(onnx_folder) / "micro_1k_224.onnx"), record,
                         by_name("onnx")).max_abs <= tolerances.ONNX

    # Again: identical content makes no version.
    again = publish(micro_manifest, hub_dist, parse_destination(KAGGLE))
    assert {o.status for o in again.outcomes} == {"already published"}
    assert len(tf2.versions) == 1

    # Other bytes already there (another build published as this version): refused, nothing made.
    marker = json.loads(tf2.versions[0].files["hubpub.json"])
    tf2.versions[0].files["hubpub.json"] = json.dumps({**marker, "sha256": "f" * 64}).encode()
    with pytest.raises(PublishError, match=r"tensorFlow2/micro-1k-224: version 1 holds other bytes .* bump "
                                           r"collection\.model_version .* or pass --force"):
        publish(micro_manifest, hub_dist, parse_destination(KAGGLE))
    assert len(tf2.versions) == 1
    forced = publish(micro_manifest, hub_dist, parse_destination(KAGGLE), force=True)
    assert [o.status for o in forced.outcomes].count("overwritten (forced)") == 1
    assert len(tf2.versions) == 2 and record_sha(hub_dist) in tf2.versions[1].notes
    assert "parity" in tf2.versions[1].notes


def record_sha(dist) -> str:
    return json.loads((dist / "reports" / "micro_1k_224.json").read_text())["tarball"]["sha256"]


def test_kaggle_dry_run_needs_no_credentials_and_shows_the_plan(micro_manifest, hub_dist, kaggle, monkeypatch):
    monkeypatch.delenv("KAGGLE_USERNAME")
    monkeypatch.delenv("KAGGLE_KEY")
    _docs_for(micro_manifest, hub_dist, KAGGLE)
    result = publish(micro_manifest, hub_dist, parse_destination(KAGGLE), dry_run=True)
    assert {o.status for o in result.outcomes} == {"would publish"} and not kaggle.calls
    text = "\n".join(result.plan)
    assert "Kaggle model testpub/micro-models (private): title 'ConvNeXt'" in text
    assert "testpub/micro-models/tensorFlow2/micro-1k-224-fe: license 'MIT'" in text
    assert "variables/variables.index" in text and "micro_1k_224.keras" in text
    with pytest.raises(PublishError, match="no Kaggle credentials: set KAGGLE_USERNAME and KAGGLE_KEY"):
        publish(micro_manifest, hub_dist, parse_destination(KAGGLE))


def test_kaggle_upload_faults(micro_manifest, hub_dist, kaggle):
    _docs_for(micro_manifest, hub_dist, KAGGLE)
    kaggle.put_faults = [("status", 503)]  # kagglehub does not retry a 5xx: one line, no version
    with pytest.raises(PublishError) as info:
        publish(micro_manifest, hub_dist, parse_destination(KAGGLE))
    assert "\n" not in str(info.value) and "no version was made" in str(info.value)
    assert not kaggle.models[("testpub", "micro-models")].instances
    kaggle.put_faults = [("reset", 4096)]  # a dropped connection mid-file: kagglehub resumes at the offset
    result = publish(micro_manifest, hub_dist, parse_destination(KAGGLE))
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
        publish(micro_manifest, hub_dist, parse_destination(KAGGLE))
    assert not kaggle.calls


# --------------------------------------------------------------------------- the Hugging Face Hub

HF = "hf://testpub"


@pytest.fixture()
def hf(monkeypatch, tmp_path):
    """The HF Hub stand-in, and what the real client reads: the endpoint, a token, a throwaway cache.
    Xet is off: the stand-in serves the LFS path the same client takes without it (huggingface_hub
    reads the switch once, at import, so it is set on its constants too)."""
    from huggingface_hub import constants

    from tests.hf_stub import HfStub

    with HfStub() as stub:
        monkeypatch.setenv("HF_ENDPOINT", stub.url)
        monkeypatch.setenv("HF_TOKEN", "hf_not_a_real_token")
        monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
        monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
        monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
        yield stub


def test_hf_round_trip_through_huggingface_hub(micro_manifest, hub_dist, hf, tmp_path):
    import subprocess
    import sys

    import yaml

    from hubpub.destinations.hf import download_repo

    _docs_for(micro_manifest, hub_dist, HF)
    result = publish(micro_manifest, hub_dist, parse_destination(HF))
    repos = [f"testpub/{a}{s}" for a in ("micro_1k_224", "micro_1k_224_fe") for s in ("", "-savedmodel", "-litert",
                                                                                          "-onnx")]
    assert [(o.upload.relative, o.status, o.detail) for o in result.outcomes] == [(r, "uploaded", "v1") for r in repos]
    assert result.visibility == "private"
    # the clients asked for each repository's refs before creating it (404); nothing else was refused
    assert hf.errors == [f"404 GET /api/models/{r}/refs" for r in repos]
    repo = hf.repos["testpub/micro_1k_224"]
    assert repo.private and list(repo.tags) == ["v1"]
    keras_files = hf.files("testpub/micro_1k_224", "v1")  # the Keras layout alone, what Keras' hf:// loader reads
    every = {"README.md", "hubpub.json", ".eval_results/hubpub.yaml"}  # the card, the marker, evaluation results
    assert set(keras_files) == {"config.json", "metadata.json", "model.weights.h5", *every}
    assert set(hf.files("testpub/micro_1k_224-savedmodel", "v1")) == {"saved_model.tar.gz", *every}
    assert set(hf.files("testpub/micro_1k_224-litert", "v1")) == {
        "micro_1k_224.float32.tflite", "micro_1k_224.int8.tflite", "micro_1k_224.labels.txt", *every}
    files = hf.files("testpub/micro_1k_224-onnx", "v1")
    assert set(files) == {"micro_1k_224.onnx", *every}
    from huggingface_hub import parse_eval_result_entries  # the Hub's current format, read by its client

    results = parse_eval_result_entries(yaml.safe_load(keras_files[".eval_results/hubpub.yaml"]))
    assert [(e.dataset_id, e.value) for e in results][0] == ("imagenet-1k", 50.0)
    assert results[-1].dataset_id == "hubpub-parity" and results[-1].value < tolerances.PARITY
    assert files["micro_1k_224.onnx"] == (hub_dist / "onnx" / "micro_1k_224.onnx").read_bytes()
    assert json.loads(files["hubpub.json"])["sha256"] == hashlib.sha256(files["micro_1k_224.onnx"]).hexdigest()
    assert hf.files("testpub/micro_1k_224-savedmodel", "v1")["saved_model.tar.gz"] == \
        (hub_dist / "tars" / "micro_1k_224.tar.gz").read_bytes()
    meta = yaml.safe_load(keras_files["README.md"].decode().split("---")[1])
    assert meta["license"] == "mit" and meta["library_name"] == "keras"
    assert meta["pipeline_tag"] == "image-classification" and meta["datasets"] == ["imagenet-1k"]
    metrics = {m["name"]: m["value"] for result in meta["model-index"][0]["results"] for m in result["metrics"]}
    assert metrics["top-1 accuracy (published, %)"] == 50.0
    assert metrics["largest |Δ| from the PyTorch reference"] < tolerances.PARITY
    libraries = {r: yaml.safe_load(hf.files(r)["README.md"].decode().split("---")[1]).get("library_name")
                 for r in repos[:4]}
    assert list(libraries.values()) == ["keras", "tf-keras", "litert", None]  # ONNX: a format, not a library
    card = hf.files("testpub/micro_1k_224-onnx")["README.md"].decode()
    assert "This repository holds the ONNX file (`onnxruntime`) of `micro_1k_224`" in card
    assert all(f"[{r}](https://huggingface.co/{r})" in card for r in repos[:4])  # every card says where the rest are
    fe_meta = yaml.safe_load(hf.files("testpub/micro_1k_224_fe")["README.md"].decode().split("---")[1])
    assert fe_meta["pipeline_tag"] == "image-feature-extraction"
    (collection,) = hf.collections.values()
    assert [i["id"] for i in collection["items"]] == repos

    # As users get each format, from a fresh cache: every load path downloads its own format alone.
    record = read_reference(hub_dist / "reports" / "micro_1k_224.json")
    tarball = hub_dist / "tars" / "micro_1k_224.tar.gz"
    hf.downloaded.clear()
    folder = download_repo("testpub/micro_1k_224-savedmodel", tmp_path / "download", revision="v1")
    assert verify_handle(str(folder / "saved_model.tar.gz"), record).max_abs <= tolerances.VERIFY
    got = _downloaded(hf)
    assert set(got) == {"saved_model.tar.gz", *every}
    assert got["saved_model.tar.gz"] == tarball.stat().st_size
    tarball_url = f"{hf.url}/testpub/micro_1k_224-savedmodel/resolve/v1/saved_model.tar.gz"
    with pytest.raises(VerifyError, match="HTTP 401"):  # private: the Hub answers no one without the token
        verify_handle(tarball_url, record)
    hf.repos["testpub/micro_1k_224-savedmodel"].private = False  # made public, as a publisher does for its users
    hf.downloaded.clear()
    assert verify_handle(tarball_url, record).max_abs <= tolerances.VERIFY
    assert _downloaded(hf) == {"saved_model.tar.gz": tarball.stat().st_size}  # hub.KerasLayer: the tarball only
    for name, suffix in (("micro_1k_224.onnx", "-onnx"), ("micro_1k_224.int8.tflite", "-litert")):
        hf.downloaded.clear()
        download_repo(f"testpub/micro_1k_224{suffix}", tmp_path / f"snapshot{suffix}", revision="v1")
        assert name in _downloaded(hf) and not {"model.weights.h5", "saved_model.tar.gz"} & set(_downloaded(hf))
    code = ("import json, sys, numpy as np, keras\n"
            "from hubpub.verify import compare_to_record, reference_images\n"  # the inputs and the comparison only
            "r = json.load(open(sys.argv[1]))\n"
            "m = keras.saving.load_model('hf://testpub/micro_1k_224')\n"
            "print(compare_to_record(keras.ops.convert_to_numpy(m(reference_images(**r['inputs']))), r))\n")
    ref = tmp_path / "record.json"
    ref.write_text(json.dumps(record, default=lambda a: a.tolist()))
    hf.downloaded.clear()
    proc = subprocess.run([sys.executable, "-c", code, str(ref)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert float(proc.stdout.strip().splitlines()[-1]) <= tolerances.VERIFY
    keras_bytes = (hub_dist / "keras" / "micro_1k_224.keras").stat().st_size
    assert set(_downloaded(hf)) == {"config.json", "metadata.json", "model.weights.h5", *every}
    assert sum(_downloaded(hf).values()) <= 1.2 * keras_bytes, (_downloaded(hf), keras_bytes)

    # Again: nothing new. A changed doc: only the cards, on main; the tags stay.
    commits = len(repo.commits)
    again = publish(micro_manifest, hub_dist, parse_destination(HF))
    assert {o.status for o in again.outcomes} == {"already published"} and len(repo.commits) == commits
    doc = hub_dist / "docs" / "assets" / "docs" / "testpub" / "models" / "micro_1k_224" / "1.md"
    doc.write_text(doc.read_text() + "\nA note added after publishing.\n")
    updated = publish(micro_manifest, hub_dist, parse_destination(HF))
    assert [o.status for o in updated.outcomes] == ["updated (card)"] * 4 + ["already published"] * 4
    assert "A note added after publishing." in hf.files("testpub/micro_1k_224")["README.md"].decode()
    assert "A note added" not in hf.files("testpub/micro_1k_224", "v1")["README.md"].decode()

    # The tag holding other bytes: refused, unless forced.
    tagged = next(c for c in repo.commits if c.oid == repo.tags["v1"])
    tagged.files["hubpub.json"] = (b'{"form": "keras", "sha256": "other"}', False)
    with pytest.raises(PublishError, match=r"testpub/micro_1k_224: tag v1 holds other bytes .* --force"):
        publish(micro_manifest, hub_dist, parse_destination(HF))
    forced = publish(micro_manifest, hub_dist, parse_destination(HF), force=True)
    assert [o.status for o in forced.outcomes] == ["overwritten (forced)"] + ["already published"] * 7
    assert json.loads(hf.files("testpub/micro_1k_224", "v1")["hubpub.json"])["sha256"] == \
        hashlib.sha256((hub_dist / "keras" / "micro_1k_224.keras").read_bytes()).hexdigest()


def _downloaded(hf) -> dict[str, int]:
    """The files the stand-in served since `hf.downloaded` was cleared, by name, with their bytes."""
    out: dict[str, int] = {}
    for path, size in hf.downloaded:
        name = path.split("/resolve/", 1)[1].split("/", 1)[1]
        out[name] = out.get(name, 0) + size
    return out


def test_hf_dry_run_and_credentials(micro_manifest, hub_dist, hf, monkeypatch):
    monkeypatch.delenv("HF_TOKEN")
    _docs_for(micro_manifest, hub_dist, HF)
    result = publish(micro_manifest, hub_dist, parse_destination(HF), dry_run=True, public=True)
    assert {o.status for o in result.outcomes} == {"would publish"} and not hf.repos
    text = "\n".join(result.plan)
    assert "Hugging Face Hub, testpub (public): collection 'ConvNeXt' of 8 repositories" in text
    assert "testpub/micro_1k_224 @ v1: " in text and "pipeline_tag: image-classification" in text
    assert "testpub/micro_1k_224-savedmodel @ v1: " in text and "    saved_model.tar.gz (" in text
    assert "    model.weights.h5 (" in text and "    micro_1k_224.onnx (" in text
    with pytest.raises(PublishError, match="no Hugging Face credentials: set HF_TOKEN"):
        publish(micro_manifest, hub_dist, parse_destination(HF))


def test_hf_upload_faults_are_retried_or_leave_no_version(micro_manifest, hub_dist, hf):
    _docs_for(micro_manifest, hub_dist, HF)
    hf.put_faults = [("status", 503), ("status", 502)]  # huggingface_hub backs off and retries an LFS PUT
    result = publish(micro_manifest, hub_dist, parse_destination(HF))
    assert {o.status for o in result.outcomes} == {"uploaded"} and not hf.put_faults
    hf.repos.clear()
    hf.lfs.clear()
    hf.broken_oids = {record_sha(hub_dist)}  # one file the Hub keeps refusing
    with pytest.raises(PublishError) as info:
        publish(micro_manifest, hub_dist, parse_destination(HF))
    assert "\n" not in str(info.value) and "no commit is made from a partial upload" in str(info.value)
    assert all(not r.tags for r in hf.repos.values())  # no version anywhere
    assert not hf.repos["testpub/micro_1k_224-savedmodel"].commits  # and no commit from the partial upload


def test_cli_docs_publish_and_verify_on_kaggle(micro_manifest_path, hub_dist, kaggle):
    from click.testing import CliRunner

    from hubpub.cli import cli

    args = ["--manifest", str(micro_manifest_path), "--dist", str(hub_dist)]
    docs = CliRunner().invoke(cli, ["docs", *args, "--dest", KAGGLE])
    assert docs.exit_code == 0, docs.output
    assert "linking to kaggle://testpub/micro-models" in docs.output
    out = CliRunner().invoke(cli, ["publish", *args, "--dest", KAGGLE, "--public"])
    assert out.exit_code == 0, out.output
    assert "tensorFlow2/micro-1k-224" in out.output and "8 uploaded (public)" in out.output
    assert "verified: https://www.kaggle.com/models/testpub/micro-models/tensorFlow2/micro-1k-224" in out.output
    assert kaggle.models[("testpub", "micro-models")].meta["is_private"] is False


def test_cli_publish_on_hf_without_the_clients_request_log(micro_manifest_path, hub_dist, hf):
    """huggingface_hub's HTTP client logs every request at INFO; hubpub shows those with -vv only."""
    from click.testing import CliRunner

    from hubpub.cli import cli

    args = ["--manifest", str(micro_manifest_path), "--dist", str(hub_dist)]
    assert CliRunner().invoke(cli, ["docs", *args, "--dest", HF]).exit_code == 0
    out = CliRunner().invoke(cli, ["publish", *args, "--dest", HF, "--no-verify"])
    assert out.exit_code == 0, out.output
    assert "8 uploaded (private)" in out.output and "HTTP Request" not in out.output
    loud = CliRunner().invoke(cli, ["-vv", "publish", *args, "--dest", HF, "--no-verify"])
    assert loud.exit_code == 0 and "HTTP Request: GET" in loud.output


def test_hf_repository_names_are_checked_in_the_plan():
    """A name the Hub refuses fails the dry run too, not the upload after it (96 characters at most)."""
    from hubpub.destinations.hf import _check_repo_id

    _check_repo_id("testpub/" + "a" * 96)
    with pytest.raises(PublishError, match=r"hf://testpub/a{97}: not a valid Hugging Face repository name \(97 "
                                           r"characters\).*maximum length is 96"):
        _check_repo_id("testpub/" + "a" * 97)


# --------------------------------------------------------------------------- the stand-ins refuse what the hubs refuse


@pytest.mark.parametrize("how", ["api token", "kaggle.json", "wrong key"])
def test_kaggle_credentials_each_way_the_client_reads_them(micro_manifest, hub_dist, monkeypatch, tmp_path, how):
    """KAGGLE_API_TOKEN goes as a bearer token, kaggle.json's user and key as HTTP Basic; a wrong key is
    refused by the stand-in (401) and nothing is made."""
    monkeypatch.setenv("KAGGLE_API_ENVIRONMENT", "TEST")
    monkeypatch.setenv("KAGGLEHUB_CACHE", str(tmp_path / "kagglehub-cache"))
    for name in ("KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_API_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    config = tmp_path / "kaggle-config"
    config.mkdir()
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(config))
    if how == "api token":
        monkeypatch.setenv("KAGGLE_API_TOKEN", "KGAT_not_a_real_token")
    else:
        key = "not-a-real-key" if how == "kaggle.json" else "an-old-key"
        (config / "kaggle.json").write_text(json.dumps({"username": "testpub", "key": key}))
    _docs_for(micro_manifest, hub_dist, KAGGLE)
    with KaggleStub(token="KGAT_not_a_real_token") as stub:
        if how == "wrong key":
            with pytest.raises(PublishError, match=r"the credentials were refused \(HTTP 401\)"):
                publish(micro_manifest, hub_dist, parse_destination(KAGGLE))
            assert stub.errors and set(stub.errors) <= {"401 GetModelInstance", "401 GetModel"}
            assert not stub.models
            return
        result = publish(micro_manifest, hub_dist, parse_destination(KAGGLE))
        assert {o.status for o in result.outcomes} == {"uploaded"}
        assert stub.errors == ["404 GetModelInstance"] * 8 + ["404 GetModel"]


def test_kaggle_license_names_are_the_documented_ones():
    """Every license hubpub sends is in the list Kaggle documents (the stand-in's, from kaggle-api's docs)."""
    from hubpub.destinations.kaggle import LICENSES as HUBPUB_NAMES
    from tests.kaggle_stub import LICENSES as DOCUMENTED

    assert set(HUBPUB_NAMES.values()) <= DOCUMENTED, set(HUBPUB_NAMES.values()) - DOCUMENTED


def test_the_stand_ins_record_unknown_endpoints_and_wrong_credentials(hf):
    import requests

    with KaggleStub() as kaggle:
        answer = requests.post(f"{kaggle.url}/api/v1/models.ModelApiService/NoSuchCall", json={},
                               auth=("testpub", "not-a-real-key"), timeout=10)
        assert answer.status_code == 404
        answer = requests.post(f"{kaggle.url}/api/v1/models.ModelApiService/GetModel", json={},
                               headers={"Authorization": "Bearer anything"}, timeout=10)
        assert answer.status_code == 401
        assert kaggle.errors == ["404 NoSuchCall", "401 GetModel"]
    assert requests.get(f"{hf.url}/api/spaces/x/y", timeout=10).status_code == 404
    assert requests.post(f"{hf.url}/api/repos/create", json={"name": "x"}, timeout=10,
                         headers={"Authorization": "Bearer hf_wrong"}).status_code == 401
    assert hf.errors == ["404 GET /api/spaces/x/y", "401 POST /api/repos/create"] and not hf.repos
