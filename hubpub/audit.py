"""`hubpub audit DEST`: a published collection checked as a whole, as its users meet it, through the
destination's `Reader` (a directory, a bucket, Kaggle Models, the HF Hub).

Every artifact file (`.tar.gz`, `.keras`, `.tflite`, `.onnx`) against the sha256 published for it (the
`.sha256` beside it; on a hub, its folder's `hubpub.json`) and, given a key or a Sigstore identity, its
`.sig` and the signatures over a hub's unpacked files; every file gone whose proof is left; every doc's
(a hub's card's) `asset-path` and link into the collection; every Colab link's notebook in the
checkout; every link of the site. With `load`, one file of each kind and format is also loaded as its
users load it. Each file is downloaded once, streamed to disk and hashed there, then removed.
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

ARTIFACT_SUFFIXES = (".tar.gz", ".keras", ".tflite", ".onnx", ".onnx_data")  # ONNX external data: hashed, signed
COLAB = "https://colab.research.google.com/github/"
URL = re.compile(r"https?://[^\s)\"'<>\]]+")
ASSET_PATH = re.compile(r"<!--\s*asset-path:\s*(\S+)\s*-->")
# a feature extractor's files: `<variant>_fe/...` in a bucket, `<variant>_fe-litert/` on the HF Hub,
# `tfLite/<variant>-fe/` on Kaggle
FEATURE_EXTRACTOR = re.compile(r"[_-]fe(?=[/.-]|$)")


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
    try:
        return _audit(dest, reader, public_url=public_url, public_key=public_key, identity=identity, issuer=issuer,
                      load=load, checkout=checkout, progress=progress)
    finally:
        reader.close()


def _audit(dest, reader, *, public_url, public_key, identity, issuer, load, checkout, progress) -> AuditResult:
    listing = reader.listing()
    if not listing:
        raise HubpubError(f"{dest}: nothing is published there")
    docs = {}  # a bucket's docs/, a hub's cards
    for relative in sorted(k for k in listing if (k.startswith("docs/") and k.endswith(".md"))
                           or (dest.is_hub and k.endswith("/README.md"))):
        with reader.local_copy(relative) as path:
            docs[relative] = path.read_text(encoding="utf-8", errors="replace")
    if dest.is_hub:
        base, key_of = dest.own_url_base(), reader.key_of
    else:
        base = (public_url or _base_of(dest, docs, listing)).rstrip("/")
        prefix = urlsplit(base).path

        def key_of(url: str) -> str | None:
            return urlsplit(url).path.removeprefix(prefix).lstrip("/") if url.startswith(base + "/") else None
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
                kind = ("feature-extractor" if FEATURE_EXTRACTOR.search(relative) else "classifier", _suffix(relative))
                if load and kind not in kept and kind[1] != ".onnx_data":  # loaded with its .onnx file
                    kept[kind] = Path(tmp) / relative.replace("/", "__")
                    shutil.copyfile(path, kept[kind])
        for relative in sorted(k for k in listing if k.endswith((".sig", ".sha256"))):  # a file gone, its proof left
            signed_file = relative.rsplit(".", 1)[0]
            if relative.rsplit("/", 1)[-1] not in FOLDER_SIGNATURES and signed_file not in listing:
                result.problems.append(Problem(signed_file, f"missing, but its {relative[len(signed_file):]} is "
                                                            "published"))
        for folder, name in sorted(_folder_signatures(listing)) if signed else ():
            result.signatures += 1
            result.problems += _check_folder_signature(reader, folder, name, public_key, identity, issuer)
        for relative, text in docs.items():
            result.problems += _check_doc(relative, text, key_of, listing, checkout, result)
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


# Signatures over a folder's files, as a hub holds them unpacked (`hubpub.destinations`): the HF Hub's
# Keras layout, a Kaggle variation's SavedModel.
FOLDER_SIGNATURES = ("model.sig", "saved_model.sig")
MARKER = "hubpub.json"


def _folder_signatures(listing: dict[str, int]) -> list[tuple[str, str]]:
    return [(k.rsplit("/", 1)[0], k.rsplit("/", 1)[1]) for k in listing
            if "/" in k and k.rsplit("/", 1)[1] in FOLDER_SIGNATURES]


def _expected_sha256(reader, listing: dict[str, int], relative: str) -> str | None:
    """What the publisher says the file's sha256 is: the `.sha256` beside it (a bucket, a directory), or
    the `hubpub.json` of its folder (a hub: one digest, or one per LiteRT format)."""
    if relative + ".sha256" in listing:
        with reader.local_copy(relative + ".sha256") as sidecar:
            return (sidecar.read_text(encoding="utf-8", errors="replace").split() or [""])[0]
    folder, _, name = relative.rpartition("/")
    if f"{folder}/{MARKER}" not in listing:
        return None
    with reader.local_copy(f"{folder}/{MARKER}") as path:
        import json

        marker = json.loads(path.read_text(encoding="utf-8"))
    digests = marker.get("files") or marker.get("sha256")
    if isinstance(digests, dict):  # LiteRT: <artifact>.<format>.tflite
        return digests.get(name.removesuffix(".tflite").rsplit(".", 1)[-1])
    if marker.get("format") == "saved_model_2":  # the variation holds the SavedModel unpacked, not the tarball
        return None
    return digests


def _check_folder_signature(reader, folder: str, name: str, public_key, identity, issuer) -> list[Problem]:
    from hubpub.signing import SignatureError, verify

    with reader.local_folder(folder) as path:
        try:
            verify(path, path / name, public_key=public_key, identity=identity, issuer=issuer,
                   shown_as=f"{folder}/{name}", only_signed=True)
        except SignatureError as e:
            return [Problem(f"{folder}/{name}", str(e).removeprefix(f"{folder}/{name}: "))]
    return []


def _check_file(reader, listing: dict[str, int], relative: str, path: Path) -> list[Problem]:
    expected = _expected_sha256(reader, listing, relative)
    if expected is None:
        folder, _, _ = relative.rpartition("/")
        if f"{folder}/{MARKER}" in listing:
            return []  # a hub's SavedModel variation: its files are checked by their folder's signature
        return [Problem(relative, "no .sha256 beside it")]
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    if digest.hexdigest() != expected:
        return [Problem(relative, f"sha256 {digest.hexdigest()[:12]}... is not the one published for it "
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


def _published(key: str, listing) -> bool:
    """A file, or a folder (a hub's repository or variation) holding files."""
    return key in listing or any(k.startswith(key.rstrip("/") + "/") for k in listing)


def _check_doc(relative: str, text: str, key_of, listing, checkout: Path | None, result) -> list[Problem]:
    problems = []
    for url in sorted(set(URL.findall(text))):
        url = url.rstrip(".,;")
        if (key := key_of(url)) is not None:
            result.links += 1
            if not _published(key, listing):
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

        from hubpub.formats.litert import run

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
