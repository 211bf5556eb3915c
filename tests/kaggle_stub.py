"""A STAND-IN for Kaggle's API, for tests: Kaggle ships no emulator and cannot be reached from here.

It implements the endpoints the real clients call (kagglehub's uploads and downloads, the Kaggle SDK's
model calls), modelled on kagglehub's own test stubs (`tests/server_stubs/model_upload_stub.py`,
`model_download_stub.py`), and holds what it receives to rules taken from Kaggle's own code and docs,
never from hubpub: the slug syntax (the Kaggle CLI's `_validate_slug_syntax`), the framework enum
(kagglesdk), the license names (kaggle-api's docs/models_metadata.md, "Licenses"), required fields,
update masks naming known fields, resumable blob uploads (`Content-Range`, 308 with `Range`), and
credentials on every call: exactly the configured user and key (HTTP Basic, as kagglehub sends
KAGGLE_USERNAME/KAGGLE_KEY or kaggle.json) or the configured API token (Bearer, KAGGLE_API_TOKEN).
Kaggle documents no length limits for a model's title or subtitle (the CLI checks them for datasets
only), so none is enforced here. It stores the files of every version, so downloads return what was
uploaded. Every answer that is not a success is recorded in `errors` ("<status> <call>"), whether the
client expected it (a 404 on a model not yet made) or not, so tests assert the exact set.

The Kaggle SDK has fixed endpoints; `KAGGLE_API_ENVIRONMENT=TEST` is its own test setting,
http://localhost:7777, so the stand-in listens there.
"""

from __future__ import annotations

import base64
import errno
import hashlib
import io
import json
import re
import tarfile
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT = 7777
OWNER = re.compile(r"^[a-z0-9]+(?:[_-][a-z0-9]+)*$")
SLUG = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
# kaggle-api docs/models_metadata.md, "Licenses": "the available licenses for models", verbatim.
LICENSES = {
    "Apache 2.0", "Attribution 3.0 IGO (CC BY 3.0 IGO)", "Attribution 3.0 Unported (CC BY 3.0)",
    "Attribution 4.0 International (CC BY 4.0)", "Attribution-NoDerivatives 4.0 International (CC BY-ND 4.0)",
    "Attribution-NonCommercial 4.0 International (CC BY-NC 4.0)",
    "Attribution-NonCommercial-NoDerivatives 4.0 International (CC BY-NC-ND 4.0)",
    "Attribution-NonCommercial-ShareAlike 3.0 IGO (CC BY-NC-SA 3.0 IGO)", "BSD-3-Clause", "CC BY-NC-SA 4.0",
    "CC BY-SA 3.0", "CC BY-SA 4.0", "CC0: Public Domain", "Community Data License Agreement - Permissive - Version 1.0",
    "Community Data License Agreement - Sharing - Version 1.0", "GNU Affero General Public License 3.0",
    "GNU Free Documentation License 1.3", "GNU Lesser General Public License 3.0", "GPL 2", "MIT",
    "ODC Attribution License (ODC-By)", "ODC Public Domain Dedication and Licence (PDDL)", "GPL 3"}
# kagglesdk's ModelFramework enum (models/types/model_enums.py) and the names handles use for them.
FRAMEWORKS = {"MODEL_FRAMEWORK_TENSOR_FLOW_2": "tensorFlow2", "MODEL_FRAMEWORK_KERAS": "keras",
              "MODEL_FRAMEWORK_TF_LITE": "tfLite", "MODEL_FRAMEWORK_PY_TORCH": "pyTorch", "MODEL_FRAMEWORK_JAX": "jax",
              "MODEL_FRAMEWORK_ONNX": "onnx"}
MODEL_FIELDS = {"title", "subtitle", "is_private", "description", "publish_time", "provenance_sources"}
INSTANCE_FIELDS = {"overview", "usage", "fine_tunable", "training_data", "license_name"}


