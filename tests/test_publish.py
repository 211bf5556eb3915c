"""Publishing with the real google-cloud-storage client against fake-gcs-server, and to a directory."""

import json
import shutil

import pytest
from click.testing import CliRunner

from hubpub import tolerances
from hubpub.cli import cli
from hubpub.destinations import parse as parse_destination
from hubpub.destinations.objects import crc32c_of
from hubpub.docs import render_docs
from hubpub.errors import PublishError
from hubpub.manifest import parse_manifest
from hubpub.publish import publish, verify_published
from tests.conftest import copy_built

_counter = iter(range(10_000))


def _setup(micro_manifest_path, micro_dist, tmp_path, *, bucket: str | None, base: str | None = None):
    """A dist/ copy whose manifest and docs point at `bucket` (or at a local destination)."""
    dist = tmp_path / "dist"
    copy_built(micro_dist, dist, saved_models=False)
    text = micro_manifest_path.read_text()
    if bucket:
        text = text.replace("http://127.0.0.1:9/bucket/micro", base or f"https://storage.googleapis.com/{bucket}/micro")
    manifest = parse_manifest(text, micro_manifest_path)
    render_docs(manifest, dist=dist, out=dist / "docs")
    return manifest, dist


@pytest.fixture
def bucket(gcs_emulator, monkeypatch):
    from google.cloud import storage

    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_emulator.url)
    name = f"hubpub-test-{next(_counter)}"
    storage.Client().create_bucket(name)
    return name


def _objects(name):
    from google.cloud import storage

    return {b.name: (b.size, b.crc32c) for b in storage.Client().list_blobs(name)}


def test_fresh_publish_then_noop_then_conflict_then_force(micro_manifest_path, micro_dist, tmp_path, bucket,
                                                          hub_cache):
    manifest, dist = _setup(micro_manifest_path, micro_dist, tmp_path, bucket=bucket)
    dest = parse_destination(f"gs://{bucket}/micro")
    result = publish(manifest, dist, dest, jobs=3)
    statuses = {o.upload.relative: o.status for o in result.outcomes}
    assert set(statuses.values()) == {"uploaded"}
    assert {"micro_1k_224/1.tar.gz", "micro_1k_224/1.tar.gz.sha256", "micro_1k_224_fe/1.tar.gz",
            "docs/assets/docs/testpub/testpub.md"} <= set(statuses)
    stored = _objects(bucket)
    tar = dist / "tars" / "micro_1k_224.tar.gz"
    assert stored["micro/micro_1k_224/1.tar.gz"] == (tar.stat().st_size, crc32c_of(tar))
    # what the bucket serves each object as: a versioned artifact forever, a doc for five minutes
    from google.cloud import storage

    blobs = {b.name: b for b in storage.Client().list_blobs(bucket)}
    assert (blobs["micro/micro_1k_224/1.tar.gz"].content_type, blobs["micro/micro_1k_224/1.tar.gz"].cache_control) \
        == ("application/gzip", "public, max-age=31536000, immutable")
    doc_blob = blobs["micro/docs/assets/docs/testpub/testpub.md"]
    assert (doc_blob.content_type, doc_blob.cache_control) == ("text/markdown; charset=utf-8", "public, max-age=300")

    # downstream: hub.KerasLayer on the public URL, mapped to the emulator's public host
    verified = verify_published(manifest, dist, dest, result)
    assert verified.max_abs <= tolerances.VERIFY

    again = publish(manifest, dist, dest)
    assert {o.status for o in again.outcomes} == {"already published"}
    assert _objects(bucket) == stored

    # A doc describes a version and is not part of it: a changed doc is updated in place ...
    doc = dist / "docs/assets/docs/testpub/testpub.md"
    doc.write_text(doc.read_text() + "\nOne more line.\n")
    updated = publish(manifest, dist, dest)
    assert [(o.upload.relative, o.status) for o in updated.outcomes if o.status != "already published"] == [
        ("docs/assets/docs/testpub/testpub.md", "updated")]
    assert _objects(bucket)["micro/docs/assets/docs/testpub/testpub.md"] == (doc.stat().st_size, crc32c_of(doc))
    stored = _objects(bucket)

    # ... while an artifact file is immutable: nothing at all is uploaded, not even a changed doc
    sha = dist / "tars/micro_1k_224.tar.gz.sha256"
    sha.write_text(_other_digest(sha.read_text()))
    doc.write_text(doc.read_text() + "\nAnd another.\n")
    with pytest.raises(PublishError, match=r"immutable; nothing was uploaded.*\n.*micro/micro_1k_224/1\.tar\.gz"
                                           r"\.sha256 exists with different content"):
        publish(manifest, dist, dest)
    assert _objects(bucket) == stored

    forced = publish(manifest, dist, dest, force=True)
    assert sorted(o.status for o in forced.outcomes if o.status != "already published") == ["overwritten", "updated"]
    published_sha = dist / "sha256-upload/micro_1k_224/1.tar.gz.sha256"  # the same digest, naming 1.tar.gz
    assert published_sha.read_text().split() == [sha.read_text().split()[0], "1.tar.gz"]
    assert _objects(bucket)["micro/micro_1k_224/1.tar.gz.sha256"] == (published_sha.stat().st_size,
                                                                       crc32c_of(published_sha))


