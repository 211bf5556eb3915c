"""Signed artifacts: `publish --sign-key` writes an OpenSSF Model Signing bundle (`.sig`) beside every
artifact file at the destination, `verify --public-key` checks it before loading, and each tampering case
is refused naming the file. Keys are EC P-256, made here. GCS is fake-gcs-server with the real client."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from hubpub.cli import cli
from hubpub.destinations import parse as parse_destination
from hubpub.errors import PublishError
from hubpub.manifest import parse_manifest
from hubpub.publish import publish
from hubpub.signing import SignatureError, Signer, public_key_fingerprint, verify
from tests.test_hubs import hf as hf  # the stand-ins
from tests.test_hubs import kaggle as kaggle
from tests.test_publish import _objects, _setup
from tests.test_publish import bucket as bucket  # the fixture

pytest.importorskip("model_signing")

BASE = "http://127.0.0.1:9/bucket/micro"


def _key_pair(folder: Path, name: str) -> tuple[Path, Path]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    private, public = folder / f"{name}.pem", folder / f"{name}.pub.pem"
    private.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    public.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                     serialization.PublicFormat.SubjectPublicKeyInfo))
    return private, public


@pytest.fixture
def keys(tmp_path):
    return _key_pair(tmp_path, "publisher"), _key_pair(tmp_path, "someone-else")


def _verify_cli(*args):
    return CliRunner().invoke(cli, ["verify", *args])


def test_every_artifact_file_is_signed_and_each_tampering_is_refused(micro_manifest_path, micro_dist, tmp_path,
                                                                      keys, hub_cache):
    (key, pub), (_, other_pub) = keys
    manifest, dist = _setup(micro_manifest_path, micro_dist, tmp_path, bucket=None)
    out = tmp_path / "published"
    result = publish(manifest, dist, parse_destination(str(out)), public_url=BASE, signer=Signer(key=key),
                     verify=True)  # loads one artifact back, its signature checked as a user checks it
    assert result.verified is not None
    published = [o.upload.relative for o in result.outcomes]
    files = [r for r in published if r.endswith((".tar.gz", ".keras", ".tflite", ".onnx"))]
    assert len(files) >= 8 and {f + ".sig" for f in files} <= set(published)  # tarballs, .keras, LiteRT, ONNX
    for f in files:
        verify(out / f, out / (f + ".sig"), public_key=pub)
    tarball = out / "micro_1k_224/1.tar.gz"

    ok = _verify_cli(str(tarball), "--public-key", str(pub), "--report", str(dist / "reports/micro_1k_224.json"))
    assert ok.exit_code == 0, ok.output
    assert f"{tarball}: signature checked" in ok.output and "loads with hub.KerasLayer" in ok.output
    unsigned_check = _verify_cli(str(tarball), "--report", str(dist / "reports/micro_1k_224.json"))
    assert unsigned_check.exit_code == 0 and "signature not checked" in unsigned_check.output

    def refused(path: Path, key_file: Path, said: str) -> None:
        r = _verify_cli(str(path), "--public-key", str(key_file), "--report", str(dist / "reports/micro_1k_224.json"))
        assert r.exit_code == 1, r.output
        assert r.output.strip().splitlines()[-1] == f"error: {path}: {said}"

    refused(tarball, other_pub, "signature check failed: made with another key than the one given")
    flipped = tmp_path / "flipped" / "1.tar.gz"
    flipped.parent.mkdir()
    data = bytearray(tarball.read_bytes())
    data[len(data) // 2] ^= 0x01
    flipped.write_bytes(bytes(data))
    shutil.copy(tarball.with_name("1.tar.gz.sig"), flipped.with_name("1.tar.gz.sig"))
    refused(flipped, pub, "signature check failed: these bytes are not the ones signed")
    swapped = tmp_path / "swapped" / "1.tar.gz"  # the .sig of another file (the .keras) beside the tarball
    swapped.parent.mkdir()
    shutil.copy(tarball, swapped)
    shutil.copy(out / "micro_1k_224/1.keras.sig", swapped.with_name("1.tar.gz.sig"))
    refused(swapped, pub, "signature check failed: these bytes are not the ones signed")
    swapped.with_name("1.tar.gz.sig").unlink()
    refused(swapped, pub, f"no signature ({swapped}.sig cannot be read)")

    # Signed once: a second publish keeps every .sig (published and immutable), nothing to upload.
    again = publish(manifest, dist, parse_destination(str(out)), public_url=BASE, signer=Signer(key=key))
    assert {o.status for o in again.outcomes if o.upload.relative.endswith(".sig")} == {"already published"}


def test_signatures_on_a_bucket_checked_over_https(micro_manifest_path, micro_dist, tmp_path, keys, bucket,
                                                   hub_cache):
    (key, pub), _ = keys
    manifest, dist = _setup(micro_manifest_path, micro_dist, tmp_path, bucket=bucket)
    publish(manifest, dist, parse_destination(f"gs://{bucket}/micro"), signer=Signer(key=key))
    objects = _objects(bucket)
    assert "micro/micro_1k_224/1.tar.gz.sig" in objects and "micro/micro_1k_224_fe/1.keras.sig" in objects
    url = f"https://storage.googleapis.com/{bucket}/micro/micro_1k_224/1.keras"  # mapped to the emulator
    r = _verify_cli(url, "--public-key", str(pub), "--report", str(dist / "reports/micro_1k_224.json"))
    assert r.exit_code == 0, r.output
    assert "signature checked" in r.output and "keras.saving.load_model" in r.output


def test_signing_required_without_a_signer_uploads_nothing(micro_manifest_path, micro_dist, tmp_path):
    manifest, dist = _setup(micro_manifest_path, micro_dist, tmp_path, bucket=None)
    text = micro_manifest_path.read_text() + "signing: {required: true}\n"
    manifest = parse_manifest(text, tmp_path / "collection.yaml")
    with pytest.raises(PublishError, match=r"signing\.required is set, and no signer was given"):
        publish(manifest, dist, parse_destination(str(tmp_path / "published")), public_url=BASE)
    assert not (tmp_path / "published").exists() and not list(dist.rglob("*.sig"))


def test_signer_mistakes_are_one_line(micro_manifest_path, micro_dist, tmp_path, keys):
    (key, pub), _ = keys
    base = ["publish", "--manifest", str(micro_manifest_path), "--dist", str(tmp_path), "--dest", str(tmp_path / "p")]
    r = CliRunner().invoke(cli, [*base, "--sign-key", str(key), "--sign", "sigstore"])
    assert r.exit_code == 2 and r.output.startswith("error: --sign-key or --sign sigstore, not both (see `")
    r = CliRunner().invoke(cli, [*base, "--sign-cert", str(pub)])
    assert (r.exit_code, r.output.strip()) == (1, "error: --sign-cert needs the certificate's private key "
                                                  "(--sign-key)")
    with pytest.raises(SignatureError, match="not a PEM file; expected an EC public key"):
        public_key_fingerprint(micro_manifest_path)


def test_a_signature_hubpub_made_verifies_with_the_model_signing_tool_alone(micro_dist, tmp_path, keys):
    """The independent check: OpenSSF's own command line, in a process that does not import hubpub."""
    (key, pub), _ = keys
    tarball = tmp_path / "micro_1k_224.tar.gz"
    shutil.copy(micro_dist / "tars/micro_1k_224.tar.gz", tarball)
    [sig] = Signer(key=key).sign([tarball])
    tool = Path(sys.executable).with_name("model_signing")
    args = [str(tool), "verify", "key", str(tarball), "--signature", str(sig), "--public_key", str(pub)]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    check = subprocess.run(args, capture_output=True, text=True, env=env, cwd=tmp_path)
    assert check.returncode == 0, check.stdout + check.stderr
    assert subprocess.run(  # the tool's own process imports no hubpub
        [sys.executable, "-c", "import sys, model_signing._cli; print([m for m in sys.modules if m == 'hubpub' or "
         "m.startswith('hubpub.')])"], capture_output=True, text=True, env=env, cwd=tmp_path).stdout.strip() == "[]"
    data = bytearray(tarball.read_bytes())
    data[len(data) // 2] ^= 0x01
    tarball.write_bytes(bytes(data))
    assert subprocess.run(args, capture_output=True, text=True, env=env, cwd=tmp_path).returncode != 0
    assert public_key_fingerprint(pub) == public_key_fingerprint(key) and len(public_key_fingerprint(pub)) == 64


# --------------------------------------------------------------------------- hubpub audit


def _with_site(setup, base: str):
    """`_setup`'s dist with the collection site rendered too (what publish uploads as site/)."""
    from hubpub.site import render_site

    manifest, dist = setup
    render_site(manifest, dist=dist, public_url_base=base)
    return manifest, dist


def _audit(*args):
    return CliRunner().invoke(cli, ["audit", *args])


def _problems(output: str) -> list[tuple[str, str]]:
    """The audit's table rows: (file, problem)."""
    lines = output.splitlines()  # stdout and stderr together: a hub client's progress bar may end the line before
    start = next((i for i, line in enumerate(lines) if re.search(r"(^|\])file +problem$", line)), None)
    if start is None:
        return []
    rows = []
    for line in lines[start + 2:]:
        if not line.strip() or line.startswith(("error:", "/", "gs://")):
            break
        file, _, what = line.partition("  ")
        rows.append((file.strip(), what.strip()))
    return rows


def _tamper(read, write, delete) -> None:
    """One tampered file, one deleted file, one dead link: the three cases an audit must find."""
    data = bytearray(read("micro_1k_224/1.keras"))
    data[len(data) // 2] ^= 0x01
    write("micro_1k_224/1.keras", bytes(data))
    delete("micro_1k_224_fe/1.tar.gz")
    page = read("site/index.html").decode()
    write("site/index.html", page.replace("</body>", '<a href="models/gone.html">gone</a></body>').encode())


def _expected_findings(rows: list[tuple[str, str]], base: str) -> None:
    files = {f for f, _ in rows}
    assert ("micro_1k_224/1.keras", "signature check failed: these bytes are not the ones signed") in rows
    assert any(f == "micro_1k_224/1.keras" and w.startswith("sha256 ") for f, w in rows)
    assert any(w == f"asset-path {base}/micro_1k_224_fe/1.tar.gz: not published" for _, w in rows)
    assert ("site/index.html", "link models/gone.html: not published") in rows
    assert any(f.startswith("site/models/micro_1k_224_fe") and "1.tar.gz: not published" in w for f, w in rows)
    assert ("micro_1k_224_fe/1.tar.gz", "missing, but its .sha256 is published") in rows
    assert ("micro_1k_224_fe/1.tar.gz", "missing, but its .sig is published") in rows
    assert files <= {"micro_1k_224/1.keras", "micro_1k_224_fe/1.tar.gz", "site/index.html"} | {
        f for f in files if f.startswith(("docs/", "site/"))}


def test_audit_of_a_directory_clean_then_tampered(micro_manifest_path, micro_dist, tmp_path, keys, hub_cache):
    (key, pub), (_, other_pub) = keys
    manifest, dist = _with_site(_setup(micro_manifest_path, micro_dist, tmp_path, bucket=None), BASE)
    out = tmp_path / "published"
    publish(manifest, dist, parse_destination(str(out)), public_url=BASE, signer=Signer(key=key))

    clean = _audit(str(out), "--public-key", str(pub), "--load", "--checkout", str(tmp_path))
    assert clean.exit_code == 0, clean.output
    summary = clean.output.strip().splitlines()[-1]
    # each kind: a tarball, a .keras, two LiteRT files and an ONNX file; one of each kind and format loaded
    assert summary.startswith(f"{out}: ")
    assert "10 artifact files against their .sha256, 10 signatures checked" in summary
    assert summary.endswith(", 8 loaded")
    unsigned = _audit(str(out), "--checkout", str(tmp_path))
    assert unsigned.exit_code == 0 and "signatures not checked" in unsigned.output
    other = _audit(str(out), "--public-key", str(other_pub), "--checkout", str(tmp_path))
    assert other.exit_code == 1 and {w for _, w in _problems(other.output)} == {
        "signature check failed: made with another key than the one given"}

    _tamper(lambda r: (out / r).read_bytes(), lambda r, b: (out / r).write_bytes(b), lambda r: (out / r).unlink())
    found = _audit(str(out), "--public-key", str(pub), "--checkout", str(tmp_path))
    assert found.exit_code == 1
    assert found.output.strip().splitlines()[-1].startswith("error: ") and " problem(s) at " in found.output
    _expected_findings(_problems(found.output), BASE)


def test_audit_of_a_bucket_clean_then_tampered(micro_manifest_path, micro_dist, tmp_path, keys, bucket):
    from google.cloud import storage

    (key, pub), _ = keys
    manifest, dist = _with_site(_setup(micro_manifest_path, micro_dist, tmp_path, bucket=bucket),
                                f"https://storage.googleapis.com/{bucket}/micro")
    publish(manifest, dist, parse_destination(f"gs://{bucket}/micro"), signer=Signer(key=key))
    clean = _audit(f"gs://{bucket}/micro", "--public-key", str(pub), "--checkout", str(tmp_path))
    assert clean.exit_code == 0, clean.output

    blobs = storage.Client().bucket(bucket)
    _tamper(lambda r: blobs.blob(f"micro/{r}").download_as_bytes(),
            lambda r, b: blobs.blob(f"micro/{r}").upload_from_string(b), lambda r: blobs.blob(f"micro/{r}").delete())
    found = _audit(f"gs://{bucket}/micro", "--public-key", str(pub), "--checkout", str(tmp_path))
    assert found.exit_code == 1, found.output
    _expected_findings(_problems(found.output), f"https://storage.googleapis.com/{bucket}/micro")


def test_the_docs_say_who_signed_and_their_command_checks_it(micro_manifest_path, micro_dist, tmp_path, keys,
                                                            hub_cache):
    """The model doc, as a reader uses it: the key from the doc saved to a file, the doc's own command run
    against the collection served over loopback HTTP."""
    import re

    from hubpub.docs import render_docs
    from hubpub.verify import serve_directory
    from tests.conftest import copy_built

    (key, pub), _ = keys
    published = tmp_path / "published"
    published.mkdir()
    with serve_directory(published) as base:
        text = micro_manifest_path.read_text().replace(BASE, base)
        (tmp_path / "collection.yaml").write_text(text + f"signing: {{key: {key.name}}}\n")
        manifest = parse_manifest((tmp_path / "collection.yaml").read_text(), tmp_path / "collection.yaml")
        dist = copy_built(micro_dist, tmp_path / "dist", saved_models=False)
        render_docs(manifest, dist=dist, out=dist / "docs")
        publish(manifest, dist, parse_destination(str(published)), public_url=base)  # signs: the manifest's key
        doc = next((dist / "docs").rglob("micro_1k_224/1.md")).read_text()
        assert f"the key whose SHA-256 fingerprint is `{public_key_fingerprint(pub)}`" in doc
        pem = re.search(r"-----BEGIN PUBLIC KEY-----.*?-----END PUBLIC KEY-----", doc, re.S)[0]
        (tmp_path / "publisher.pub.pem").write_text("\n".join(line.strip() for line in pem.splitlines()) + "\n")
        [command] = [line.strip() for line in doc.splitlines() if line.strip().startswith("hubpub verify ")]
        assert command == f"hubpub verify {base}/micro_1k_224/1.tar.gz --public-key publisher.pub.pem"
        r = subprocess.run([sys.executable, "-m", "hubpub", *command.split()[1:], "--report",
                            str(dist / "reports/micro_1k_224.json")], cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "signature checked" in r.stdout and "loads with hub.KerasLayer" in r.stdout
    fe_doc = next((tmp_path / "dist/docs").rglob("micro_1k_224_fe/1.md")).read_text()
    assert "Signed: each file of this model has a signature beside it" in fe_doc  # every doc says it
    from hubpub.site import render_site

    site = render_site(manifest, dist=dist, public_url_base=base)
    page = next(p for p in site.pages if p.name == "micro_1k_224.html").read_text()
    assert f'fingerprint is <code class="hash">{public_key_fingerprint(pub)}</code>' in page


def test_the_nightly_audit_workflow_runs_a_real_command():
    import yaml

    root = Path(__file__).resolve().parent.parent
    workflow = yaml.safe_load((root / "deploy/github/audit-nightly.yml").read_text())
    [run] = [s["run"] for s in workflow["jobs"]["audit"]["steps"] if s.get("run", "").startswith("hubpub audit")]
    words = run.split()
    known = {o for p in cli.get_command(None, "audit").params for o in p.opts}
    assert {w for w in words if w.startswith("--")} <= known and "--public-key" in words
    assert workflow[True]["schedule"]  # YAML reads the key `on` as True


# --------------------------------------------------------------------------- the hubs


def test_signatures_on_the_hf_hub_beside_the_files(micro_manifest, micro_dist, tmp_path, keys, hf):
    """On the HF stand-in, with the real huggingface_hub client: each file's .sig in its repository, and
    the Keras layout's files under one model.sig that OpenSSF's tool checks on a snapshot as downloaded."""
    from hubpub.destinations.hf import download_repo
    from tests.conftest import copy_built
    from tests.test_hubs import HF, _docs_for

    (key, pub), _ = keys
    dist = copy_built(micro_dist, tmp_path / "dist")
    _docs_for(micro_manifest, dist, HF)
    publish(micro_manifest, dist, parse_destination(HF), signer=Signer(key=key))
    assert {"saved_model.tar.gz", "saved_model.tar.gz.sig"} <= set(hf.files("testpub/micro_1k_224-savedmodel"))
    assert {"micro_1k_224.int8.tflite.sig", "micro_1k_224.float32.tflite.sig"} <= set(
        hf.files("testpub/micro_1k_224-litert"))
    assert "micro_1k_224.onnx.sig" in hf.files("testpub/micro_1k_224-onnx")

    snapshot = download_repo("testpub/micro_1k_224", tmp_path / "snapshot", revision="v1")
    assert {"config.json", "model.weights.h5", "model.sig"} <= {p.name for p in snapshot.iterdir()}
    tool = [str(Path(sys.executable).with_name("model_signing")), "verify", "key", str(snapshot), "--signature",
            str(snapshot / "model.sig"), "--public_key", str(pub), "--ignore_unsigned_files"]
    check = subprocess.run(tool, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    weights = snapshot / "model.weights.h5"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0x01
    weights.write_bytes(bytes(data))
    assert subprocess.run(tool, capture_output=True, text=True).returncode != 0

    tarball = download_repo("testpub/micro_1k_224-savedmodel", tmp_path / "tar", revision="v1")
    verify(tarball / "saved_model.tar.gz", tarball / "saved_model.tar.gz.sig", public_key=pub)


def test_signatures_on_kaggle_in_each_variation(micro_manifest, micro_dist, tmp_path, keys, kaggle):
    """On the Kaggle stand-in, with the real kagglehub: each file's .sig in its variation, and the
    SavedModel's files under one saved_model.sig that OpenSSF's tool checks on a download."""
    from hubpub.destinations.kaggle import download_variation
    from tests.conftest import copy_built
    from tests.test_hubs import _docs_for

    (key, pub), _ = keys
    dist = copy_built(micro_dist, tmp_path / "dist")
    dest = "kaggle://testpub/micro"
    _docs_for(micro_manifest, dist, dest)
    publish(micro_manifest, dist, parse_destination(dest), signer=Signer(key=key))
    tool = str(Path(sys.executable).with_name("model_signing"))
    saved = download_variation("testpub/micro/tensorFlow2/micro-1k-224/1", tmp_path / "tf2")
    assert {"saved_model.pb", "saved_model.sig"} <= {p.name for p in saved.iterdir()}
    check = subprocess.run([tool, "verify", "key", str(saved), "--signature", str(saved / "saved_model.sig"),
                            "--public_key", str(pub), "--ignore_unsigned_files"], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    for framework, name in (("keras", "micro_1k_224.keras"), ("tfLite", "micro_1k_224.int8.tflite"),
                            ("onnx", "micro_1k_224.onnx")):
        got = download_variation(f"testpub/micro/{framework}/micro-1k-224/1", tmp_path / framework)
        verify(got / name, got / (name + ".sig"), public_key=pub)


def test_signing_streams_a_large_file_in_bounded_memory(tmp_path, keys):
    """Hashing for a signature reads 1 MiB at a time: Python's peak allocation stays far below the file."""
    import tracemalloc

    (key, pub), _ = keys
    big = tmp_path / "big.onnx"
    with open(big, "wb") as f:  # 96 MiB, not sparse: the bytes are read
        block = os.urandom(1 << 20)
        for _ in range(96):
            f.write(block)
    tracemalloc.start()
    try:
        [sig] = Signer(key=key).sign([big])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 * 2**20, f"{peak / 2**20:.0f} MiB allocated while signing 96 MiB"
    verify(big, sig, public_key=pub)


def test_sigstore_signing_runs_up_to_the_network_and_never_asks_interactively(micro_dist, tmp_path, monkeypatch):
    """Keyless signing needs Sigstore's servers, which this machine cannot reach: everything before them
    runs, and each way it stops is one line, before anything is uploaded."""
    tarball = tmp_path / "micro_1k_224.tar.gz"
    shutil.copy(micro_dist / "tars/micro_1k_224.tar.gz", tarball)
    for name in ("SIGSTORE_ID_TOKEN", "ACTIONS_ID_TOKEN_REQUEST_URL", "ACTIONS_ID_TOKEN_REQUEST_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(SignatureError, match=r"--sign sigstore needs an OIDC identity: none in this environment"):
        Signer(sigstore=True).sign([tarball])
    monkeypatch.setenv("SIGSTORE_ID_TOKEN", "eyJhbGciOiJub25lIn0.eyJzdWIiOiJjaSJ9.")  # a token: then the network
    with pytest.raises(SignatureError) as error:
        Signer(sigstore=True).sign([tarball])
    assert str(error.value).startswith(("cannot set up Sigstore signing: ", f"{tarball}: cannot sign it: "))
    assert "\n" not in str(error.value) and not list(tmp_path.glob("*.sig"))


def _flip(data: bytes) -> bytes:
    changed = bytearray(data)
    changed[len(changed) // 2] ^= 0x01
    return bytes(changed)


def test_audit_of_the_hf_hub_clean_then_tampered(micro_manifest, micro_dist, tmp_path, keys, hf):
    """hf://ORG as published, read through the real huggingface_hub client from the stand-in."""
    from tests.conftest import copy_built
    from tests.test_hubs import HF, _docs_for

    (key, pub), _ = keys
    dist = copy_built(micro_dist, tmp_path / "dist")
    _docs_for(micro_manifest, dist, HF)
    publish(micro_manifest, dist, parse_destination(HF), signer=Signer(key=key))
    clean = _audit(HF, "--public-key", str(pub), "--load", "--checkout", str(tmp_path))
    assert clean.exit_code == 0, clean.output
    # 2 kinds x (tarball, 2 LiteRT files, ONNX) against hubpub.json; those and the Keras layouts' model.sig
    assert "8 artifact files against their .sha256, 10 signatures checked" in clean.output
    assert clean.output.strip().endswith(", 6 loaded")  # each kind: the tarball, LiteRT, ONNX

    def files(repo):
        return hf.repos[f"testpub/{repo}"].head.files

    files("micro_1k_224-onnx")["micro_1k_224.onnx"] = (_flip(files("micro_1k_224-onnx")["micro_1k_224.onnx"][0]),
                                                       True)
    weights = files("micro_1k_224")["model.weights.h5"]
    files("micro_1k_224")["model.weights.h5"] = (_flip(weights[0]), weights[1])  # the Keras layout's file
    del files("micro_1k_224_fe-litert")["micro_1k_224_fe.int8.tflite"]
    card = files("micro_1k_224-onnx")["README.md"]
    files("micro_1k_224-onnx")["README.md"] = (card[0] + b"\nSee [gone](https://huggingface.co/testpub/gone).\n",
                                               card[1])
    found = _audit(HF, "--public-key", str(pub), "--checkout", str(tmp_path))
    assert found.exit_code == 1, found.output
    rows = _problems(found.output)
    onnx = "micro_1k_224-onnx/micro_1k_224.onnx"
    assert (onnx, "signature check failed: these bytes are not the ones signed") in rows
    assert any(f == onnx and w.startswith("sha256 ") for f, w in rows)
    assert ("micro_1k_224/model.sig", "signature check failed: these bytes are not the ones signed") in rows
    assert ("micro_1k_224-onnx/README.md", "link https://huggingface.co/testpub/gone: not published") in rows
    assert ("micro_1k_224_fe-litert/micro_1k_224_fe.int8.tflite", "missing, but its .sig is published") in rows


def test_audit_of_kaggle_clean_then_tampered(micro_manifest, micro_dist, tmp_path, keys, kaggle):
    """kaggle://OWNER/MODEL as published, read through the real kagglehub and Kaggle SDK from the stand-in."""
    from tests.conftest import copy_built
    from tests.test_hubs import _docs_for

    (key, pub), _ = keys
    dest = "kaggle://testpub/micro"
    dist = copy_built(micro_dist, tmp_path / "dist")
    _docs_for(micro_manifest, dist, dest)
    publish(micro_manifest, dist, parse_destination(dest), signer=Signer(key=key))
    clean = _audit(dest, "--public-key", str(pub), "--checkout", str(tmp_path))
    assert clean.exit_code == 0, clean.output
    # 2 kinds x (.keras, 2 LiteRT files, ONNX) against hubpub.json; those and the SavedModels' saved_model.sig
    assert "8 artifact files against their .sha256, 10 signatures checked" in clean.output

    def version(framework, slug):
        return kaggle.models[("testpub", "micro")].instances[(framework, slug)].versions[-1].files

    onnx_files = version("onnx", "micro-1k-224")
    onnx_files["micro_1k_224.onnx"] = _flip(onnx_files["micro_1k_224.onnx"])
    saved = version("tensorFlow2", "micro-1k-224-fe")
    name = next(n for n in saved if n.startswith("variables/variables.data"))
    saved[name] = _flip(saved[name])
    found = _audit(dest, "--public-key", str(pub), "--checkout", str(tmp_path))
    assert found.exit_code == 1, found.output
    rows = _problems(found.output)
    assert ("onnx/micro-1k-224/micro_1k_224.onnx", "signature check failed: these bytes are not the ones signed") \
        in rows
    assert ("tensorFlow2/micro-1k-224-fe/saved_model.sig",
            "signature check failed: these bytes are not the ones signed") in rows


def _certificate_chain(folder: Path) -> tuple[Path, Path, Path]:
    """A CA and a code-signing certificate it issued, for an EC P-256 key: (key, certificate, CA)."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hubpub test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(1).not_valid_before(now - datetime.timedelta(days=1))
          .not_valid_after(now + datetime.timedelta(days=30))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                       crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    leaf = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hubpub test publisher")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(2)
            .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                         crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = folder / "publisher.pem", folder / "publisher.crt", folder / "ca.crt"
    paths[0].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    paths[1].write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    return paths


def test_signing_with_a_certificate_chain_verifies_with_the_model_signing_tool(micro_dist, tmp_path):
    """`publish --sign-key KEY --sign-cert CERT --sign-cert CA`: the bundle carries the certificate, and
    OpenSSF's tool checks it against the CA, in a process without hubpub."""
    key, certificate, ca = _certificate_chain(tmp_path)
    tarball = tmp_path / "micro_1k_224.tar.gz"
    shutil.copy(micro_dist / "tars/micro_1k_224.tar.gz", tarball)
    [sig] = Signer(key=key, certificates=(certificate, ca)).sign([tarball])
    import json

    chain = json.loads(sig.read_text())["verificationMaterial"]["x509CertificateChain"]["certificates"]
    assert len(chain) == 2  # the signing certificate, then the CA
    tool = [str(Path(sys.executable).with_name("model_signing")), "verify", "certificate", str(tarball),
            "--signature", str(sig), "--certificate_chain", str(ca)]
    check = subprocess.run(tool, capture_output=True, text=True, cwd=tmp_path)
    assert check.returncode == 0, check.stdout + check.stderr
    tarball.write_bytes(_flip(tarball.read_bytes()))
    assert subprocess.run(tool, capture_output=True, text=True, cwd=tmp_path).returncode != 0
