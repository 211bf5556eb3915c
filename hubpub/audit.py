"""`hubpub audit DEST`: a published collection checked as a whole, as its users meet it, through the
destination's `Reader` (a directory, a bucket, Kaggle Models, the HF Hub).

Every artifact file (`.tar.gz`, `.keras`, `.tflite`, `.onnx`) against the sha256 published for it (the
`.sha256` beside it; on a hub, its folder's `hubpub.json`) and, given a key or a Sigstore identity, its
`.sig` and the signatures over a hub's unpacked files; every file gone whose proof is left; every doc's
(a hub's card's) `asset-path` and link into the collection; every Colab link's notebook in the
checkout; every link of the site. With `load`, one file of each kind and format is also loaded as its
users load it. Each file is downloaded once, streamed to disk and hashed there, then removed; docs and
pages are read in blocks, never whole, so memory does not grow with a file.
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
from hubpub.signing import SIGNED_CLAIM

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
          notebooks: Path | None = None, progress=lambda relative: None) -> AuditResult:
    """Check everything published at `dest`; the problems are in the result (never raised). A Colab link's
    notebook is looked for in `notebooks` (laid out `<destination>/<artifact>.ipynb`, as a build writes
    them), else in the `checkout`; given neither, where the publish recorded them (a demo's, in its
    build), else in the current folder."""
    if public_key is not None:  # before anything is read: one line naming the key file
        from hubpub.signing import read_public_key

        read_public_key(public_key)
    if notebooks is None and checkout is None:
        recorded = dest.publish_record().get("notebooks")
        notebooks, checkout = (Path(recorded) if isinstance(recorded, str) else None), Path(".")
    reader = dest.reader()
    try:
        return _audit(dest, reader, public_url=public_url, public_key=public_key, identity=identity, issuer=issuer,
                      load=load, colab=_Notebooks(checkout, notebooks), progress=progress)
    finally:
        reader.close()


@dataclass(frozen=True)
class _Notebooks:
    """Where a Colab link's notebook is looked for: `folder/<destination>/<artifact>.ipynb` (a build's
    notebooks), else the link's path in the `checkout`."""

    checkout: Path | None
    folder: Path | None

    def find(self, inside: str) -> tuple[Path | None, Path | None]:
        """(the notebook, if there; where it was looked for) of the path a Colab link names."""
        parts = inside.split("/")
        if ".." in parts or inside.startswith("/") or not inside.endswith(".ipynb"):
            return None, None  # never a file outside the folders it names
        if self.folder is not None:
            root, path = self.folder, self.folder / "/".join(parts[-2:])
        else:
            assert self.checkout is not None  # looked in only with a folder or a checkout (`_links`)
            root, path = self.checkout, self.checkout / inside
        return (path if path.is_file() else None), root