def _other_digest(sidecar_text: str) -> str:
    """A `.sha256` line whose digest is another one (its first hex digit changed)."""
    return ("0" if sidecar_text[0] != "0" else "1") + sidecar_text[1:]


def test_dry_run_touches_nothing(micro_manifest_path, micro_dist, tmp_path, bucket):
    manifest, dist = _setup(micro_manifest_path, micro_dist, tmp_path, bucket=bucket)
    result = publish(manifest, dist, parse_destination(f"gs://{bucket}/micro"), dry_run=True)
    assert {o.status for o in result.outcomes} == {"would upload"}
    assert _objects(bucket) == {}
    local = tmp_path / "nowhere"
    result = publish(manifest, dist, parse_destination(str(local)), dry_run=True,
                     public_url=f"https://storage.googleapis.com/{bucket}/micro")
    assert not local.exists()


def test_missing_bucket(micro_manifest_path, micro_dist, tmp_path, gcs_emulator, monkeypatch):
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_emulator.url)
    manifest, dist = _setup(micro_manifest_path, micro_dist, tmp_path, bucket="no-such-bucket")
    with pytest.raises(PublishError, match=r"^gs://no-such-bucket: bucket does not exist$"):
        publish(manifest, dist, parse_destination("gs://no-such-bucket/micro"))


def test_missing_credentials_is_a_clear_cli_error(micro_manifest_path, micro_dist, tmp_path, monkeypatch):
    for var in ("STORAGE_EMULATOR_HOST", "GOOGLE_APPLICATION_CREDENTIALS", "GOOGLE_CLOUD_PROJECT"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "gcloud"))
    manifest, dist = _setup(micro_manifest_path, micro_dist, tmp_path, bucket="some-bucket")
    result = CliRunner().invoke(cli, ["publish", "--manifest", str(micro_manifest_path), "--dist", str(dist),
                                      "--dest", "gs://some-bucket/micro"])
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert result.output.startswith("error: no Google Cloud credentials found")


def test_random_weights_refused_for_gcs(micro_manifest_path, micro_dist, tmp_path, bucket):
    manifest, dist = _setup(micro_manifest_path, micro_dist, tmp_path, bucket=bucket)
    report = dist / "reports" / "micro_1k_224.json"
    report.write_text(json.dumps({**json.loads(report.read_text()), "random_weights": True}))
    with pytest.raises(PublishError, match=r"refusing to publish random-weight \(demo\) artifacts.*micro_1k_224"):
        publish(manifest, dist, parse_destination(f"gs://{bucket}/micro"))
    assert _objects(bucket) == {}


def test_docs_asset_path_must_match_an_object(micro_manifest_path, micro_dist, tmp_path, bucket):
    manifest, dist = _setup(micro_manifest_path, micro_dist, tmp_path, bucket=bucket,
                            base="https://cdn.example.com/models")
    # docs rendered for another public base than the manifest's
    other = parse_manifest(micro_manifest_path.read_text().replace(
        "http://127.0.0.1:9/bucket/micro", f"https://storage.googleapis.com/{bucket}/micro"), micro_manifest_path)
    with pytest.raises(PublishError, match=r"micro_1k_224/1\.md: asset-path https://cdn\.example\.com/models/"
                                           r"micro_1k_224/1\.tar\.gz is not below https://storage\.googleapis\.com/"
                                           rf"{bucket}/micro, .*nothing was uploaded\. Render the docs for this "
                                           rf"destination: hubpub docs --dest gs://{bucket}/micro$"):
        publish(other, dist, parse_destination(f"gs://{bucket}/micro"))
    assert _objects(bucket) == {}


