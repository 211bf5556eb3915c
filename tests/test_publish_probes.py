"""Publishing under bad input and faults: the `.sha256` a downloader checks, stale signatures left in a
dist, docs that claim signatures a publish cannot make, a full disk (a real tmpfs), a bad --public-url."""

import contextlib
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from hubpub.cli import cli
from hubpub.destinations import parse as parse_destination
from hubpub.errors import PublishError
from hubpub.manifest import parse_manifest
from hubpub.publish import publish
from hubpub.signing import Signer
from tests.test_hubs import hf as hf  # the stand-in
from tests.test_publish import _setup
from tests.test_publish import bucket as bucket  # the fixture
from tests.test_signing import BASE, _key_pair

ARTIFACTS = (".tar.gz", ".keras", ".tflite", ".onnx")


def _sha256sum_checks(folder: Path) -> list[Path]:
    """Run the real `sha256sum -c` on every `.sha256` below `folder`, in the file's own folder, as a
    downloader does; the sidecars checked."""
    sidecars = sorted(folder.rglob("*.sha256"))
    for sidecar in sidecars:
        r = subprocess.run(["sha256sum", "-c", sidecar.name], cwd=sidecar.parent, capture_output=True, text=True)
        assert r.returncode == 0, f"{sidecar}: {r.stdout}{r.stderr}"
    return sidecars


def test_the_demo_publish_checks_with_sha256sum(demo_run):
    assert demo_run.returncode == 0, demo_run.stderr
    sidecars = _sha256sum_checks(demo_run.dist / "published")
    assert len(sidecars) >= 10  # each kind: tarball, .keras, ONNX, four LiteRT files
    assert (demo_run.dist / "published/micro_1k_224/1.tar.gz.sha256").read_text().split()[1] == "1.tar.gz"
    _sha256sum_checks(demo_run.dist / "tars")  # the dist's own still name the dist's files


def test_a_bucket_sha256_names_the_published_file(micro_manifest_path, micro_dist, tmp_path, bucket):
    from google.cloud import storage

    from tests.test_publish import _objects

    manifest, dist = _setup(micro_manifest_path, micro_dist, tmp_path, bucket=bucket)
    publish(manifest, dist, parse_destination(f"gs://{bucket}/micro"))
    got = tmp_path / "got"
    for name in _objects(bucket):
        if name.endswith(ARTIFACTS + tuple(s + ".sha256" for s in ARTIFACTS)):
            (got / name).parent.mkdir(parents=True, exist_ok=True)
            storage.Client().bucket(bucket).blob(name).download_to_filename(str(got / name))
    assert len(_sha256sum_checks(got)) >= 8


def test_an_unsigned_publish_leaves_stale_signatures_behind(micro_manifest_path, micro_dist, tmp_path):
    (key, _), _ = _key_pair(tmp_path, "k"), None
    manifest, dist = _setup(micro_manifest_path, micro_dist, tmp_path, bucket=None)
    files = [p for p in dist.rglob("*") if p.name.endswith(ARTIFACTS)]
    Signer(key=key).sign(files)  # an earlier signed publish's .sig files, fresh and beside each file
    assert len(list(dist.rglob("*.sig"))) == len(files) >= 8
    out = tmp_path / "published"
    result = publish(manifest, dist, parse_destination(str(out)), public_url=BASE)
    assert not [o.upload.relative for o in result.outcomes if o.upload.relative.endswith(".sig")]
    assert not list(out.rglob("*.sig"))
    dry = publish(manifest, dist, parse_destination(str(out)), public_url=BASE, dry_run=True, signer=Signer(key=key))
    assert any(o.upload.relative.endswith(".sig") for o in dry.outcomes)  # a signed one does take them


def _signing_manifest(micro_manifest_path, tmp_path, section: str):
    path = tmp_path / "collection.yaml"
    path.write_text(micro_manifest_path.read_text() + section)
    return parse_manifest(path.read_text(), path)


def test_docs_that_claim_signatures_publish_only_signed(micro_manifest_path, micro_dist, tmp_path):
    from hubpub.docs import render_docs
    from tests.conftest import copy_built

    (key, pub), (other, _) = _key_pair(tmp_path, "publisher"), _key_pair(tmp_path, "other")
    manifest = _signing_manifest(micro_manifest_path, tmp_path, f"signing: {{public_key: {pub.name}}}\n")
    dist = copy_built(micro_dist, tmp_path / "dist", saved_models=False)
    render_docs(manifest, dist=dist, out=dist / "docs")
    doc = next((dist / "docs").rglob("micro_1k_224/1.md"))
    assert "Signed: each file of this model has a signature beside it" in doc.read_text()
    out = tmp_path / "published"
    with pytest.raises(PublishError) as error:
        publish(manifest, dist, parse_destination(str(out)), public_url=BASE)
    assert "says each file is signed, but this publish signs nothing (nothing was uploaded)" in str(error.value)
    with pytest.raises(PublishError, match=r"names the key of signing\.public_key .* is another key"):
        publish(manifest, dist, parse_destination(str(out)), public_url=BASE, signer=Signer(key=other))
    assert not out.exists()
    result = publish(manifest, dist, parse_destination(str(out)), public_url=BASE, signer=Signer(key=key))
    signed = {o.upload.relative for o in result.outcomes}
    assert all(f + ".sig" in signed for f in signed if f.endswith(ARTIFACTS))  # the claim holds


