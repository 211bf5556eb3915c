"""The tfhub.dev docs validator's rules, enforced on a rendered `assets/docs/` tree.

Held against tensorflow/tfhub.dev's `tools/validator.py` (its last commit, 81fdea8f): the doc type comes
from the first line, as there, and each type (a "policy" there) fixes where the file may live, which
metadata it requires and allows, and what its `asset-path` must end with. The values of enumerable
tags are the ids of its `tags/*.yaml` (`hubpub/data/vocabularies.yaml`).

Where this is stricter than the original it says so: CR line endings are an error of their own (there a
heading with a trailing CR just fails to match), and one deliberate extension: a module doc rendered for
Kaggle Models has the Kaggle variation URL as its `asset-path` (where tfhub.dev handles now redirect,
and what `hub.KerasLayer` loads), which tools/validator.py would refuse for not ending in `.tar.gz`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import cast
from urllib.parse import urlparse

import yaml

from hubpub.errors import DocsError

PUBLISHER = r"[a-z\d-]+"
NAME = r"[\w.-]+(?:/[\w.-]+)*"
VERSION = r"\d+"
COLLECTION_NAME = r"(?:\w|-|/|&|;|\.)+"


@dataclass(frozen=True)
class Policy:
    """What one doc type may be, as tools/validator.py's ParsingPolicy subclasses say."""

    kind: str  # module, placeholder, lite, tfjs, coral, collection, publisher
    heading: re.Pattern
    required: frozenset[str]
    optional: frozenset[str]
    asset_suffix: str | None = None  # the asset-path's required ending, for model formats
    folder: str | None = None  # lite/, tfjs/, coral/: the format's folder after the model's name

    def allowed_paths(self, publisher: str, name: str | None, version: str | None) -> tuple[str, ...]:
        """Where the doc may live below assets/docs (`get_allowed_file_paths`)."""
        if self.kind == "publisher":
            return (f"{publisher}/{publisher}.md",)
        if self.kind == "collection":
            return (f"{publisher}/collections/{name}/1.md",)  # "Collections should only be version 1."
        tail = f"{self.folder}/{version}.md" if self.folder else f"{version}.md"
        return f"{publisher}/{name}/{tail}", f"{publisher}/models/{name}/{tail}"


def _heading(word: str, name: str = NAME) -> re.Pattern:
    return re.compile(rf"# {word} (?P<publisher>{PUBLISHER})/(?P<name>{name})/(?P<version>{VERSION})")


_MODEL_OPTIONAL = {"network-architecture", "colab", "dataset", "language", "license", "interactive-visualizer"}
POLICIES = (
    Policy("module", _heading("Module"), frozenset({"asset-path", "fine-tunable", "format", "task"}),
           frozenset(_MODEL_OPTIONAL), ".tar.gz"),
    Policy("placeholder", _heading("Placeholder"), frozenset({"task"}),
           frozenset(_MODEL_OPTIONAL - {"colab"} | {"fine-tunable"})),
    Policy("lite", _heading("Lite"), frozenset({"asset-path", "parent-model"}),
           frozenset({"colab", "interactive-visualizer"}), ".tflite", "lite"),
    Policy("tfjs", _heading("Tfjs"), frozenset({"asset-path", "parent-model"}),
           frozenset({"colab", "demo", "interactive-visualizer"}), ".tar.gz", "tfjs"),
    Policy("coral", _heading("Coral"), frozenset({"asset-path", "parent-model"}),
           frozenset({"colab", "interactive-visualizer"}), ".tflite", "coral"),
    Policy("publisher", re.compile(rf"# Publisher (?P<publisher>{PUBLISHER})"), frozenset(), frozenset()),
    Policy("collection", _heading("Collection", COLLECTION_NAME), frozenset({"task"}),
           frozenset({"dataset", "language", "network-architecture"})),
)
POLICY = {p.kind: p for p in POLICIES}
# tools/validator.py: `^<!--(?P<key>(\w|\s|-)+):(?P<value>.+)-->$`, key and value then stripped.
META_LINE = re.compile(r"<!--(?P<key>(?:\w|\s|-)+):(?P<value>.+)-->")
REPEATABLE = {"dataset", "language", "task", "network-architecture"}
SAVED_MODEL_FORMATS = ("hub", "saved_model", "saved_model_2")
URL_TAGS = {"colab": "colab.research.google.com", "demo": None}  # tags/colab.yaml, tags/demo.yaml
KAGGLE_MODEL = re.compile(r"^https://www\.kaggle\.com/models/[a-z0-9_-]+/[a-z0-9-]+/tensorFlow2/[a-z0-9-]+/\d+$")
# A model page linked from a collection: https://tfhub.dev/PUBLISHER/((tfjs|lite|coral)-model/)NAME(/VERSION)
MODEL_LINK = re.compile(rf"https://tfhub\.dev/(?P<publisher>{PUBLISHER})/(?P<prefix>(?:tfjs|lite|coral)-model/)?"
                        rf"(?P<name>[\w.-]+(?:/[\w.-]+)*)")