def test_local_destination_same_semantics(micro_manifest_path, micro_dist, tmp_path, hub_cache):
    manifest, dist = _setup(micro_manifest_path, micro_dist, tmp_path, bucket=None)
    dest = parse_destination(str(tmp_path / "published"))
    with pytest.raises(PublishError, match=r"a local destination has no public URL of its own; pass --public-url"):
        publish(manifest, dist, dest)
    assert not (tmp_path / "published").exists()
    base = manifest.publish.public_url_base  # the docs were rendered for it
    result = publish(manifest, dist, dest, public_url=base)
    assert {o.status for o in result.outcomes} == {"uploaded"}
    published = (tmp_path / "published/micro_1k_224/1.tar.gz").read_bytes()
    assert published == (dist / "tars/micro_1k_224.tar.gz").read_bytes()
    assert not list((tmp_path / "published").rglob(".*tmp"))
    # over loopback HTTP, as from a bucket
    assert verify_published(manifest, dist, dest, result).max_abs <= tolerances.VERIFY
    assert {o.status for o in publish(manifest, dist, dest, public_url=base).outcomes} == {"already published"}
    (tmp_path / "published/micro_1k_224/1.tar.gz.sha256").write_text("tampered\n")
    with pytest.raises(PublishError, match=r"micro_1k_224/1\.tar\.gz\.sha256 exists with different content"):
        publish(manifest, dist, dest, public_url=base)
    assert "overwritten" in {o.status for o in publish(manifest, dist, dest, public_url=base, force=True).outcomes}


def test_cli_publish_table_and_verify(micro_manifest_path, micro_dist, tmp_path, bucket, hub_cache):
    manifest, dist = _setup(micro_manifest_path, micro_dist, tmp_path, bucket=bucket)
    (tmp_path / "m.yaml").write_text(micro_manifest_path.read_text().replace(
        "http://127.0.0.1:9/bucket/micro", f"https://storage.googleapis.com/{bucket}/micro"))
    result = CliRunner().invoke(cli, ["publish", "--manifest", str(tmp_path / "m.yaml"), "--dist", str(dist),
                                      "--dest", f"gs://{bucket}/micro"])
    assert result.exit_code == 0, result.output
    assert "micro/micro_1k_224/1.tar.gz" in result.output and "uploaded" in result.output
    assert f"https://storage.googleapis.com/{bucket}/micro/micro_1k_224/1.tar.gz" in result.output
    assert "verified:" in result.output