def _audit(dest, reader, *, public_url, public_key, identity, issuer, load, colab, progress) -> AuditResult:
    listing = reader.listing()
    if not listing:
        raise HubpubError(f"{dest}: nothing is published there")
    if not any(k.endswith(ARTIFACT_SUFFIXES) for k in listing):
        raise HubpubError(f"{dest}: holds no hubpub collection: none of its {len(listing)} files is an artifact "
                          f"file ({', '.join(ARTIFACT_SUFFIXES)}); give the folder or address a publish wrote to")
    docs: dict[str, _Scan] = {}  # a bucket's docs/, a hub's cards
    problems = [Problem(k, what) for k, what in sorted(getattr(reader, "strange", {}).items())]
    for relative in sorted(k for k in listing if (k.startswith("docs/") and k.endswith(".md"))
                           or (dest.is_hub and k.endswith("/README.md"))):
        try:
            with reader.local_copy(relative) as path:
                docs[relative] = _scan(path)
        except OSError as e:
            problems.append(Problem(relative, f"cannot be read: {e.strerror or e}"))
    if dest.is_hub:
        base, key_of = dest.own_url_base(), reader.key_of
    else:
        base = (public_url or _base_of(dest, docs, listing)).rstrip("/")
        prefix = urlsplit(base).path

        def key_of(url: str) -> str | None:
            return urlsplit(url).path.removeprefix(prefix).lstrip("/") if url.startswith(base + "/") else None
    result = AuditResult(str(dest), base, files=len(listing), problems=problems)
    signed = public_key is not None or (identity and issuer)
    claimed = [k for k, scan in docs.items() if scan.claims_signed]  # "Signed: each file ... has a signature"
    with tempfile.TemporaryDirectory(prefix="hubpub-audit-") as tmp:
        kept: dict[tuple[str, str], Path] = {}  # one file of each kind and format, for `load`
        beside: dict[str, Path] = {}  # the files a kept one reads beside it (`Format.companions`): where they go
        for relative in sorted(k for k in listing if k.endswith(ARTIFACT_SUFFIXES)):
            progress(relative)
            result.artifacts += 1
            try:
                with reader.local_copy(relative) as path:
                    result.problems += _check_file(reader, listing, relative, path)
                    if signed:
                        result.signatures += 1
                        result.problems += _check_signature(reader, listing, relative, path, public_key, identity,
                                                            issuer)
                    elif claimed and relative + ".sig" not in listing and not _in_signed_folder(relative, listing):
                        result.problems.append(Problem(relative, f"no signature (.sig missing), though {claimed[0]} "
                                                                 "says each file is signed"))
                    kind = ("feature-extractor" if FEATURE_EXTRACTOR.search(relative) else "classifier",
                            _suffix(relative))
                    if load and kind not in kept and kind[1] != ".onnx_data":  # loaded with its .onnx file
                        kept[kind] = Path(tmp) / str(len(kept)) / relative.replace("/", "__")  # a folder each
                        kept[kind].parent.mkdir()
                        shutil.copyfile(path, kept[kind])
                        beside |= _companions(relative, kept[kind], listing)
                    if relative in beside:
                        shutil.copyfile(path, beside.pop(relative))
            except OSError as e:
                result.problems.append(Problem(relative, f"cannot be read: {e.strerror or e}"))
        for relative, into in sorted(beside.items()):  # listed before the file that reads them
            try:
                with reader.local_copy(relative) as path:
                    shutil.copyfile(path, into)
            except OSError as e:
                result.problems.append(Problem(relative, f"cannot be read: {e.strerror or e}"))
        for relative in sorted(k for k in listing if k.endswith((".sig", ".sha256"))):  # a file gone, its proof left
            signed_file = relative.rsplit(".", 1)[0]
            if relative.rsplit("/", 1)[-1] not in FOLDER_SIGNATURES and signed_file not in listing:
                what = ("a folder stands where the file goes" if any(k.startswith(signed_file + "/") for k in listing)
                        else "missing")
                result.problems.append(Problem(signed_file, f"{what}, but its {relative[len(signed_file):]} is "
                                                            "published"))
        for folder, name in sorted(_folder_signatures(listing)) if signed else ():
            result.signatures += 1
            result.problems += _check_folder_signature(reader, folder, name, public_key, identity, issuer)
        for relative, scan in docs.items():
            result.problems += _check_doc(relative, scan, key_of, listing, colab, result, hub=dest.is_hub, base=base)
        for relative in sorted(k for k in listing if k.startswith("site/") and k.endswith(".html")):
            result.problems += _check_page(reader, relative, listing[relative], base, listing, result)
        for (_, suffix), path in sorted(kept.items()):
            progress(f"loading {path.name}")
            relative = path.name.replace("__", "/")
            problem = _load(path, suffix)
            result.problems += [Problem(relative, problem)] if problem else []
            result.loaded += [] if problem else [relative]
    if not signed:
        log.info("signatures not checked: give --public-key, or --identity and --issuer")
    return result


def _companions(relative: str, kept: Path, listing) -> dict[str, Path]:
    """{published name: its place beside `kept`} of the files the kept copy of `relative` reads beside it
    (ONNX's external data), those published; one that is not is the load's finding."""
    from hubpub.formats import FORMATS, FormatError

    folder = relative.rpartition("/")[0]
    for fmt in (f for f in FORMATS if relative.endswith(f.suffix)):
        try:
            names = fmt.companions(kept)
        except FormatError:  # the load says it
            return {}
        return {key: kept.parent / name for name in names if (key := f"{folder}/{name}".lstrip("/")) in listing}
    return {}


def _in_signed_folder(relative: str, listing) -> bool:
    """A hub's file under its folder's one signature (a Kaggle SavedModel's `saved_model.sig`)."""
    folder = relative.rpartition("/")[0]
    return any(f"{folder}/{name}" in listing for name in FOLDER_SIGNATURES)


# A doc is read in blocks, never whole: its URLs are collected as they pass, one block and the tail of
# the one before in memory (a URL longer than the tail is cut, and then reported as not published).
BLOCK = 1 << 20
URL_TAIL = 8192
MAX_LINKS = 10_000  # per doc: hubpub's docs have dozens; a doc with more is not one of them


@dataclass
class _Scan:
    urls: set[str] = field(default_factory=set)
    asset_paths: set[str] = field(default_factory=set)
    claims_signed: bool = False
    truncated: bool = False  # more than MAX_LINKS URLs


def _blocks(path: Path):
    """The file's text, decoded as UTF-8 (bad bytes replaced), `BLOCK` bytes at a time."""
    import codecs

    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    with open(path, "rb") as f:
        while block := f.read(BLOCK):
            yield decoder.decode(block)
    yield decoder.decode(b"", final=True)


