"""A loopback HTTP file server for tests, with Range support and injectable faults.

Faults (per path, set in `server.faults`): `("status", code, times)` answers `code` the first
`times` requests; `("drop", n_bytes, times)` closes the connection after n bytes; `("corrupt",)`
flips bytes; `("hold", n_bytes)` sends n bytes, sets `server.holding` and keeps the connection open
until the server stops (a download provably in progress). Real sockets on 127.0.0.1: these faults
cannot be produced otherwise.
"""

from __future__ import annotations

import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlparse


class _Handler(SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep test output clean
        pass

    def do_GET(self):
        server: FileServer = self.server.owner  # type: ignore[attr-defined]
        path = urlparse(self.path).path
        server.requests.append((path, self.headers.get("Range")))
        fault = server.faults.get(path)
        if fault and fault[0] == "status" and fault[2] > 0:
            server.faults[path] = (fault[0], fault[1], fault[2] - 1)
            self.send_error(fault[1])
            return
        file = server.root / path.lstrip("/")
        if not file.is_file():
            self.send_error(404)
            return
        data = file.read_bytes()
        if fault and fault[0] == "corrupt":
            data = bytes(b ^ 0xFF for b in data[:64]) + data[64:]
        start = 0
        rng = self.headers.get("Range")
        if rng and rng.startswith("bytes="):
            start = int(rng[6:].split("-")[0])
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Content-Type", "application/octet-stream")
        self.end_headers()
        if fault and fault[0] == "hold":
            self.wfile.write(body[: fault[1]])
            self.wfile.flush()
            server.holding.set()
            server.released.wait()
            self.close_connection = True
            return
        if fault and fault[0] == "drop" and fault[2] > 0:
            server.faults[path] = (fault[0], fault[1], fault[2] - 1)
            self.wfile.write(body[: fault[1]])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(2)
            return
        self.wfile.write(body)


class FileServer:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.faults: dict[str, tuple] = {}
        self.requests: list[tuple[str, str | None]] = []
        self.holding, self.released = threading.Event(), threading.Event()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.owner = self
        # a short poll: shutdown() waits for the serving loop's next look (0.5 s by default)
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __enter__(self) -> FileServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.released.set()
        self.httpd.shutdown()
        self.httpd.server_close()
