"""The tfhub.dev docs validator's rules, enforced on a rendered `assets/docs/` tree."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from urllib.parse import urlparse

import yaml

from hubpub.errors import DocsError

PUBLISHER = r"[a-z\d-]+"
NAME = r"[\w.-]+(?:/[\w.-]+)*"
HEADINGS = {
    "module": re.compile(rf"# (?:Module|Placeholder|Lite|Tfjs|Coral) ({PUBLISHER})/({NAME})/(\d+)"),
    "collection": re.compile(rf"# Collection ({PUBLISHER})/({NAME})/(\d+)"),
    "publisher": re.compile(rf"# Publisher ({PUBLISHER})"),
}
META_LINE = re.compile(r"<!-- ([a-z-]+): (.+?) -->")
REPEATABLE = {"dataset", "language", "task", "network-architecture"}
TAGS = {
    "module": {"required": {"asset-path", "task", "fine-tunable", "format"},
               "optional": {"network-architecture", "colab", "dataset", "language", "license",
                            "interactive-visualizer"}},
    # A LiteRT file's doc (`# Lite`): its .tflite and the SavedModel it was converted from.
    "lite": {"required": {"asset-path", "parent-model"},
             "optional": {"task", "dataset", "language", "license", "network-architecture"}},
    "collection": {"required": {"task"}, "optional": {"dataset", "language", "network-architecture"}},
    "publisher": {"required": set(), "optional": set()},
}
KAGGLE_MODEL = re.compile(r"^https://www\.kaggle\.com/models/[a-z0-9_-]+/[a-z0-9-]+/tensorFlow2/[a-z0-9-]+/\d+$")
MODEL_LINK = re.compile(rf"https://tfhub\.dev/({PUBLISHER})/({NAME}?)(?:/(\d+))?(?=[\s)\]>\"'`]|$)")


@cache
def vocabularies() -> dict[str, frozenset[str]]:
    text = resources.files("hubpub.data").joinpath("vocabularies.yaml").read_text()
    return {k: frozenset(v) for k, v in yaml.safe_load(text).items()}


@dataclass(frozen=True)
class Doc:
    path: Path
    kind: str
    publisher: str
    name: str
    version: str | None
    metadata: dict[str, list[str]]
    body: str


def _doc_kind(rel: Path) -> tuple[str, str, str, str | None] | None:
    """(kind, publisher, name, version) expected from the path under assets/docs/."""
    parts = rel.parts
    if len(parts) == 2 and parts[1] == f"{parts[0]}.md":
        return "publisher", parts[0], parts[0], None
    if len(parts) >= 4 and parts[1] == "collections" and rel.suffix == ".md":
        return "collection", parts[0], "/".join(parts[2:-1]), rel.stem
    if len(parts) >= 4 and parts[1] == "models" and rel.suffix == ".md":
        return "module", parts[0], "/".join(parts[2:-1]), rel.stem
    if len(parts) >= 3 and rel.suffix == ".md":
        return "module", parts[0], "/".join(parts[1:-1]), rel.stem
    return None


def check_doc(path: Path, root: Path) -> tuple[Doc | None, list[str]]:
    """Parse one doc and return it with its problems, each naming the file and line."""
    rel = path.relative_to(root)
    problems: list[str] = []

    def bad(line: int | None, msg: str) -> None:
        problems.append(f"{rel}" + (f":{line}" if line else "") + f": {msg}")

    raw = path.read_bytes()
    if b"\r" in raw:
        bad(raw[: raw.index(b"\r")].count(b"\n") + 1, "CR (Windows) line ending; docs must use LF only")
        return None, problems
    try:
        lines = raw.decode("utf-8").split("\n")
    except UnicodeDecodeError as e:
        bad(None, f"not UTF-8: {e}")
        return None, problems
    expected = _doc_kind(rel)
    if expected is None:
        bad(None, "not a doc path: expected <publisher>/<publisher>.md, <publisher>/models/<name>/<version>.md "
                  "or <publisher>/collections/<name>/<version>.md")
        return None, problems
    kind, publisher, name, version = expected
    m = HEADINGS[kind].fullmatch(lines[0])
    if not m:
        hint = " (trailing whitespace)" if lines[0] != lines[0].rstrip() else ""
        heading = {"module": "# Module <publisher>/<name>/<version>", "collection":
                   "# Collection <publisher>/<name>/<version>", "publisher": "# Publisher <publisher>"}[kind]
        bad(1, f"first line {lines[0]!r} is not a valid heading '{heading}'{hint}")
        return None, problems
    got = m.groups()
    want = (publisher,) if kind == "publisher" else (publisher, name, version)
    if got != want:
        bad(1, f"heading names {'/'.join(got)} but the file's path says {'/'.join(w for w in want if w)}")

    # description: line 2, or line 3 after one blank line
    i = 1
    if i < len(lines) and lines[i] == "":
        i += 1
    if i >= len(lines) or not lines[i].strip() or lines[i].startswith(("#", "<!--")):
        bad(i + 1, "missing the one-paragraph description after the heading")
    while i < len(lines) and lines[i].strip() and not lines[i].startswith("<!--"):
        i += 1

    metadata: dict[str, list[str]] = {}
    meta_lines: dict[str, int] = {}
    while i < len(lines) and not lines[i].startswith("#"):
        line = lines[i]
        if line.strip():
            mm = META_LINE.fullmatch(line)
            if not mm:
                bad(i + 1, f"unexpected line found in the metadata block: {line[:60]!r} "
                           "(only '<!-- key: value -->' and blank lines may come before the first heading)")
            else:
                metadata.setdefault(mm.group(1), []).append(mm.group(2))
                meta_lines.setdefault(mm.group(1), i + 1)
        i += 1
    body = "\n".join(lines[i:])
    if kind == "module" and lines[0].startswith("# Lite "):
        kind = "lite"
    _check_metadata(kind, metadata, meta_lines, bad)
    return Doc(path, kind, publisher, name, version, metadata, body), problems


def _check_metadata(kind: str, metadata: dict[str, list[str]], where: dict[str, int], bad) -> None:
    vocab = vocabularies()
    allowed = TAGS[kind]["required"] | TAGS[kind]["optional"]
    for key in sorted(TAGS[kind]["required"] - set(metadata)):
        bad(None, f"missing required metadata '{key}' for a {kind} doc")
    for key, values in metadata.items():
        line = where[key]
        if key not in allowed:
            bad(line, f"metadata '{key}' is not allowed on a {kind} doc")
            continue
        if len(values) > 1 and key not in REPEATABLE:
            bad(line, f"metadata '{key}' appears {len(values)} times; only {', '.join(sorted(REPEATABLE))} may repeat")
        for value in values:
            if key in vocab and value not in vocab[key]:
                bad(line, f"unknown {key} {value!r}")
            elif key == "task" and not value.startswith(("image-", "text-", "audio-", "video-")):
                bad(line, f"task {value!r} must start with image-, text-, audio- or video-")
            elif key == "fine-tunable" and value not in ("true", "false"):
                bad(line, f"fine-tunable must be true or false, not {value!r}")
            elif key == "asset-path" and kind == "lite":
                if not value.endswith(".tflite") or urlparse(value).scheme not in ("https", "http", "gs"):
                    bad(line, f"asset-path {value!r} of a Lite doc must be a URL ending with .tflite")
            elif key == "parent-model" and not re.fullmatch(rf"{PUBLISHER}/{NAME}/\d+", value):
                bad(line, f"parent-model {value!r} must be <publisher>/<name>/<version>")
            elif key == "asset-path":
                url = urlparse(value)
                if KAGGLE_MODEL.match(value):  # where tfhub.dev's own handles now redirect; hub.KerasLayer loads it
                    continue
                if not value.endswith(".tar.gz"):
                    bad(line, f"asset-path {value!r} must end with .tar.gz (or be a Kaggle Models variation URL)")
                elif url.netloc.endswith("github.com") or url.netloc.endswith("githubusercontent.com"):
                    bad(line, f"asset-path {value!r} must not be on GitHub")
                elif url.scheme not in ("https", "http", "gs"):
                    bad(line, f"asset-path {value!r} is not a URL")
            elif key == "colab":
                url = urlparse(value)
                if url.scheme != "https" or url.netloc != "colab.research.google.com":
                    bad(line, f"colab {value!r} must be an https URL on colab.research.google.com")


def validate_docs(root: str | Path, *, shown_as: str | Path | None = None) -> list[Doc]:
    """Check every doc under `root` (an `assets/docs` folder, or a folder holding one).

    Raises `DocsError` listing every problem; returns the parsed docs when the tree is valid.
    Problems name files below `shown_as` when given: where a staged tree is about to go.
    """
    root = Path(root)
    if (root / "assets" / "docs").is_dir():
        root = root / "assets" / "docs"
    if not root.is_dir():
        raise DocsError(f"{root}: no docs folder")
    docs, problems = [], []
    for path in sorted(root.rglob("*")):
        if path.is_file():
            doc, found = check_doc(path, root)
            problems += found
            if doc:
                docs.append(doc)
    if not docs and not problems:
        raise DocsError(f"{root}: no docs found")
    modules = {(d.publisher, d.name, d.version) for d in docs if d.kind == "module"}
    module_names = {(p, n) for p, n, _ in modules}
    publishers = {d.publisher for d in docs if d.kind == "publisher"}
    for d in docs:
        if d.kind != "publisher" and d.publisher not in publishers:
            problems.append(f"{d.path.relative_to(root)}: publisher doc {d.publisher}/{d.publisher}.md is missing")
        if d.kind == "collection":
            links = MODEL_LINK.findall(d.body)
            if not links:
                problems.append(f"{d.path.relative_to(root)}: a collection must link at least one model "
                                "as https://tfhub.dev/<publisher>/<name>[/<version>]")
            for publisher, name, version in links:
                if (publisher, name, version) not in modules if version else (publisher, name) not in module_names:
                    problems.append(f"{d.path.relative_to(root)}: links https://tfhub.dev/{publisher}/{name}"
                                    f"{'/' + version if version else ''}, which has no model doc in the tree")
    if problems:
        shown = Path(shown_as) if shown_as is not None else root
        raise DocsError(f"{shown}: {len(problems)} problem(s) in the docs:", [f"{shown}/{p}" for p in problems])
    return docs