def test_faults_survived_with_every_object_intact(micro_manifest_path, micro_dist, tmp_path, monkeypatch, hub_cache):
    """Resets, 503s and a stall mid-upload, from a real proxy between the client and the emulator."""
    import numpy as np
    from google.cloud import storage

    from hubpub.package import pack
    from tests.gcs import Emulator, FaultProxy

    proxy = FaultProxy(stall_seconds=5)
    emulator = Emulator(tmp_path / "emu.log", external_url=proxy.url)  # resumable session URLs via the proxy
    proxy.upstream_port = emulator.port
    try:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", proxy.url)
        storage.Client().create_bucket("faulty")
        manifest, dist = _setup(micro_manifest_path, micro_dist, tmp_path, bucket="faulty")
        # A tarball above 8 MiB goes up as a resumable upload, in chunks.
        sm = tmp_path / "sm"
        shutil.copytree(micro_dist / "saved_models" / "micro_1k_224_fe", sm)
        (sm / "assets").mkdir(exist_ok=True)
        (sm / "assets" / "padding.bin").write_bytes(np.random.default_rng(0).bytes(20 * 2**20))
        packed = pack(sm, dist / "tars" / "micro_1k_224_fe.tar.gz")
        report_path = dist / "reports" / "micro_1k_224_fe.json"
        report = json.loads(report_path.read_text())
        report["tarball"].update(sha256=packed.sha256, size=packed.size)
        report_path.write_text(json.dumps(report))
        render_docs(manifest, dist=dist, out=dist / "docs")

        proxy.faults = [
            ["POST", "uploadType=resumable", "503", 1],
            ["PUT", "upload_id=", "reset", 1],  # the first chunk
            ["PUT", "upload_id=", "stall", 1, 1],  # the second chunk, midway
            ["POST", "uploadType=multipart", "503", 2],
            ["POST", "uploadType=multipart", "reset", 1],
            ["GET", "/o/micro", "503", 1],
        ]
        dest = parse_destination("gs://faulty/micro")
        result = publish(manifest, dist, dest, jobs=2, timeout=2, deadline=120, chunk_bytes=8 * 2**20)
        assert {o.status for o in result.outcomes} == {"uploaded"}
        # After the stall the upload resumed at the second chunk; it did not start over.
        ranges = [r.split("/")[0] for m, p, r in proxy.seen if m == "PUT" and r and not r.startswith("bytes */")]
        assert ranges[:4] == ["bytes 0-8388607", "bytes 0-8388607", "bytes 8388608-16777215",
                              "bytes 8388608-16777215"], ranges
        assert len(ranges) == 5 and ranges[4].startswith("bytes 16777216-"), ranges
        assert sorted(f[2] for f in proxy.fired) == ["503", "503", "503", "503", "reset", "reset", "stall"]
        stored = _objects("faulty")
        for o in result.outcomes:
            assert stored[f"micro/{o.upload.relative}"] == (o.upload.source.stat().st_size, crc32c_of(o.upload.source))
        blob = storage.Client().bucket("faulty").blob("micro/micro_1k_224_fe/1.tar.gz")
        assert blob.download_as_bytes() == (dist / "tars" / "micro_1k_224_fe.tar.gz").read_bytes()
    finally:
        emulator.stop()
        proxy.close()


def test_docs_only_publish_finds_tarballs_already_published(micro_manifest_path, micro_dist, tmp_path, bucket):
    """The sharded workflow's last job: docs rendered from the shards' reports, tarballs already in the bucket."""
    manifest, dist = _setup(micro_manifest_path, micro_dist, tmp_path, bucket=bucket)
    dest = parse_destination(f"gs://{bucket}/micro")
    shutil.rmtree(dist / "docs")
    with pytest.raises(PublishError, match="no rendered docs"):
        publish(manifest, dist, dest)
    render_docs(manifest, dist=dist, out=dist / "docs")
    shutil.rmtree(dist / "tars")
    with pytest.raises(PublishError, match=r"asset-path .*micro_1k_224/1\.tar\.gz matches no tarball being "
                                           r"published or already published"):
        publish(manifest, dist, dest)
    assert _objects(bucket) == {}
    _, full = _setup(micro_manifest_path, micro_dist, tmp_path / "shard", bucket=bucket)
    publish(manifest, full, dest)  # a shard publishes the tarballs
    result = publish(manifest, dist, dest)
    assert {o.upload.relative.split("/")[0] for o in result.outcomes} == {"docs"}
    assert {o.status for o in result.outcomes} == {"already published"}