LINK_POLICY = {"lite-model/": "lite", "coral-model/": "coral", "tfjs-model/": "tfjs"}


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


def policy_of(first_line: str) -> tuple[Policy, re.Match] | None:
    for policy in POLICIES:
        if m := policy.heading.fullmatch(first_line.replace("&zwnj;", "")):
            return policy, m
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
    found = policy_of(lines[0])
    if found is None:
        hint = " (trailing whitespace)" if lines[0] != lines[0].rstrip() else ""
        bad(1, f"first line {lines[0]!r} is not a valid heading{hint}: '# Module <publisher>/<name>/<version>', "
               "'# Lite ...', '# Tfjs ...', '# Coral ...', '# Placeholder ...', '# Collection ...' or "
               "'# Publisher <publisher>'")
        return None, problems
    policy, m = found
    publisher, name, version = m.group("publisher"), m.groupdict().get("name"), m.groupdict().get("version")
    allowed = policy.allowed_paths(publisher, name, version)
    if rel.as_posix() not in allowed:
        bad(1, f"heading names {policy.kind} {'/'.join(x for x in (publisher, name, version) if x)}, whose doc "
               f"must be at {' or '.join(allowed)}")

    # description: line 2, or line 3 after one blank line; up to a blank line or a metadata comment
    i = 1
    if i < len(lines) and lines[i] == "":
        i += 1
    if i >= len(lines) or not lines[i] or lines[i].startswith("<!--"):
        bad(i + 1, "missing the one-paragraph description after the heading")
    while i < len(lines) and lines[i] and not lines[i].startswith("<!--"):
        i += 1

    metadata: dict[str, list[str]] = {}
    meta_lines: dict[str, int] = {}
    while i < len(lines) and not lines[i].startswith("#"):
        line = lines[i]
        if line and not (policy.kind == "publisher" and line.startswith("[![Icon URL]]")):
            mm = META_LINE.fullmatch(line)
            if not mm:
                bad(i + 1, f"unexpected line found in the metadata block: {line[:60]!r} "
                           "(only '<!-- key: value -->' and blank lines may come before the first heading)")
            else:
                key, value = mm.group("key").strip(), mm.group("value").strip()
                if value not in metadata.setdefault(key, []):  # a set there: a repeated same value is one
                    metadata[key].append(value)
                meta_lines.setdefault(key, i + 1)
        i += 1
    body = "\n".join(lines[i:])
    _check_metadata(policy, metadata, meta_lines, bad)
    # Every heading but the publisher's names its model or collection.
    return Doc(path, policy.kind, publisher, cast(str, name) if policy.kind != "publisher" else publisher, version,
               metadata, body), problems


