"""Upload throughput to fake-gcs-server through hubpub's publish path, against a raw HTTP PUT.

Both in the same run, on loopback, with the same bytes (500 MB by default). Prints the ratio
(hubpub MB/s) / (raw PUT MB/s). Target: >= 0.8. Writes benchmarks/results/upload.json.

Then the hubs (`--hubs`, the default too): convnext_tiny's classifier (random weights) published by
hubpub to the loopback Kaggle and Hugging Face stand-ins (tests/kaggle_stub.py, tests/hf_stub.py),
against the client's own upload of the same files in the same run (`kagglehub.model_upload` of the
same two directories; `HfApi.upload_folder` of the same two repositories). Writes
benchmarks/results/upload_hubs.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


class _Sink(BaseHTTPRequestHandler):
    def do_PUT(self):
        remaining = int(self.headers["Content-Length"])
        while remaining:
            remaining -= len(self.rfile.read(min(remaining, 1 << 20)))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def raw_put(path: Path) -> float:
    import requests

    server = ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        start = time.perf_counter()
        with open(path, "rb") as f:
            requests.put(f"http://127.0.0.1:{server.server_address[1]}/x", data=f,
                         headers={"Content-Length": str(path.stat().st_size)}).raise_for_status()
        return time.perf_counter() - start
    finally:
        server.shutdown()


def raw_to_emulator(path: Path, emulator_url: str) -> float:
    """One plain upload request (uploadType=media) to the emulator: the server's own ceiling."""
    import requests

    requests.post(f"{emulator_url}/storage/v1/b", json={"name": "rawbench"}).raise_for_status()
    start = time.perf_counter()
    with open(path, "rb") as f:
        requests.post(f"{emulator_url}/upload/storage/v1/b/rawbench/o?uploadType=media&name=raw", data=f,
                      headers={"Content-Length": str(path.stat().st_size)}).raise_for_status()
    return time.perf_counter() - start


def hubpub_upload(path: Path, emulator_url: str) -> float:
    from google.cloud import storage

    from hubpub.destinations import Upload
    from hubpub.destinations import parse as parse_destination
    from hubpub.destinations.gcs import GcsStore
    from hubpub.destinations.objects import crc32c_of
    from hubpub.progress import progress_bar

    os.environ["STORAGE_EMULATOR_HOST"] = emulator_url
    storage.Client().create_bucket("bench")
    dest = parse_destination("gs://bench/prefix")
    store = GcsStore(dest)
    upload = Upload(path, "big.tar.gz", path.stat().st_size, crc32c_of(path), "")
    start = time.perf_counter()
    with progress_bar(total=upload.size, unit="B", unit_scale=True) as bar:
        store.upload(upload, dest.key(upload.relative), replacing=None, bar=bar)
    seconds = time.perf_counter() - start
    stat = store.stat(dest.key(upload.relative))
    assert (stat.size, stat.crc32c) == (upload.size, upload.crc32c), "stored object differs"
    return seconds


def client_uploads(path: Path, emulator_url: str) -> dict:
    """google-cloud-storage's own ways of sending one large file, in the same run: a resumable upload
    of the chunk size hubpub uses (what hubpub wraps), and transfer_manager's concurrent chunks (XML
    multipart: recorded as unsupported when the emulator refuses it)."""
    from google.cloud import storage
    from google.cloud.storage import transfer_manager

    from hubpub.destinations.gcs import GcsStore

    os.environ["STORAGE_EMULATOR_HOST"] = emulator_url
    bucket = storage.Client().bucket("bench")
    start = time.perf_counter()
    bucket.blob("client-resumable", chunk_size=GcsStore.CHUNK_BYTES).upload_from_filename(str(path),
                                                                                          checksum="crc32c")
    out = {"client_resumable_s": time.perf_counter() - start}
    # Why the emulator caps a chunked upload: its cost grows with the number of chunks (each appended
    # chunk is a request that rewrites the object so far), so the same client gets faster with larger
    # chunks, up to one request for the whole file. Real GCS appends chunks; this is the emulator's own.
    size_mb = path.stat().st_size / 1e6
    out["client_resumable_mb_s_by_chunk_mib"] = {}
    for mib in (32, 128, 1024):
        start = time.perf_counter()
        bucket.blob(f"client-chunks-{mib}", chunk_size=mib * 2**20).upload_from_filename(str(path), checksum="crc32c")
        out["client_resumable_mb_s_by_chunk_mib"][mib] = round(size_mb / (time.perf_counter() - start), 1)
    start = time.perf_counter()
    try:
        transfer_manager.upload_chunks_concurrently(str(path), bucket.blob("client-chunks"),
                                                    chunk_size=32 * 2**20, max_workers=4)
        out["transfer_manager_chunks_s"] = time.perf_counter() - start
    except Exception as e:  # fake-gcs-server has no XML multipart API (fsouza/fake-gcs-server#852)
        out["transfer_manager_chunks"] = f"refused by the emulator ({type(e).__name__}), which has no XML multipart API"
    return out


