"""Upload throughput to fake-gcs-server through hubpub's publish path, against a raw HTTP PUT.

Both in the same run, on loopback, with the same bytes (500 MB by default). Prints the ratio
(hubpub MB/s) / (raw PUT MB/s). Target: >= 0.8. Writes benchmarks/results/upload.json.
"""

from __future__ import annotations

import argparse
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

    from hubpub.progress import progress_bar
    from hubpub.publish import Destination, GcsStore, Upload, crc32c_of

    os.environ["STORAGE_EMULATOR_HOST"] = emulator_url
    storage.Client().create_bucket("bench")
    dest = Destination.parse("gs://bench/prefix")
    store = GcsStore(dest)
    upload = Upload(path, "big.tar.gz", path.stat().st_size, crc32c_of(path), "")
    start = time.perf_counter()
    with progress_bar(total=upload.size, unit="B", unit_scale=True) as bar:
        store.upload(upload, dest.key(upload.relative), replacing=None, bar=bar)
    seconds = time.perf_counter() - start
    stat = store.stat(dest.key(upload.relative))
    assert (stat.size, stat.crc32c) == (upload.size, upload.crc32c), "stored object differs"
    return seconds


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--mb", type=int, default=500)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "upload.json"))
    args = ap.parse_args()
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
        finally:
            emulator.stop()
    size_mb = args.mb * 1.048576
    result = {"megabytes": size_mb, "raw_put_mb_s": size_mb / raw, "raw_emulator_mb_s": size_mb / raw_emulator,
              "hubpub_mb_s": size_mb / ours, "ratio": raw / ours, "ratio_vs_emulator_ceiling": raw_emulator / ours,
              "target": 0.8}
    print(f"{args.mb} MiB: raw HTTP PUT to a loopback sink {result['raw_put_mb_s']:.0f} MB/s; one raw request to "
          f"fake-gcs-server {result['raw_emulator_mb_s']:.0f} MB/s; hubpub (resumable, crc32c, verified) "
          f"{result['hubpub_mb_s']:.0f} MB/s")
    print(f"ratio vs the loopback sink {result['ratio']:.2f} (target >= 0.8): "
          f"{'PASS' if result['ratio'] >= 0.8 else 'FAIL'}; vs the emulator's own ceiling "
          f"{result['ratio_vs_emulator_ceiling']:.2f}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return 0 if result["ratio"] >= 0.8 else 1


if __name__ == "__main__":
    sys.exit(main())