def test_publish_to_another_bucket_needs_docs_for_it(micro_manifest_path, micro_dist, tmp_path, bucket, hub_cache):
    """Docs rendered for the manifest's destination are refused for another bucket before any upload;
    rendered for it, everything links there and verify loads from there."""
    dist = tmp_path / "dist"
    copy_built(micro_dist, dist, saved_models=False)
    common = ["--manifest", str(micro_manifest_path), "--dist", str(dist)]
    runner = CliRunner()
    assert runner.invoke(cli, ["docs", *common]).exit_code == 0
    result = runner.invoke(cli, ["publish", *common, "--dest", f"gs://{bucket}/models"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    [error] = result.stderr.splitlines()
    assert error == (f"error: {dist}/docs/assets/docs/testpub/models/micro_1k_224/1.md: asset-path "
                     "http://127.0.0.1:9/bucket/micro/micro_1k_224/1.tar.gz is not below "
                     f"https://storage.googleapis.com/{bucket}/models, where gs://{bucket}/models is read from; "
                     f"nothing was uploaded. Render the docs for this destination: hubpub docs --dest "
                     f"gs://{bucket}/models")
    assert _objects(bucket) == {}

    result = runner.invoke(cli, ["docs", *common, "--dest", f"gs://{bucket}/models"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(cli, ["publish", *common, "--dest", f"gs://{bucket}/models"])
    assert result.exit_code == 0, result.output
    assert f"verified: https://storage.googleapis.com/{bucket}/models/micro_1k_224/1.tar.gz loads" in result.output
    collection = (dist / "docs/assets/docs/testpub/collections/micro/1.md").read_text()
    assert f"[tar.gz](https://storage.googleapis.com/{bucket}/models/micro_1k_224_fe/1.tar.gz)" in collection
    assert (f"(https://storage.googleapis.com/{bucket}/models/docs/assets/docs/testpub/models/micro_1k_224/1.md)"
            in collection)
    assert "models/docs/assets/docs/testpub/models/micro_1k_224/1.md" in "".join(_objects(bucket))


# --------------------------------------------------------------------------- two publishers at once


def test_the_emulator_enforces_upload_preconditions_and_the_proxy_delete_ones(tmp_path, monkeypatch):
    """What the race tests below rest on, shown: fake-gcs-server refuses an upload with ifGenerationMatch=0
    onto an existing object, but ignores the condition on DELETE (Cloud Storage does not); the proxy
    enforces that one, so a delete of another writer's generation is refused as it would be there."""
    from google.api_core import exceptions as gexc
    from google.cloud import storage

    from hubpub.destinations.gcs import GcsStore
    from tests.gcs import Emulator, FaultProxy

    proxy = FaultProxy(preconditions=True)
    emulator = Emulator(tmp_path / "emu.log", external_url=proxy.url)
    proxy.upstream_port = emulator.port
    try:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", emulator.url)
        direct = storage.Client().create_bucket("pre")
        direct.blob("a").upload_from_string(b"one", if_generation_match=0)
        with pytest.raises(gexc.PreconditionFailed):
            direct.blob("a").upload_from_string(b"two", if_generation_match=0)
        stale = direct.get_blob("a").generation + 1
        direct.blob("a").delete(if_generation_match=stale)  # not refused by the emulator ...
        assert direct.get_blob("a") is None
        direct.blob("b").upload_from_string(b"one", if_generation_match=0)
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", proxy.url)
        store = GcsStore(parse_destination("gs://pre"))
        gen = store.stat("b").generation
        store.delete("b", gen + 1)  # ... refused through the proxy: another writer's generation stays
        assert store.stat("b") is not None
        store.delete("b", gen)
        assert store.stat("b") is None
    finally:
        emulator.stop()
        proxy.close()


def _race(publishes) -> list:
    """Run the publishes at once, in threads; their results or exceptions, in order."""
    import threading

    out: list = [None] * len(publishes)

    def run(i, fn):
        try:
            out[i] = fn()
        except Exception as e:  # carried back to the test
            out[i] = e

    threads = [threading.Thread(target=run, args=(i, fn)) for i, fn in enumerate(publishes)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    return out


def test_two_publishes_racing_on_a_bucket(micro_manifest_path, micro_dist, tmp_path, monkeypatch):
    """Both check that every object is absent, then upload: the proxy holds each upload until its twin
    arrives, so they really race. Same bytes: each object is uploaded once and the other publish finds
    it published. Other bytes: the loser stops with an error and overwrites nothing."""
    from google.cloud import storage

    from tests.gcs import Emulator, FaultProxy

    proxy = FaultProxy()
    emulator = Emulator(tmp_path / "emu.log", external_url=proxy.url)
    proxy.upstream_port = emulator.port
    try:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", proxy.url)
        storage.Client().create_bucket("race")
        manifest, dist = _setup(micro_manifest_path, micro_dist, tmp_path, bucket="race")
        dest = parse_destination("gs://race/micro")
        proxy.faults = [["POST", "uploadType=", "pair", 10**6]]
        a, b = _race([lambda: publish(manifest, dist, dest, jobs=1), lambda: publish(manifest, dist, dest, jobs=1)])
        assert not isinstance(a, Exception) and not isinstance(b, Exception), (a, b)
        statuses = {}
        for result in (a, b):
            for o in result.outcomes:
                statuses.setdefault(o.upload.relative, []).append(o.status)
        assert all(sorted(s) == ["already published", "uploaded"] for s in statuses.values()), statuses
        raced = [o for o in a.outcomes + b.outcomes if o.detail == "by a publish running beside this one"]
        assert len(raced) >= len(statuses) // 2, "the uploads did not overlap: nothing was tested"
        stored = _objects("race")
        assert stored["micro/micro_1k_224/1.tar.gz"] == (
            (dist / "tars/micro_1k_224.tar.gz").stat().st_size, crc32c_of(dist / "tars/micro_1k_224.tar.gz"))

        # other bytes under a name not yet published: one wins, the other is refused and overwrites nothing
        other = tmp_path / "other"
        shutil.copytree(dist, other)
        for d in (dist, other):
            (d / "docs/assets/docs/testpub/testpub.md").write_text("# Publisher testpub\nChanged.\n")
        sha = other / "tars/micro_1k_224_fe.tar.gz.sha256"
        sha.write_text(_other_digest(sha.read_text()))
        m2 = parse_manifest(micro_manifest_path.read_text().replace(
            "http://127.0.0.1:9/bucket/micro", "https://storage.googleapis.com/race/v2"), micro_manifest_path)
        for d in (dist, other):
            render_docs(m2, dist=d, out=d / "docs")
        dest2 = parse_destination("gs://race/v2")
        proxy.pair_seconds = 1.0  # the loser stops at its first refusal: the winner's later uploads have no twin
        a, b = _race([lambda: publish(m2, dist, dest2, jobs=1), lambda: publish(m2, other, dest2, jobs=1)])
        errors = [r for r in (a, b) if isinstance(r, Exception)]
        assert len(errors) == 1, (a, b)
        assert "micro_1k_224_fe/1.tar.gz.sha256: published meanwhile by another publisher, with other bytes; " \
               "not overwriting" in str(errors[0])
        winner = other if errors[0] is a else dist
        stored = _objects("race")
        assert stored["v2/micro_1k_224_fe/1.tar.gz.sha256"] == (
            (winner / "sha256-upload/micro_1k_224_fe/1.tar.gz.sha256").stat().st_size,
            crc32c_of(winner / "sha256-upload/micro_1k_224_fe/1.tar.gz.sha256"))
    finally:
        emulator.stop()
        proxy.close()


def test_two_publishes_racing_on_a_directory(micro_manifest_path, micro_dist, tmp_path):
    """A new file is linked into place, which fails if the name exists: never replaced behind a check."""
    from hubpub.destinations import Upload
    from hubpub.destinations.directory import LocalStore
    from hubpub.destinations.objects import Exists

    manifest, dist = _setup(micro_manifest_path, micro_dist, tmp_path, bucket=None)
    dest = parse_destination(str(tmp_path / "published"))
    a, b = _race([lambda: publish(manifest, dist, dest, public_url="http://127.0.0.1:9/bucket/micro", jobs=2),
                  lambda: publish(manifest, dist, dest, public_url="http://127.0.0.1:9/bucket/micro", jobs=2)])
    assert not isinstance(a, Exception) and not isinstance(b, Exception), (a, b)
    uploads = {}
    for result in (a, b):
        for o in result.outcomes:
            uploads[o.upload.relative] = uploads.get(o.upload.relative, 0) + (o.status == "uploaded")
    assert set(uploads.values()) == {1}, uploads  # every file written by exactly one of them
    for o in a.outcomes:
        assert (dest.path / o.upload.relative).read_bytes() == o.upload.source.read_bytes()
    # the primitive itself: a "new" file onto a name that exists is refused, the file untouched
    store, target = LocalStore(dest.path), dest.path / "micro_1k_224/1.tar.gz"
    before = target.read_bytes()
    other = tmp_path / "other.bin"
    other.write_bytes(b"other bytes")
    with pytest.raises(Exists):
        store.upload(Upload(other, "micro_1k_224/1.tar.gz", 11, crc32c_of(other), ""), "micro_1k_224/1.tar.gz",
                     replacing=None, bar=type("Bar", (), {"update": lambda self, n: None})())
    assert target.read_bytes() == before and not list(target.parent.glob(".*tmp"))