def hubs(out: Path) -> dict:
    """hubpub's publish to each hub stand-in against the client's own upload of the same bytes."""
    import shutil
    import zipfile

    from hubpub.convert import save_checkpoint
    from hubpub.destinations import parse as parse_destination
    from hubpub.destinations.hub import extract_saved_model
    from hubpub.docs import render_docs
    from hubpub.manifest import load_manifest
    from hubpub.notebooks import render_notebooks
    from hubpub.pipeline import build_variant
    from hubpub.publish import publish
    from tests.hf_stub import HfStub
    from tests.kaggle_stub import KaggleStub

    # no `notebooks:` checkout: a publish would copy its notebooks into this repository's notebooks/
    manifest = dataclasses.replace(load_manifest(ROOT / "collection.yaml"), notebooks=None)
    v = manifest.variant("convnext_tiny_1k_224")
    figures = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        ckpt = save_checkpoint(v.family.random_checkpoint(v.architecture, v.num_classes), tmp / "c.safetensors")
        dist = tmp / "dist"
        # the SavedModel and the .keras file: the files the raw uploads below send too
        build_variant(v, dist, checkpoint=str(ckpt), kinds=("classifier",), parity=False, formats=("keras",))
        report = json.loads((dist / "reports" / f"{v.name}.json").read_text())
        (dist / "reports" / f"{v.name}.json").write_text(json.dumps({**report, "random_weights": False}))
        tree = tmp / "tree"  # the files both hubs receive, for the clients' own uploads
        extract_saved_model(dist / "tars" / f"{v.name}.tar.gz", tree / "saved_model")
        (tree / "keras").mkdir()
        shutil.copy(dist / "keras" / f"{v.name}.keras", tree / "keras" / f"{v.name}.keras")
        size = sum(p.stat().st_size for p in tree.rglob("*") if p.is_file())

        os.environ.update(KAGGLE_API_ENVIRONMENT="TEST", KAGGLE_USERNAME="bench", KAGGLE_KEY="bench",
                          KAGGLEHUB_CACHE=str(tmp / "kh"), TQDM_DISABLE="1")
        import kagglehub

        with KaggleStub(username="bench", key="bench"):
            render_docs(manifest, dist=dist, out=dist / "docs", public_url_base="kaggle://bench/convnext")
            render_notebooks(manifest, dist=dist, out=tmp / "nb", public_url_base="kaggle://bench/convnext")
            start = time.perf_counter()
            publish(manifest, dist, parse_destination("kaggle://bench/convnext"), notebooks=tmp / "nb")
            figures["kaggle_hubpub_s"] = time.perf_counter() - start
            start = time.perf_counter()
            kagglehub.model_upload("bench/convnext/tensorFlow2/raw", str(tree / "saved_model"), "MIT")
            kagglehub.model_upload("bench/convnext/keras/raw", str(tree / "keras"), "MIT")
            figures["kaggle_client_s"] = time.perf_counter() - start

        from huggingface_hub import HfApi, constants

        constants.HF_HUB_DISABLE_XET = True  # the stand-in serves the LFS path, not Xet
        with HfStub(token="hf_bench") as hf:
            os.environ.update(HF_ENDPOINT=hf.url, HF_TOKEN="hf_bench", HF_HOME=str(tmp / "hf"))
            shutil.rmtree(dist / "docs")
            render_docs(manifest, dist=dist, out=dist / "docs", public_url_base="hf://bench")
            render_notebooks(manifest, dist=dist, out=tmp / "nb", public_url_base="hf://bench")
            start = time.perf_counter()
            publish(manifest, dist, parse_destination("hf://bench"), notebooks=tmp / "nb")
            figures["hf_hubpub_s"] = time.perf_counter() - start
            # The same files as hubpub's two repositories of the artifact: the Keras layout, the tarball.
            hf_tree, hf_tar = tmp / "hf-tree", tmp / "hf-tar"
            hf_tar.mkdir()
            shutil.copy(dist / "tars" / f"{v.name}.tar.gz", hf_tar / "saved_model.tar.gz")
            with zipfile.ZipFile(dist / "keras" / f"{v.name}.keras") as z:
                z.extractall(hf_tree)
            hf.lfs.clear()  # the raw upload sends every object again, as hubpub's first publish did
            api = HfApi(endpoint=hf.url)
            start = time.perf_counter()
            for repo, folder in (("bench/raw", hf_tree), ("bench/raw-savedmodel", hf_tar)):
                api.create_repo(repo, private=True)
                api.upload_folder(repo_id=repo, folder_path=str(folder))
            figures["hf_client_s"] = time.perf_counter() - start
            hf_size = sum(p.stat().st_size for f in (hf_tree, hf_tar) for p in f.rglob("*") if p.is_file())
    result = {"variant": v.name, "kaggle_bytes": size, "hf_bytes": hf_size, **figures,
              "kaggle_ratio": figures["kaggle_client_s"] / figures["kaggle_hubpub_s"],
              "hf_ratio": figures["hf_client_s"] / figures["hf_hubpub_s"]}
    out.write_text(json.dumps(result, indent=2) + "\n")
    for hub, n in (("kaggle", size), ("hf", hf_size)):
        print(f"{hub}: hubpub publish {n / 1e6 / figures[f'{hub}_hubpub_s']:.0f} MB/s (whole publish: checks, "
              f"metadata, marker) vs the client's own upload {n / 1e6 / figures[f'{hub}_client_s']:.0f} MB/s -> "
              f"ratio {result[f'{hub}_ratio']:.2f}")
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--mb", type=int, default=500)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "upload.json"))
    ap.add_argument("--hubs", action="store_true", help="Only the Kaggle and HF Hub part.")
    args = ap.parse_args()
    if args.hubs:
        hubs(Path(args.out).parent / "upload_hubs.json")
        return 0
    os.environ.setdefault("NO_GCE_CHECK", "true")
    from tests.gcs import Emulator

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "big.tar.gz"
        with open(path, "wb") as f:
            for _ in range(args.mb):
                f.write(os.urandom(1 << 20))
        emulator = Emulator(Path(tmp) / "emulator.log")
        try:
            raw = raw_put(path)
            raw_emulator = raw_to_emulator(path, emulator.url)
            ours = hubpub_upload(path, emulator.url)
            client = client_uploads(path, emulator.url)
        finally:
            emulator.stop()
    size_mb = args.mb * 1.048576
    result = {"megabytes": size_mb, "raw_put_mb_s": size_mb / raw, "raw_emulator_mb_s": size_mb / raw_emulator,
              "hubpub_mb_s": size_mb / ours, "ratio": raw / ours, "ratio_vs_emulator_ceiling": raw_emulator / ours,
              "client_resumable_mb_s": size_mb / client["client_resumable_s"],
              "ratio_vs_client_resumable": client["client_resumable_s"] / ours, **client, "target": 0.8}
    chunks = result.get("transfer_manager_chunks") or f"{size_mb / result['transfer_manager_chunks_s']:.0f} MB/s"
    print(f"{args.mb} MiB: raw HTTP PUT to a loopback sink {result['raw_put_mb_s']:.0f} MB/s; one raw request to "
          f"fake-gcs-server {result['raw_emulator_mb_s']:.0f} MB/s; hubpub (resumable, crc32c, verified) "
          f"{result['hubpub_mb_s']:.0f} MB/s")
    print(f"ratio vs the loopback sink {result['ratio']:.2f} (target >= 0.8): "
          f"{'PASS' if result['ratio'] >= 0.8 else 'FAIL'}; vs the emulator's own ceiling "
          f"{result['ratio_vs_emulator_ceiling']:.2f}; vs the client's own resumable upload of the same file "
          f"{result['ratio_vs_client_resumable']:.2f}; transfer_manager's concurrent chunks: {chunks}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    hubs(Path(args.out).parent / "upload_hubs.json")
    return 0 if result["ratio"] >= 0.8 else 1


if __name__ == "__main__":
    sys.exit(main())
