"""Checkpoint download against a real HTTP server on 127.0.0.1, with injected faults."""

import hashlib

import pytest

from hubpub.errors import FetchError
from hubpub.fetch import fetch


@pytest.fixture
def payload(file_server):
    data = bytes(range(256)) * 4096  # 1 MiB
    (file_server.root / "ckpt.pth").write_bytes(data)
    return data


def test_download_and_cache(file_server, payload, tmp_path):
    sha = hashlib.sha256(payload).hexdigest()
    got = fetch(f"{file_server.url}/ckpt.pth", sha256=sha, cache=tmp_path / "cache")
    assert got.downloaded and got.sha256 == sha and got.path.read_bytes() == payload
    again = fetch(f"{file_server.url}/ckpt.pth", sha256=sha, cache=tmp_path / "cache")
    assert not again.downloaded and again.path == got.path
    assert len(file_server.requests) == 1


def test_connection_dropped_midway_resumes_with_range(file_server, payload, tmp_path):
    file_server.faults["/ckpt.pth"] = ("drop", 300_000, 2)
    got = fetch(f"{file_server.url}/ckpt.pth", cache=tmp_path / "cache", backoff=0.01)
    assert got.path.read_bytes() == payload
    ranges = [r for _, r in file_server.requests]
    # each retry asks only for what is missing (whole 64 KiB reads are kept)
    assert ranges == [None, "bytes=262144-", "bytes=524288-"]
    assert not list((tmp_path / "cache").rglob("*.part"))


def test_wrong_bytes_fail_with_both_hashes_and_delete(file_server, payload, tmp_path):
    file_server.faults["/ckpt.pth"] = ("corrupt",)
    expected = hashlib.sha256(payload).hexdigest()
    with pytest.raises(FetchError, match=rf"sha256 mismatch: expected {expected}, got [0-9a-f]{{64}} "
                                         r"\(the file was deleted\)"):
        fetch(f"{file_server.url}/ckpt.pth", sha256=expected, cache=tmp_path / "cache")
    assert not [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]


def test_404_is_immediate_and_clear(file_server, tmp_path):
    with pytest.raises(FetchError, match=r"/missing\.pth: HTTP 404"):
        fetch(f"{file_server.url}/missing.pth", cache=tmp_path / "cache")
    assert len(file_server.requests) == 1


def test_500_retries_a_bounded_number_of_times(file_server, payload, tmp_path):
    file_server.faults["/ckpt.pth"] = ("status", 500, 99)
    with pytest.raises(FetchError, match=r"download failed after 2 retries: HTTP 500"):
        fetch(f"{file_server.url}/ckpt.pth", cache=tmp_path / "cache", retries=2, backoff=0.01)
    assert len(file_server.requests) == 3


def test_transient_503_then_success(file_server, payload, tmp_path):
    file_server.faults["/ckpt.pth"] = ("status", 503, 2)
    got = fetch(f"{file_server.url}/ckpt.pth", cache=tmp_path / "cache", backoff=0.01)
    assert got.path.read_bytes() == payload


def test_local_path_and_missing_file(tmp_path):
    f = tmp_path / "c.npz"
    f.write_bytes(b"abc")
    assert fetch(str(f)).sha256 == hashlib.sha256(b"abc").hexdigest()
    assert fetch(f"file://{f}").path == f
    with pytest.raises(FetchError, match="no such checkpoint file"):
        fetch(str(tmp_path / "nope.pth"))
