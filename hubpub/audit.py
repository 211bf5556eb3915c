"""`hubpub audit DEST`: a published collection checked as a whole, as its users meet it.

Every artifact file (`<artifact>/<version>.tar.gz`, `.keras`, `.tflite`, `.onnx`) against its `.sha256`
and, given a key or a Sigstore identity, its `.sig`; every doc's `asset-path` and every link into the
collection; every Colab link's notebook in the checkout; every link of the site. With `load`, one file
of each kind and format is also loaded as its users load it. Each file is downloaded once, streamed to
a temp file and hashed from there, then removed (a directory's files are read where they are).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import posixpath
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np

from hubpub.errors import HubpubError

log = logging.getLogger(__name__)

ARTIFACT_SUFFIXES = (".tar.gz", ".keras", ".tflite", ".onnx")
COLAB = "https://colab.research.google.com/github/"
URL = re.compile(r"https?://[^\s)\"'<>\]]+")
ASSET_PATH = re.compile(r"<!--\s*asset-path:\s*(\S+)\s*-->")


@dataclass(frozen=True)
class Problem:
    file: str  # relative to the destination's root
    what: str


@dataclass
class AuditResult:
    destination: str
    base: str  # the URL the docs address the collection by
    files: int = 0
    artifacts: int = 0
    signatures: int = 0  # checked
    links: int = 0  # checked
    loaded: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)


def audit(dest, *, public_url: str | None = None, public_key: Path | None = None, identity: str | None = None,
          issuer: str | None = None, load: bool = False, checkout: Path | None = None,
          progress=lambda relative: None) -> AuditResult:
    """Check everything published at `dest`; the problems are in the result (never raised)."""
    reader = dest.reader()
    listing = reader.listing()
    if not listing:
        raise HubpubError(f"{dest}: nothing is published there")
    docs = {}
    for relative in sorted(k for k in listing if k.startswith("docs/") and k.endswith(".md")):
        with reader.local_copy(relative) as path:
            docs[relative] = path.read_text(encoding="utf-8", errors="replace")
    base = (public_url or _base_of(dest, docs, listing)).rstrip("/")
    result = AuditResult(str(dest), base, files=len(listing))
    signed = public_key is not None or (identity and issuer)
    with tempfile.TemporaryDirectory(prefix="hubpub-audit-") as tmp:
        kept: dict[tuple[str, str], Path] = {}  # one file of each kind and format, for `load`
        for relative in sorted(k for k in listing if k.endswith(ARTIFACT_SUFFIXES)):
            progress(relative)
            result.artifacts += 1
            with reader.local_copy(relative) as path:
                result.problems += _check_file(reader, listing, relative, path)
                if signed:
                    result.signatures += 1
                    result.problems += _check_signature(reader, listing, relative, path, public_key, identity,
                                                        issuer)
                kind = ("feature-extractor" if relative.split("/")[0].endswith("_fe") else "classifier",
                        _suffix(relative))
                if load and kind not in kept:
                    kept[kind] = Path(tmp) / relative.replace("/", "__")
                    shutil.copyfile(path, kept[kind])
        for relative, text in docs.items():
            result.problems += _check_doc(relative, text, base, listing, checkout, result)
        for relative in sorted(k for k in listing if k.startswith("site/") and k.endswith(".html")):
            with reader.local_copy(relative) as path:
                page = path.read_text(encoding="utf-8", errors="replace")
            result.problems += _check_page(relative, page, base, listing, result)
        for (_, suffix), path in sorted(kept.items()):
            progress(f"loading {path.name}")
            relative = path.name.replace("__", "/")
            problem = _load(path, suffix)
            result.problems += [Problem(relative, problem)] if problem else []
            result.loaded += [] if problem else [relative]
    if not signed:
        log.info("signatures not checked: give --public-key, or --identity and --issuer")
    return result


def _suffix(relative: str) -> str:
    return next(s for s in ARTIFACT_SUFFIXES if relative.endswith(s))


def _base_of(dest, docs: dict[str, str], listing: dict[str, int]) -> str:
    """The destination's own URL base, else the one its docs' asset-paths show (a directory)."""
    with contextlib.suppress(HubpubError):
        return dest.own_url_base()
    for text in docs.values():
        for url in ASSET_PATH.findall(text):
            for relative in listing:
                if relative.endswith(ARTIFACT_SUFFIXES) and url.endswith("/" + relative):
                    return url[: -len(relative) - 1]
    raise HubpubError(f"{dest}: cannot tell the URL its docs address it by; give --public-url")


def _check_file(reader, listing: dict[str, int], relative: str, path: Path) -> list[Problem]:
    if relative + ".sha256" not in listing:
        return [Problem(relative, "no .sha256 beside it")]
    with reader.local_copy(relative + ".sha256") as sidecar:
        expected = (sidecar.read_text(encoding="utf-8", errors="replace").split() or [""])[0]
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    if digest.hexdigest() != expected:
        return [Problem(relative, f"sha256 {digest.hexdigest()[:12]}... does not match its .sha256 "
                                  f"({expected[:12]}...)")]
    return []


def _check_signature(reader, listing, relative: str, path: Path, public_key, identity, issuer) -> list[Problem]:
    from hubpub.signing import SignatureError, verify

    if relative + ".sig" not in listing:
        return [Problem(relative, "no signature (.sig missing)")]
    with reader.local_copy(relative + ".sig") as sig:
        try:
            verify(path, sig, public_key=public_key, identity=identity, issuer=issuer, shown_as=relative)
        except SignatureError as e:
            return [Problem(relative, str(e).removeprefix(f"{relative}: "))]
    return []


def _check_doc(relative: str, text: str, base: str, listing, checkout: Path | None, result) -> list[Problem]:
    problems = []
    for url in sorted(set(URL.findall(text))):
        url = url.rstrip(".,;")
        if url.startswith(base + "/"):
            result.links += 1
            key = urlsplit(url).path.removeprefix(urlsplit(base).path).lstrip("/")
            if key not in listing:
                kind = "asset-path" if f"asset-path: {url}" in text else "link"
                problems.append(Problem(relative, f"{kind} {url}: not published"))
        elif url.startswith(COLAB) and checkout is not None:
            result.links += 1
            # .../github/OWNER/REPO/blob/REF/PATH: the notebook at PATH in the repository's checkout
            parts = url.removeprefix(COLAB).split("/", 4)
            notebook = checkout / parts[4] if len(parts) == 5 else None
            if notebook is None or not notebook.is_file():
                problems.append(Problem(relative, f"Colab link {url}: no such notebook in {checkout}"))
    return problems


class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.links: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.links += [v for k, v in attrs if k in ("href", "src") and v]


def _check_page(relative: str, page: str, base: str, listing, result) -> list[Problem]:
    parser = _Links()
    parser.feed(page)
    problems = []
    for link in sorted(set(parser.links)):
        target = urlsplit(link)
        if link.startswith("#") or target.scheme in ("mailto", "data", "javascript"):
            continue
        if target.scheme:  # absolute: ours if under the base, else someone else's page
            if not link.startswith(base + "/"):
                continue
            key = target.path.removeprefix(urlsplit(base).path).lstrip("/")
        else:
            key = posixpath.normpath(posixpath.join(posixpath.dirname(relative), target.path))
        result.links += 1
        if key.endswith("/") or key == ".":
            key = posixpath.join(key, "index.html")
        if key not in listing:
            problems.append(Problem(relative, f"link {link}: not published"))
    return problems


def _load(path: Path, suffix: str) -> str | None:
    """None if the file loads as its users load it and gives finite outputs; else why not."""
    try:
        outputs = _run(path, suffix)
    except Exception as e:  # noqa: BLE001 - whatever the loader raises is the finding
        return f"does not load: {type(e).__name__}: {(str(e).strip().splitlines() or [''])[0][:200]}"
    if not np.all(np.isfinite(outputs)):
        return "loads, but its outputs are not finite"
    return None


def _images(height: int, width: int) -> np.ndarray:
    return np.random.default_rng(0).random((1, height, width, 3), dtype=np.float32)


def _run(path: Path, suffix: str) -> np.ndarray:
    from hubpub._tf import import_tensorflow

    import_tensorflow()  # without its start-up chatter: the loaders below import it
    if suffix == ".tflite":
        from ai_edge_litert.interpreter import Interpreter

        from hubpub.litert import run

        data = path.read_bytes()
        _, h, w, _ = Interpreter(model_content=data).get_input_details()[0]["shape"]
        return run(data, _images(int(h), int(w)))
    if suffix == ".onnx":
        from hubpub.formats import by_name

        return by_name("onnx").run(path.read_bytes(), _images(224, 224))
    if suffix == ".keras":
        import keras

        model = keras.saving.load_model(path)
        _, h, w, _ = model.inputs[0].shape
        return np.asarray(model(_images(h or 224, w or 224)))
    from hubpub.verify import run_layer

    return run_layer(str(path), _images(224, 224))