class Rejected(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@dataclass
class Version:
    number: int
    notes: str
    files: dict[str, bytes]


@dataclass
class Instance:
    meta: dict
    versions: list[Version] = field(default_factory=list)


@dataclass
class Model:
    meta: dict
    instances: dict[tuple[str, str], Instance] = field(default_factory=dict)


def _listen(address, handler, wait: float = 600.0) -> ThreadingHTTPServer:
    """The fixed port is also the lock: another test process (a pytest-xdist worker) holding it is
    waited for, so stand-ins of two workers never meet."""
    deadline = time.monotonic() + wait
    while True:
        try:
            return ThreadingHTTPServer(address, handler)
        except OSError as e:
            if e.errno != errno.EADDRINUSE or time.monotonic() > deadline:
                raise
            time.sleep(0.2)


class KaggleStub:
    def __init__(self, username: str = "testpub", key: str = "not-a-real-key", token: str | None = None):
        # the one account this Kaggle knows: its legacy user and key, and (if given) its API token
        self.accepted = {"Basic " + base64.b64encode(f"{username}:{key}".encode()).decode()}
        if token:
            self.accepted.add(f"Bearer {token}")
        self.models: dict[tuple[str, str], Model] = {}
        self.blobs: dict[str, dict] = {}
        self.errors: list[str] = []  # every answer that was not a success: "<status> <call>"
        self.user_agents: set[str] = set()  # the User-Agent headers of the API calls
        self.downloaded: list[tuple[str, int]] = []  # (file, bytes) of every download answered
        self.calls: list[str] = []
        self.put_faults: list[tuple[str, int]] = []  # ("reset", after_bytes) or ("status", code), one per PUT
        self.resumed_at: list[int] = []  # offsets of PUTs that continued an interrupted upload
        self.lock = threading.Lock()
        self.server = _listen(("127.0.0.1", PORT), _handler(self))
        self.url = f"http://localhost:{PORT}"
        # a short poll: shutdown() waits for the serving loop's next look (0.5 s by default)
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    # ----------------------------------------------------------------- what tests look at

    def instance(self, owner: str, model: str, framework: str, slug: str) -> Instance:
        return self.models[(owner, model)].instances[(framework, slug)]

    # ----------------------------------------------------------------- the API

    def api(self, method: str, body: dict) -> dict:
        handler = getattr(self, "_" + re.sub(r"(?<!^)(?=[A-Z])", "_", method).lower(), None)
        if handler is None:
            raise Rejected(404, f"no such method {method}")
        self.calls.append(method)
        return handler(body)

    def _model(self, body: dict, key: str = "modelSlug") -> Model:
        model = self.models.get((body.get("ownerSlug"), body.get(key)))
        if model is None:
            raise Rejected(404, f"model {body.get('ownerSlug')}/{body.get(key)} not found")
        return model

    def _get_model(self, body):
        m = self._model(body)
        enum = {name: value for value, name in FRAMEWORKS.items()}
        instances = [{"slug": slug, "framework": enum[framework], "versionNumber": inst.versions[-1].number}
                     for (framework, slug), inst in sorted(m.instances.items()) if inst.versions]
        return {"ref": f"{body['ownerSlug']}/{body['modelSlug']}", "slug": body["modelSlug"],
                "author": body["ownerSlug"], "instances": instances, **{_camel(k): v for k, v in m.meta.items()}}

    def _create_model(self, body):
        _require(body, "ownerSlug", "slug", "title", "isPrivate")
        if not OWNER.match(body["ownerSlug"]) or not SLUG.match(body["slug"]):
            raise Rejected(400, f"invalid slug {body['ownerSlug']}/{body['slug']}")
        _check_model_meta(body)
        if (body["ownerSlug"], body["slug"]) in self.models:
            return {"error": "model already exists", "errorCode": 409}
        self.models[(body["ownerSlug"], body["slug"])] = Model(
            {_snake(k): v for k, v in body.items() if k not in ("ownerSlug", "slug")})
        return {"ref": f"{body['ownerSlug']}/{body['slug']}", "url": f"/models/{body['ownerSlug']}/{body['slug']}"}

    def _update_model(self, body):
        m = self._model(body)
        paths = _mask(body, MODEL_FIELDS)
        _check_model_meta({k: v for k, v in body.items() if _snake(k) in paths})
        for p in paths:
            m.meta[p] = body.get(_camel(p))
        return {"ref": f"{body['ownerSlug']}/{body['modelSlug']}"}

    def _instance(self, body: dict) -> tuple[Model, tuple[str, str]]:
        m = self._model(body)
        framework = FRAMEWORKS.get(body.get("framework") or body.get("body", {}).get("framework"))
        slug = body.get("instanceSlug") or body.get("body", {}).get("instanceSlug")
        if framework is None:
            raise Rejected(400, f"unknown framework {body.get('framework')!r}")
        return m, (framework, slug)

    def _get_model_instance(self, body):
        m, key = self._instance(body)
        inst = m.instances.get(key)
        if inst is None:
            raise Rejected(404, f"instance {key} not found")
        return {"slug": key[1], "framework": body["framework"], "versionNumber": inst.versions[-1].number,
                **{_camel(k): v for k, v in inst.meta.items()}}

    def _create_model_instance(self, body):
        m, key = self._instance(body)
        b = body["body"]
        _require(b, "instanceSlug", "framework", "licenseName")
        if not SLUG.match(b["instanceSlug"]):
            raise Rejected(400, f"invalid variation slug {b['instanceSlug']!r}")
        if b["licenseName"] not in LICENSES:
            raise Rejected(400, f"unknown license {b['licenseName']!r}")
        if key in m.instances:
            return {"error": "instance already exists", "errorCode": 409}
        files = self._files(b)
        meta = {"license_name": b["licenseName"], "overview": b.get("overview", ""), "usage": b.get("usage", ""),
                "fine_tunable": b.get("fineTunable", False), "training_data": b.get("trainingData", [])}
        m.instances[key] = Instance(meta, [Version(1, "", files)])
        return {"ref": "/".join((body["ownerSlug"], body["modelSlug"], *key)), "url": "/models/..."}

    def _create_model_instance_version(self, body):
        m, key = self._instance(body)
        inst = m.instances.get(key)
        if inst is None:
            raise Rejected(404, f"instance {key} not found")
        files = self._files(body["body"])
        inst.versions.append(Version(inst.versions[-1].number + 1, body["body"].get("versionNotes", ""), files))
        return {"ref": "/".join((body["ownerSlug"], body["modelSlug"], *key, str(inst.versions[-1].number)))}

    def _update_model_instance(self, body):
        m, key = self._instance(body)
        inst = m.instances.get(key)
        if inst is None:
            raise Rejected(404, f"instance {key} not found")
        paths = _mask(body, INSTANCE_FIELDS)
        if "license_name" in paths and body.get("licenseName") not in LICENSES:
            raise Rejected(400, f"unknown license {body.get('licenseName')!r}")
        for p in paths:
            inst.meta[p] = body.get(_camel(p), [] if p == "training_data" else False if p == "fine_tunable" else "")
        return {"ref": "/".join((body["ownerSlug"], body["modelSlug"], *key))}

    def _version(self, body) -> Version:
        m, key = self._instance(body)
        inst = m.instances.get(key)
        match = [v for v in (inst.versions if inst else []) if v.number == body.get("versionNumber")]
        if not match:
            raise Rejected(404, f"version {body.get('versionNumber')} of {key} not found")
        return match[0]

    def _list_model_instance_version_files(self, body):
        v = self._version(body)
        return {"files": [{"name": n, "size": len(d)} for n, d in sorted(v.files.items())], "nextPageToken": ""}

    def _files(self, body: dict) -> dict[str, bytes]:
        """The version's files from the upload tokens, directories walked as kagglehub sends them."""
        out: dict[str, bytes] = {}

        def walk(node: dict, prefix: str) -> None:
            for f in node.get("files") or []:
                blob = self.blobs.get(f.get("token"))
                if blob is None or not blob["complete"]:
                    raise Rejected(400, f"unknown or incomplete upload token {f.get('token')!r}")
                out[prefix + blob["name"]] = bytes(blob["data"])
            for d in node.get("directories") or []:
                walk(d, f"{prefix}{d['name']}/")

        walk(body, "")
        if not out:
            raise Rejected(400, "a version needs at least one file")
        return out

    def _start_blob_upload(self, body):
        _require(body, "type", "name", "contentLength")
        token = base64.urlsafe_b64encode(hashlib.sha256(f"{len(self.blobs)}{body['name']}".encode()).digest()[:12])
        token = token.decode()
        self.blobs[token] = {"name": body["name"], "length": int(body["contentLength"]), "data": bytearray(),
                             "complete": int(body["contentLength"]) == 0}
        return {"token": token, "createUrl": f"{self.url}/upload/{token}"}

    # ----------------------------------------------------------------- downloads

    def download(self, body: dict) -> tuple[bytes, str]:
        v = self._version(body)
        if body.get("path"):
            if body["path"] not in v.files:
                raise Rejected(404, f"no file {body['path']!r}")
            return v.files[body["path"]], "application/octet-stream"
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz") as tar:
            for name, data in sorted(v.files.items()):
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        return buf.getvalue(), "application/x-gzip"


def _require(body: dict, *keys: str) -> None:
    missing = [k for k in keys if body.get(k) in (None, "")]
    if missing:
        raise Rejected(400, f"missing required field(s): {', '.join(missing)}")


def _check_model_meta(body: dict) -> None:
    if "title" in body and not str(body["title"]).strip():
        raise Rejected(400, "title must not be empty")
    if "isPrivate" in body and not isinstance(body["isPrivate"], bool):
        raise Rejected(400, "isPrivate must be a boolean")


def _mask(body: dict, known: set[str]) -> list[str]:
    # A FieldMask travels in its JSON form: comma-separated camelCase paths.
    paths = [_snake(p) for p in (body.get("updateMask") or "").split(",") if p]
    unknown = [p for p in paths if p not in known]
    if not paths or unknown:
        raise Rejected(400, f"updateMask must name known fields; got {body.get('updateMask')!r}")
    return paths


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(w.title() for w in rest)


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _handler(stub: KaggleStub):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def _send(self, status: int, body: bytes, ctype: str = "application/json", headers: dict | None = None):
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)

        def _json(self, status: int, data: dict):
            self._send(status, json.dumps(data).encode())

        def _error(self, status: int, call: str, message: str):
            stub.errors.append(f"{status} {call}")
            return self._json(status, {"code": status, "message": message})

        def do_POST(self):
            m = re.fullmatch(r"/api/v1/(models\.ModelApiService|blobs\.BlobApiService)/(\w+)", self.path)
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
            if m is None:
                return self._error(404, f"POST {self.path}", f"no endpoint {self.path}")
            stub.user_agents.add(self.headers.get("User-Agent", ""))
            if self.headers.get("Authorization") not in stub.accepted:
                return self._error(401, m.group(2), "Unauthenticated")
            try:
                with stub.lock:
                    if m.group(2) == "DownloadModelInstanceVersion":
                        data, ctype = stub.download(body)
                        stub.downloaded.append((body.get("path") or "", len(data)))
                        md5 = base64.b64encode(hashlib.md5(data).digest()).decode()
                        return self._send(200, data, ctype, {"x-goog-hash": f"md5={md5}"})
                    return self._json(200, stub.api(m.group(2), body))
            except Rejected as e:
                return self._error(e.status, m.group(2), str(e))

        def do_PUT(self):
            m = re.fullmatch(r"/upload/([\w=-]+)", self.path)
            blob = stub.blobs.get(m.group(1)) if m else None
            if blob is None:
                return self._error(404, f"PUT {self.path}", "no such upload")
            length = int(self.headers.get("Content-Length", 0))
            crange = self.headers.get("Content-Range", "")
            if crange.startswith("bytes */"):  # how much arrived?
                have = len(blob["data"])
                if blob["complete"]:
                    return self._json(200, {})
                return self._send(308, b"", headers={"Range": f"bytes=0-{have - 1}"} if have else {})
            start = int(re.match(r"bytes (\d+)-", crange).group(1)) if crange else 0
            if start:
                stub.resumed_at.append(start)
            with stub.lock:  # a reset fault waits for an upload long enough to be cut
                fault = stub.put_faults[0] if stub.put_faults else None
                if fault and fault[0] == "reset" and length <= fault[1]:
                    fault = None
                elif fault:
                    stub.put_faults.pop(0)
            if fault and fault[0] == "status":
                self.rfile.read(length)
                return self._error(fault[1], "PUT upload (injected)", "injected failure")
            data = bytearray()
            while len(data) < length:
                chunk = self.rfile.read(min(1 << 20, length - len(data)))
                if not chunk:
                    break
                data += chunk
                if fault and fault[0] == "reset" and len(data) >= fault[1]:
                    with stub.lock:
                        del blob["data"][start:]
                        blob["data"] += data[: fault[1]]
                    self.connection.shutdown(2)  # the connection drops mid-upload
                    return
            with stub.lock:
                del blob["data"][start:]
                blob["data"] += data
                blob["complete"] = len(blob["data"]) == blob["length"]
            if blob["complete"]:
                return self._json(200, {})
            return self._send(308, b"", headers={"Range": f"bytes=0-{len(blob['data']) - 1}"})

    return Handler