def _scan(path: Path) -> _Scan:
    scan, tail = _Scan(), ""
    for text in _blocks(path):
        window, at_end = tail + text, not text
        for pattern, found in ((URL, scan.urls), (ASSET_PATH, scan.asset_paths)):
            for m in pattern.finditer(window):
                if m.end() < len(window) or at_end:  # one touching the block's end may go on in the next
                    found.add(m[1] if pattern is ASSET_PATH else m[0].rstrip(".,;"))
        scan.claims_signed = scan.claims_signed or bool(SIGNED_CLAIM.search(window))
        if len(scan.urls) > MAX_LINKS:
            scan.truncated = True
            break
        tail = window[-URL_TAIL:]
    return scan


def _suffix(relative: str) -> str:
    return next(s for s in ARTIFACT_SUFFIXES if relative.endswith(s))


def _base_of(dest, docs: dict[str, _Scan], listing: dict[str, int]) -> str:
    """The destination's own URL base, else the one its docs' asset-paths show (a directory)."""
    with contextlib.suppress(HubpubError):
        return dest.own_url_base()
    for scan in docs.values():
        for url in sorted(scan.asset_paths):
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
        with reader.local_copy(relative + ".sha256") as sidecar, open(sidecar, "rb") as f:
            return (f.read(1024).decode("utf-8", "replace").split() or [""])[0]  # `<digest>  <name>`
    folder, _, name = relative.rpartition("/")
    if f"{folder}/{MARKER}" not in listing:
        return None
    with reader.local_copy(f"{folder}/{MARKER}") as path, open(path, "rb") as f:
        import json

        try:  # a marker is a few hundred bytes
            marker = json.loads(f.read(1 << 20))
        except ValueError:
            return "its hubpub.json is not JSON"
        if not isinstance(marker, dict):
            return "its hubpub.json is not a JSON object"
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
    if not isinstance(expected, str) or not re.fullmatch(r"[0-9a-f]{64}", expected):
        return [Problem(relative, f"what is published as its sha256 is no digest (64 hex digits): "
                                  f"{str(expected)[:24]!r}")]
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


def _published(key: str, listing, *, hub: bool) -> bool:
    """A file; on a hub, also a folder (a repository or a variation) holding files."""
    return key in listing or (hub and any(k.startswith(key.rstrip("/") + "/") for k in listing))


def _check_doc(relative: str, scan: _Scan, key_of, listing, colab: _Notebooks, result, *, hub: bool,
               base: str) -> list[Problem]:
    problems = [Problem(relative, f"more than {MAX_LINKS:,} links; the rest not checked")] if scan.truncated else []
    for url in sorted(scan.asset_paths - {u for u in scan.urls if key_of(u) is not None}):
        problems.append(Problem(relative, f"asset-path {url}: not below {base}, where this collection is read from"))
    for url in sorted(scan.urls):
        if (key := key_of(url)) is not None:
            result.links += 1
            if ".." in key.split("/") or not _published(key, listing, hub=hub):
                kind = "asset-path" if url in scan.asset_paths else "link"
                problems.append(Problem(relative, f"{kind} {url}: not published"))
        elif url.startswith(COLAB) and (colab.checkout is not None or colab.folder is not None):
            result.links += 1
            # .../github/OWNER/REPO/blob/REF/PATH: the notebook at PATH in the repository's checkout
            parts = url.removeprefix(COLAB).split("/", 4)
            found, where = colab.find(parts[4]) if len(parts) == 5 else (None, None)
            if found is None:
                problems.append(Problem(relative, f"Colab link {url}: no such notebook in {where}" if where
                                        else f"Colab link {url}: not a notebook path of a repository"))
    return problems


class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.links: set[str] = set()

    def handle_starttag(self, tag, attrs):
        self.links.update(v for k, v in attrs if k in ("href", "src") and v)


# A page hubpub writes is some KiB; html.parser holds an unclosed tag or comment whole, so a page above
# this is reported unread.
MAX_PAGE_BYTES = 4 << 20


def _check_page(reader, relative: str, size: int, base: str, listing, result) -> list[Problem]:
    if size > MAX_PAGE_BYTES:
        return [Problem(relative, f"{size:,} bytes: larger than any page hubpub writes ({MAX_PAGE_BYTES:,}); "
                                  "its links were not read")]
    parser = _Links()
    try:
        with reader.local_copy(relative) as path:
            for text in _blocks(path):
                parser.feed(text)
    except OSError as e:
        return [Problem(relative, f"cannot be read: {e.strerror or e}")]
    problems = []
    for link in sorted(parser.links):
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

        return by_name("onnx").run_file(path, _images(224, 224))  # with its external data beside it
    if suffix == ".keras":
        import keras

        model = keras.saving.load_model(path)
        _, h, w, _ = model.inputs[0].shape
        return np.asarray(model(_images(h or 224, w or 224)))
    from hubpub.verify import run_layer

    return run_layer(str(path), _images(224, 224))