def test_signing_required_without_a_key_is_one_line(micro_manifest_path, micro_dist, tmp_path):
    manifest, dist = _setup(micro_manifest_path, micro_dist, tmp_path, bucket=None)
    (tmp_path / "m.yaml").write_text(micro_manifest_path.read_text() + "signing: {required: true}\n")
    r = CliRunner().invoke(cli, ["publish", "--manifest", str(tmp_path / "m.yaml"), "--dist", str(dist),
                                 "--dest", str(tmp_path / "p"), "--public-url", BASE])
    assert r.exit_code == 1 and r.output.count("\n") == 1, r.output
    assert "signing.required is set, and no signer was given" in r.output and not (tmp_path / "p").exists()


@pytest.mark.parametrize("url", ["ftp://example.com/x", "not a url", "http://host/base?query", "https://"])
def test_an_invalid_public_url_is_a_usage_error(url, tmp_path):
    for command in (["publish", "--dest", str(tmp_path / "p")], ["docs"], ["audit", str(tmp_path)]):
        r = CliRunner().invoke(cli, [*command, "--public-url", url])
        assert r.exit_code == 2, (command, r.output)
        assert r.output.startswith("error: Invalid value for '--public-url': ") and r.output.count("\n") == 1


# --------------------------------------------------------------------------- a full disk


@contextlib.contextmanager
def _tmpfs(folder: Path, options: str):
    """A real small file system: tmpfs, mounted for the test and unmounted after it."""
    folder.mkdir(parents=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True,
                             text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root, or a container that allows mount): "
                    f"{mounted.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def _publish_cli(micro_manifest_path, dist: Path, dest: Path):
    return CliRunner().invoke(cli, ["publish", "--manifest", str(micro_manifest_path), "--dist", str(dist),
                                    "--dest", str(dest), "--public-url", BASE, "--no-verify", "--jobs", "2"])


def _left(dest: Path) -> list[Path]:
    return sorted(p for p in dest.rglob("*") if p.is_file())


def test_a_publish_too_big_for_the_disk_writes_nothing(micro_manifest_path, micro_dist, tmp_path):
    manifest, dist = _setup(micro_manifest_path, micro_dist, tmp_path, bucket=None)
    with _tmpfs(tmp_path / "small", "size=1m") as dest:
        r = _publish_cli(micro_manifest_path, dist, dest)
        assert r.exit_code == 1, r.output
        [line] = r.output.strip().splitlines()
        assert line.startswith(f"error: {dest}: no room for this publish: it writes ") and "free (nothing was " \
            "uploaded)" in line
        assert _left(dest) == []


def test_a_disk_that_fills_midway_leaves_whole_artifacts_and_no_docs(micro_manifest_path, micro_dist, tmp_path):
    """Room in bytes, but for a few files only (tmpfs' inode limit): a disk that fills while publishing."""
    manifest, dist = _setup(micro_manifest_path, micro_dist, tmp_path, bucket=None)
    with _tmpfs(tmp_path / "few-files", "size=64m,nr_inodes=10") as dest:
        r = _publish_cli(micro_manifest_path, dist, dest)
        assert r.exit_code == 1, r.output
        [line] = [e for e in r.output.splitlines() if e.startswith("error:")]  # after the files that did land
        assert line.startswith(f"error: {dest}: ") and " upload(s) failed: " in line
        assert f"cannot write: no space left on the file system of {dest} (" in line
        assert "uploaded and stay published; the 8 docs and pages were not uploaded (rerun to upload the rest)" \
            in line
        left = _left(dest)
        assert left and not (dest / "docs").exists() and not (dest / "site").exists()
        assert not [d for d in dest.rglob("*") if d.is_dir() and not any(d.iterdir())]  # no empty folder
        assert not [p for p in left if p.name.startswith(".")]  # no temp file
        sources = {p.name: p for p in dist.rglob("*") if p.is_file()}
        for path in left:  # each file that landed is whole: its bytes check against its build
            if path.name.endswith(ARTIFACTS):
                digest = subprocess.run(["sha256sum", path.name], cwd=path.parent, capture_output=True,
                                        text=True).stdout.split()[0]
                assert digest in {s.read_text().split()[0] for s in sources.values() if s.name.endswith(".sha256")}
    shutil.rmtree(tmp_path / "few-files", ignore_errors=True)


def test_an_unsigned_publish_to_a_hub_leaves_stale_signatures_behind(micro_manifest, micro_dist, tmp_path, hf):
    """The HF stand-in, with the real client (Kaggle's plan gates its .sig files on the same PublishJob.signed)."""
    from tests.conftest import copy_built
    from tests.test_hubs import HF, _docs_for

    key, _ = _key_pair(tmp_path, "k")
    dist = copy_built(micro_dist, tmp_path / "dist", saved_models=False)
    Signer(key=key).sign([p for p in dist.rglob("*") if p.name.endswith(ARTIFACTS)])
    _docs_for(micro_manifest, dist, HF)
    publish(micro_manifest, dist, parse_destination(HF))
    files = [f for repo in hf.repos for f in hf.files(repo)]
    assert len(files) > 10 and not [f for f in files if f.endswith(".sig")]
