"""A STAND-IN for the Hugging Face Hub, for tests: the Hub ships no emulator and cannot be reached here.

It implements the endpoints huggingface_hub calls for what hubpub does (create a repository, update
its settings, read refs, preupload, the LFS batch API with basic transfers and verify, commit as
NDJSON, tags, collections; repo info, the tree, and `resolve` for downloads), modelled on the
requests and responses in huggingface_hub's own code, and holds what it receives to the Hub's
documented rules: repository names, README front matter (license ids, pipeline tags, a model-index
of name / results / task / dataset / metrics), LFS objects whose sha256 matches their oid, tags
that exist once. Credentials as the Hub checks them: every write, and every read of a private
repository, needs the one token this Hub knows (`Authorization: Bearer <token>`); a private repository
read without it is answered 401 `RepoNotFound`, as the Hub does, so it cannot be told apart from a
missing one. Every answer that is not a success (an unknown endpoint included) is recorded in
`errors` ("<status> <method> <path>"), expected by the client or not, so tests assert the exact set.
It does not speak Xet (the Hub's chunked storage protocol): tests turn Xet off, and the same client
then uses the LFS path this stand-in serves.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlparse

import yaml

REPO_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
# A subset of the license identifiers the Hub documents (huggingface.co/docs/hub/repositories-licenses).
LICENSES = {"apache-2.0", "mit", "bsd-3-clause", "cc-by-4.0", "cc-by-sa-4.0", "cc-by-nc-4.0", "cc-by-nc-sa-4.0",
            "cc0-1.0", "gpl-3.0", "openrail", "other"}
PIPELINE_TAGS = {"image-classification", "image-feature-extraction", "image-segmentation", "object-detection",
                 "feature-extraction", "text-classification"}


@dataclass
class Commit:
    oid: str
    files: dict[str, tuple[bytes, bool]]  # path -> (content, stored in LFS)
    message: str


@dataclass
class Repo:
    private: bool
    commits: list[Commit] = field(default_factory=list)
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def head(self) -> Commit | None:
        return self.commits[-1] if self.commits else None


class HfStub:
    def __init__(self, token: str = "hf_not_a_real_token"):
        self.token = token
        self.repos: dict[str, Repo] = {}
        self.lfs: dict[str, bytes] = {}
        self.collections: dict[str, dict] = {}
        self.errors: list[str] = []  # every answer that was not a success: "<status> <method> <path>"
        self.put_faults: list[tuple[str, int]] = []  # ("status", 503) or ("reset", 0) for the next LFS PUTs
        self.lfs_puts = 0
        self.downloaded: list[tuple[str, int]] = []  # (path, bytes) of every file served
        # LFS objects whose every PUT is refused with a 403, as storage refuses an expired upload URL: the
        # client does not retry it (a 5xx it retries with backoff first; put_faults covers the retries)
        self.broken_oids: set[str] = set()
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        # a short poll: shutdown() waits for the serving loop's next look (0.5 s by default)
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    def files(self, repo_id: str, rev: str = "main") -> dict[str, bytes]:
        return {p: c for p, (c, _) in self._commit(repo_id, rev).files.items()}

    def _commit(self, repo_id: str, rev: str) -> Commit:
        repo = self.repos.get(repo_id)
        if repo is None:
            raise Refused(404, f"Repository Not Found for url: {repo_id}", {"X-Error-Code": "RepoNotFound"})
        oid = repo.tags.get(rev) or (repo.head.oid if rev == "main" and repo.head else rev)
        match = [c for c in repo.commits if c.oid == oid]
        if not match:
            raise Refused(404, f"Revision Not Found: {rev}", {"X-Error-Code": "RevisionNotFound"})
        return match[0]

    # ----------------------------------------------------------------- writes

    def create_repo(self, body: dict) -> dict:
        name, org = body.get("name"), body.get("organization")
        if not name or not REPO_NAME.match(name) or "--" in name or ".." in name:
            raise Refused(400, f"invalid repository name {name!r}")
        repo_id = f"{org}/{name}" if org else name
        if repo_id in self.repos:  # the Hub answers a conflict with the repository's URL too
            raise Refused(409, "You already created this model repo",
                          body={"error": "You already created this model repo", "url": f"{self.url}/{repo_id}"})
        private = body.get("visibility", "public") == "private" if "visibility" in body else bool(body.get("private"))
        self.repos[repo_id] = Repo(private)
        return {"url": f"{self.url}/{repo_id}", "name": repo_id, "id": repo_id}

    def settings(self, repo_id: str, body: dict) -> dict:
        repo = self.repos.get(repo_id)
        if repo is None:
            raise Refused(404, "Repository Not Found")
        if "private" in body:
            repo.private = bool(body["private"])
        elif "visibility" in body:
            repo.private = body["visibility"] == "private"
        return {}

    def preupload(self, repo_id: str, body: dict) -> dict:
        out = []
        for f in body.get("files", []):
            sample = base64.b64decode(f["sample"])
            binary = b"\0" in sample or f["size"] > 10 * 2**20  # the Hub's rule: binary or over 10 MB goes to LFS
            out.append({"path": f["path"], "uploadMode": "lfs" if binary else "regular", "shouldIgnore": False})
        return {"files": out, "commitOid": self.repos[repo_id].head.oid if self.repos[repo_id].head else None}

    def lfs_batch(self, repo_id: str, body: dict) -> dict:
        if body.get("operation") != "upload" or "basic" not in body.get("transfers", []) or \
                body.get("hash_algo", "sha256") != "sha256":
            raise Refused(422, "LFS batch: operation upload with the basic transfer and sha256 only")
        objects = []
        for o in body["objects"]:
            if not re.fullmatch(r"[0-9a-f]{64}", o["oid"]):
                raise Refused(422, f"LFS oid {o['oid']!r} is not a sha256")
            entry = {"oid": o["oid"], "size": o["size"]}
            if o["oid"] not in self.lfs:
                entry["actions"] = {"upload": {"href": f"{self.url}/lfs-objects/{o['oid']}"},
                                    "verify": {"href": f"{self.url}/lfs-verify"}}
            objects.append(entry)
        return {"transfer": "basic", "objects": objects}

    def lfs_verify(self, body: dict) -> dict:
        data = self.lfs.get(body.get("oid"))
        if data is None or len(data) != body.get("size"):
            raise Refused(404, f"LFS object {body.get('oid')} not found")
        return {}

    def commit(self, repo_id: str, rev: str, lines: list[dict]) -> dict:
        repo = self.repos.get(repo_id)
        if repo is None:
            raise Refused(404, "Repository Not Found")
        if rev != "main":
            raise Refused(400, f"commits go to main here, not {rev!r}")
        header, *ops = lines
        if header.get("key") != "header" or not header["value"].get("summary"):
            raise Refused(400, "the commit's first line must be its header with a summary")
        files = dict(repo.head.files) if repo.head else {}
        for op in ops:
            v = op["value"]
            if op["key"] == "file":
                files[v["path"]] = (base64.b64decode(v["content"]), False)
            elif op["key"] == "lfsFile":
                data = self.lfs.get(v["oid"])
                if data is None:
                    raise Refused(400, f"LFS object {v['oid']} for {v['path']} was never uploaded")
                files[v["path"]] = (data, True)
            elif op["key"] in ("deletedFile", "deletedFolder"):
                files = {p: c for p, c in files.items() if p != v["path"] and not p.startswith(v["path"] + "/")}
            else:
                raise Refused(400, f"unknown commit operation {op['key']!r}")
        if "README.md" in files:
            _check_card(files["README.md"][0].decode())
        oid = hashlib.sha1(json.dumps(sorted((p, hashlib.sha256(c).hexdigest()) for p, (c, _) in files.items())
                                      + [len(repo.commits)]).encode()).hexdigest()
        repo.commits.append(Commit(oid, files, header["value"]["summary"]))
        return {"commitUrl": f"{self.url}/{repo_id}/commit/{oid}", "commitOid": oid, "pullRequestUrl": None}

    def tag(self, repo_id: str, revision: str, body: dict) -> dict:
        commit = self._commit(repo_id, revision)
        repo = self.repos[repo_id]
        if body.get("tag") in repo.tags:
            raise Refused(409, f"tag {body.get('tag')} already exists")
        repo.tags[body["tag"]] = commit.oid
        return {}

    def delete_tag(self, repo_id: str, tag: str) -> dict:
        if self.repos[repo_id].tags.pop(unquote(tag), None) is None:
            raise Refused(404, "tag not found")
        return {}

    def create_collection(self, body: dict) -> dict:
        for c in self.collections.values():
            if c["title"] == body["title"] and c["owner"]["name"] == body["namespace"]:
                raise Refused(409, "collection exists", body={"slug": c["slug"]})
        if not body.get("title") or len(body.get("description") or "") > 150:
            raise Refused(400, "a collection needs a title and a description of at most 150 characters")
        words = re.sub(r"[^a-z0-9]+", "-", body["title"].lower()).strip("-")
        slug = f"{body['namespace']}/{words}-{len(self.collections)}"
        c = {"slug": slug, "title": body["title"], "owner": {"name": body["namespace"]}, "items": [],
             "lastUpdated": "2026-11-23T00:00:00.000Z", "position": 0, "private": body.get("private", False),
             "theme": "blue", "upvotes": 0, "description": body.get("description")}
        self.collections[slug] = c
        return c

    def add_item(self, slug: str, body: dict) -> dict:
        c = self.collections.get(slug)
        if c is None:
            raise Refused(404, "collection not found")
        item = body["item"]
        if item.get("type") != "model" or item.get("id") not in self.repos:
            raise Refused(400, f"no model {item.get('id')!r} to add")
        if any(i["id"] == item["id"] for i in c["items"]):
            raise Refused(409, "item already in the collection")
        c["items"].append({"_id": f"item{len(c['items'])}", "id": item["id"], "type": "model",
                           "position": len(c["items"])})
        return c

    def validate_yaml(self, body: dict) -> dict:
        try:
            _check_card(body.get("content", ""))
        except Refused as e:
            raise Refused(400, str(e), body={"errors": [{"message": str(e)}]}) from None
        return {"errors": [], "warnings": []}

    # ----------------------------------------------------------------- reads

    def refs(self, repo_id: str) -> dict:
        repo = self.repos.get(repo_id)
        if repo is None:
            raise Refused(404, "Repository Not Found", {"X-Error-Code": "RepoNotFound"})
        branch = [{"name": "main", "ref": "refs/heads/main", "targetCommit": repo.head.oid}] if repo.head else []
        return {"branches": branch, "converts": [],
                "tags": [{"name": t, "ref": f"refs/tags/{t}", "targetCommit": o} for t, o in repo.tags.items()]}

    def info(self, repo_id: str, rev: str) -> dict:
        commit = self._commit(repo_id, rev)
        return {"id": repo_id, "modelId": repo_id, "sha": commit.oid, "private": self.repos[repo_id].private,
                "siblings": [{"rfilename": p} for p in sorted(commit.files)], "tags": [], "downloads": 0,
                "likes": 0, "lastModified": "2026-11-23T00:00:00.000Z"}

    def tree(self, repo_id: str, rev: str) -> list[dict]:
        commit = self._commit(repo_id, rev)
        out = []
        for path, (content, lfs) in sorted(commit.files.items()):
            entry = {"type": "file", "path": path, "size": len(content), "oid": _git_oid(content)}
            if lfs:
                entry["lfs"] = {"oid": hashlib.sha256(content).hexdigest(), "size": len(content), "pointerSize": 134}
            out.append(entry)
        return out

    def resolve(self, repo_id: str, rev: str, path: str) -> tuple[bytes, dict]:
        commit = self._commit(repo_id, rev)
        if path not in commit.files:
            raise Refused(404, f"Entry Not Found: {path}", {"X-Error-Code": "EntryNotFound"})
        content, lfs = commit.files[path]
        headers = {"X-Repo-Commit": commit.oid, "ETag": f'"{_git_oid(content)}"'}
        if lfs:
            headers.update({"X-Linked-Etag": f'"{hashlib.sha256(content).hexdigest()}"',
                            "X-Linked-Size": str(len(content))})
        return content, headers


class Refused(Exception):
    def __init__(self, status: int, message: str, headers: dict | None = None, body: dict | None = None):
        super().__init__(message)
        self.status, self.headers, self.body = status, headers or {}, body


def _git_oid(content: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


def _check_card(text: str) -> None:
    """The Hub's model card rules for the front matter hubpub writes."""
    m = re.match(r"^---\n(.*?)\n---\n", text, re.S)
    if not m:
        raise Refused(400, "README.md: no YAML front matter")
    meta = yaml.safe_load(m.group(1))
    if meta.get("license") not in LICENSES:
        raise Refused(400, f"README.md: license {meta.get('license')!r} is not a Hub license id")
    if meta.get("pipeline_tag") not in PIPELINE_TAGS:
        raise Refused(400, f"README.md: pipeline_tag {meta.get('pipeline_tag')!r} is not a Hub task")
    if not isinstance(meta.get("library_name", ""), str) or not isinstance(meta.get("tags", []), list):
        raise Refused(400, "README.md: library_name must be a string and tags a list")  # both optional
    for entry in meta.get("model-index") or []:
        if not entry.get("name") or not entry.get("results"):
            raise Refused(400, "README.md: a model-index entry needs a name and results")
        for result in entry["results"]:
            if not result.get("task", {}).get("type") or not result.get("dataset", {}).get("type") or \
                    not result.get("dataset", {}).get("name"):
                raise Refused(400, "README.md: a model-index result needs task.type, dataset.type and dataset.name")
            for metric in result.get("metrics") or [None]:
                if not metric or not metric.get("type") or "value" not in metric:
                    raise Refused(400, "README.md: each model-index metric needs a type and a value")