def _check_metadata(policy: Policy, metadata: dict[str, list[str]], where: dict[str, int], bad) -> None:
    vocab = vocabularies()
    kind = policy.kind
    for key in sorted(policy.required - set(metadata)):
        bad(None, f"missing required metadata '{key}' for a {kind} doc")
    for key, values in metadata.items():
        line = where[key]
        if key not in policy.required | policy.optional:
            bad(line, f"metadata '{key}' is not allowed on a {kind} doc (allowed: "
                      f"{', '.join(sorted(policy.required | policy.optional)) or 'none'})")
            continue
        if len(values) > 1 and key not in REPEATABLE:
            bad(line, f"metadata '{key}' appears {len(values)} times; only {', '.join(sorted(REPEATABLE))} may repeat")
        for value in values:
            if key in vocab and value not in vocab[key]:
                bad(line, f"unknown {key} {value!r} (not an id of tfhub.dev's tags/{key.replace('-', '_')}.yaml)")
            elif key == "task" and not value.startswith(("image-", "text-", "audio-", "video-")):
                bad(line, f"task {value!r} must start with image-, text-, audio- or video-")
            elif key == "format" and value not in SAVED_MODEL_FORMATS:
                bad(line, f"format {value!r} must be one of {', '.join(SAVED_MODEL_FORMATS)}")
            elif key == "fine-tunable" and value not in ("true", "false"):
                bad(line, f"fine-tunable must be true or false, not {value!r}")
            elif key == "parent-model" and not re.fullmatch(rf"{PUBLISHER}/{NAME}/{VERSION}", value):
                bad(line, f"parent-model {value!r} must be <publisher>/<name>/<version>")
            elif key == "asset-path":
                _check_asset_path(policy, value, line, bad)
            elif key in URL_TAGS:
                url, host = urlparse(value), URL_TAGS[key]
                if url.scheme != "https" or not url.netloc or (host and url.netloc != host):
                    bad(line, f"{key} {value!r} must be an https URL" + (f" on {host}" if host else ""))


def _check_asset_path(policy: Policy, value: str, line: int, bad) -> None:
    url = urlparse(value)
    if policy.kind == "module" and KAGGLE_MODEL.match(value):
        return  # hubpub's one extension (module docstring): a Kaggle Models variation
    assert policy.asset_suffix is not None  # every policy that allows an asset-path names its ending
    if not value.endswith(policy.asset_suffix):
        bad(line, f"asset-path {value!r} of a {policy.kind} doc must end with {policy.asset_suffix}"
                  + (" (or be a Kaggle Models variation URL)" if policy.kind == "module" else ""))
    elif url.netloc in ("github.com", "www.github.com") or url.netloc.endswith("githubusercontent.com"):
        bad(line, f"asset-path {value!r} must not be on GitHub (its robots.txt forbids fetching it)")
    elif url.scheme not in ("https", "http", "gs") or not url.netloc:
        bad(line, f"asset-path {value!r} is not a URL")


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
    present = {p.relative_to(root).as_posix() for p in root.rglob("*.md")}
    for d in docs:
        rel = d.path.relative_to(root)
        if d.kind != "publisher" and f"{d.publisher}/{d.publisher}.md" not in present:
            problems.append(f"{rel}: publisher doc {d.publisher}/{d.publisher}.md is missing")
        if d.kind == "collection":
            problems += [f"{rel}: {p}" for p in _collection_links(d.body, present)]
    if problems:
        shown = Path(shown_as) if shown_as is not None else root
        raise DocsError(f"{shown}: {len(problems)} problem(s) in the docs:", [f"{shown}/{p}" for p in problems])
    return docs


def _collection_links(body: str, present: set[str]) -> list[str]:
    """A collection links at least one model page, and each linked model has its doc in the tree (a link
    without a version needs any version of it)."""
    links = list(MODEL_LINK.finditer(body))
    if not links:
        return ["a collection must link at least one model as https://tfhub.dev/<publisher>/<name>[/<version>]"]
    out = []
    for m in links:
        name, version = m.group("name"), "*"
        if trailing := re.search(rf"/({VERSION})$", name):
            version, name = trailing.group(1), name[: trailing.start()]
        policy = POLICY[LINK_POLICY.get(m.group("prefix") or "", "module")]
        paths = policy.allowed_paths(m.group("publisher"), name, version)
        pattern = [re.compile(re.escape(p).replace(r"\*", r"\d+")) for p in paths]
        if not any(rx.fullmatch(p) for rx in pattern for p in present):
            out.append(f"links {m.group(0)}, which has no doc in the tree (expected at {' or '.join(paths)})")
    return out