def _handler(stub: HfStub):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body go out as two writes: with Nagle on, each answer would wait for the client's delayed ACK.
        disable_nagle_algorithm = True

        def log_message(self, *args):
            pass

        def _send(self, status: int, body: bytes, headers: dict | None = None, ctype="application/json",
                  head: bool = False):
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            if not head:
                self.wfile.write(body)
                if ctype == "application/octet-stream":  # a file's bytes: what a download costs
                    stub.downloaded.append((urlparse(self.path).path, len(body)))

        def _json(self, status: int, data, headers: dict | None = None):
            self._send(status, json.dumps(data).encode(), headers)

        def _body(self) -> bytes:
            return self.rfile.read(int(self.headers.get("Content-Length", 0)))

        def _error(self, status: int, body: dict, headers: dict | None = None):
            stub.errors.append(f"{status} {self.command} {urlparse(self.path).path}")
            return self._json(status, body, headers)

        def _run(self, fn, write: bool, repo_id: str | None = None):
            signed_in = self.headers.get("Authorization") == f"Bearer {stub.token}"
            if write and not signed_in:
                return self._error(401, {"error": "Invalid credentials in Authorization header"})
            repo = stub.repos.get(repo_id) if repo_id else None
            if repo is not None and repo.private and not signed_in:  # the Hub's answer: as if it did not exist
                return self._error(401, {"error": "Repository Not Found"}, {"X-Error-Code": "RepoNotFound"})
            try:
                with stub.lock:
                    result = fn()
            except Refused as e:
                return self._error(e.status, e.body or {"error": str(e)}, e.headers)
            if isinstance(result, tuple):
                return self._send(200, result[0], result[1], "application/octet-stream", self.command == "HEAD")
            return self._json(200, result)

        def do_POST(self):
            path = urlparse(self.path).path
            raw = self._body()
            if path == "/api/validate-yaml":  # create_commit asks before committing a README.md
                return self._run(lambda: stub.validate_yaml(json.loads(raw)), False)
            if path == "/api/repos/create":
                return self._run(lambda: stub.create_repo(json.loads(raw)), True)
            if m := re.fullmatch(r"/api/models/(.+?)/preupload/([^/]+)", path):
                return self._run(lambda: stub.preupload(m.group(1), json.loads(raw)), True)
            if m := re.fullmatch(r"/(.+?)\.git/info/lfs/objects/batch", path):
                return self._run(lambda: stub.lfs_batch(m.group(1), json.loads(raw)), True)
            if path == "/lfs-verify":
                return self._run(lambda: stub.lfs_verify(json.loads(raw)), True)
            if m := re.fullmatch(r"/api/models/(.+?)/commit/([^/]+)", path):
                lines = [json.loads(line) for line in raw.decode().splitlines() if line.strip()]
                return self._run(lambda: stub.commit(m.group(1), unquote(m.group(2)), lines), True)
            if m := re.fullmatch(r"/api/models/(.+?)/tag/([^/]+)", path):
                return self._run(lambda: stub.tag(m.group(1), unquote(m.group(2)), json.loads(raw)), True)
            if path == "/api/collections":
                return self._run(lambda: stub.create_collection(json.loads(raw)), True)
            if m := re.fullmatch(r"/api/collections/(.+)/items", path):
                return self._run(lambda: stub.add_item(m.group(1), json.loads(raw)), True)
            self._error(404, {"error": f"no endpoint {path}"})

        def do_PUT(self):
            path = urlparse(self.path).path
            if m := re.fullmatch(r"/lfs-objects/([0-9a-f]{64})", path):
                fault = stub.put_faults.pop(0) if stub.put_faults else None
                if m.group(1) in stub.broken_oids:
                    fault = ("status", 403)
                stub.lfs_puts += 1
                if fault and fault[0] == "reset":
                    self.rfile.read(min(1024, int(self.headers.get("Content-Length", 0))))
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                data = self._body()
                if fault and fault[0] == "status":
                    return self._error(fault[1], {"error": "injected failure"})
                if hashlib.sha256(data).hexdigest() != m.group(1):
                    return self._error(400, {"error": "sha256 mismatch"})
                with stub.lock:
                    stub.lfs[m.group(1)] = data
                return self._json(200, {})
            if m := re.fullmatch(r"/api/models/(.+?)/settings", path):
                raw = self._body()
                return self._run(lambda: stub.settings(m.group(1), json.loads(raw)), True)
            self._error(404, {"error": f"no endpoint {path}"})

        def do_DELETE(self):
            path = urlparse(self.path).path
            if m := re.fullmatch(r"/api/models/(.+?)/tag/([^/]+)", path):
                return self._run(lambda: stub.delete_tag(m.group(1), m.group(2)), True)
            self._error(404, {"error": f"no endpoint {path}"})

        def do_HEAD(self):
            self.do_GET()

        def do_GET(self):
            path = urlparse(self.path).path
            if path == "/api/models":  # list_models(author=...): the repositories this caller may see
                author = parse_qs(urlparse(self.path).query).get("author", [""])[0]
                signed_in = self.headers.get("Authorization") == f"Bearer {stub.token}"
                return self._run(lambda: [{"id": r, "modelId": r, "private": repo.private}
                                          for r, repo in sorted(stub.repos.items())
                                          if r.split("/")[0] == author and (signed_in or not repo.private)], False)
            if m := re.fullmatch(r"/api/models/(.+?)/refs", path):
                return self._run(lambda: stub.refs(m.group(1)), False, m.group(1))
            if m := re.fullmatch(r"/api/models/(.+?)/revision/([^/]+)", path):
                return self._run(lambda: stub.info(m.group(1), unquote(m.group(2))), False, m.group(1))
            if m := re.fullmatch(r"/api/models/(.+?)/tree/([^/]+)", path):
                return self._run(lambda: stub.tree(m.group(1), unquote(m.group(2))), False, m.group(1))
            if m := re.fullmatch(r"/api/collections/(.+)", path):
                return self._run(lambda: stub.collections.get(m.group(1)) or _missing(), False)
            if m := re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path):
                return self._run(lambda: stub.resolve(m.group(1), unquote(m.group(2)), unquote(m.group(3))), False,
                                 m.group(1))
            self._error(404, {"error": f"no endpoint {path}"})

    return Handler


def _missing():
    raise Refused(404, "not found")
