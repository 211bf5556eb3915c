"""Reading a manifest: bounded, parsed, validated (every problem in one run, each with its line), then
resolved into the values of `values.py`. Each architecture is validated by the family it names, each
destination by `hubpub.destinations`."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import get_args
from urllib.parse import urljoin

import yaml
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from hubpub.datasets import builtin_datasets
from hubpub.errors import ManifestError
from hubpub.families import FAMILIES, ArchConfig
from hubpub.manifest.schema import Handle, ManifestModel, Sha256, _check_url
from hubpub.manifest.values import DatasetRef, Manifest, Variant, artifact_name
from hubpub.resources import data_dir

# Bounds on what a manifest may be, far above any real collection's (collection.yaml, the largest shipped):
# a YAML alias "bomb" is small text whose aliases expand to billions of nodes.
MAX_MANIFEST_BYTES = 4 * 2**20
MAX_MANIFEST_NODES = 200_000


def load_manifest(path: str | Path) -> Manifest:
    """Read, validate and resolve a manifest; raise `ManifestError` listing every problem."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_MANIFEST_BYTES:
            raise ManifestError(str(path), [f"{size:,} bytes; a manifest may be at most {MAX_MANIFEST_BYTES:,}"])
        text = path.read_bytes().decode("utf-8")
    except OSError as e:
        raise ManifestError(str(path), [f"cannot read the manifest: {e.strerror or e}"]) from None
    except UnicodeDecodeError as e:
        line = path.read_bytes()[: e.start].count(b"\n") + 1
        raise ManifestError(str(path), [f"line {line}: not UTF-8 text (byte 0x{e.object[e.start]:02x} at offset "
                                        f"{e.start}); save the manifest as UTF-8"]) from None
    return parse_manifest(text, path)


def parse_manifest(text: str, path: str | Path = "<manifest>") -> Manifest:
    path = Path(path)
    if len(text) > MAX_MANIFEST_BYTES:
        raise ManifestError(str(path), [f"{len(text):,} characters; a manifest may be at most {MAX_MANIFEST_BYTES:,}"])
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        _check_size(node, path)
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark else ""
        problem = getattr(e, "problem", None) or str(e)
        raise ManifestError(str(path), [f"{where}invalid YAML: {problem}"]) from None
    if not isinstance(data, dict):
        raise ManifestError(str(path), ["the manifest must be a YAML mapping at the top level"])
    lines = _line_index(node)

    if data.get("schema_version") == 1:
        raise ManifestError(str(path), [
            f"line {lines.get(('schema_version',), 1)}: schema_version 1 is no longer read: in schema 2 every "
            f"architecture names its model family ({', '.join(FAMILIES)}) with that family's settings (see the "
            "manifest guide, docs/guides/manifest.md); then set schema_version: 2"])
    problems: list[tuple[int, str]] = []
    model = None
    try:
        model = ManifestModel.model_validate(data)
    except ValidationError as e:
        problems += _validation_problems(e, (), lines)
    architectures = _architectures(data.get("architectures"), lines, problems)
    problems += _semantic_problems(data, lines)
    for i, folder in enumerate(model.litert.calibration if model else ()):
        loc = ("litert", "calibration", i)
        problems += [_problem(lines, loc, f"{_format_loc(loc)}: {p}") for p in _calibration_problems(path.parent,
                                                                                                      folder)]
    if model is not None:
        problems += _destination_problems(model, lines) + _name_problems(model, lines) + _format_problems(model, lines)
    if problems:
        # sorted by line so the output reads top to bottom; duplicates (same place, same words) once
        unique = sorted(set(problems), key=lambda p: (p[0], p[1]))
        raise ManifestError(str(path), [msg for _, msg in unique])
    assert model is not None
    return _resolve(model, architectures, path)


# What int8 calibration reads: the files Pillow opens as images, by their suffix.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def _calibration_problems(root: Path, folder: str) -> list[str]:
    """A calibration folder must exist (missing, int8 would calibrate on the sample photos only) and hold
    only images Pillow can read (else the build fails after every other stage has run)."""
    from PIL import Image, UnidentifiedImageError

    where = root / folder
    if not where.is_dir():
        return [f"no folder {folder!r} beside the manifest"]
    files = sorted(p for p in where.rglob("*") if p.is_file() and not p.name.startswith("."))
    if not files:
        return [f"folder {folder!r} holds no images"]
    out = []
    for f in files:
        if f.suffix.lower() not in IMAGE_SUFFIXES:
            out.append(f"{f.relative_to(root)} is not an image ({', '.join(IMAGE_SUFFIXES)}); move it out of the "
                       "calibration folder")
            continue
        try:
            with Image.open(f) as image:  # reads the header only
                image.size  # noqa: B018
        except (UnidentifiedImageError, OSError) as e:
            out.append(f"{f.relative_to(root)} is not an image Pillow can read: {type(e).__name__}")
    return out[:10] + ([f"... and {len(out) - 10} more"] if len(out) > 10 else [])


# The longest artifact name every place it goes takes: a file name is at most 255 bytes, and the longest
# one hubpub writes is `.<artifact>.dynamic_int8.tflite.sha256.<pid>.<thread>.tmp`; a destination with
# its own limit says it (`name_limit`: Hugging Face repository names, 96 characters). Kaggle documents
# no limit for a variation slug (only dataset slugs: 50), so none is guessed there.
MAX_FILE_ARTIFACT = 255 - len("..dynamic_int8.tflite.sha256.4194304.4194304.tmp")


def _name_problems(model: ManifestModel, lines: dict) -> list[tuple[int, str]]:
    """Variant names checked against the limits of every place their artifacts go: file names always, and
    the Hugging Face Hub when the manifest names it (`publish.hubs`); `publish --dest` checks its own
    before uploading, dry runs included."""
    from hubpub.destinations import parse

    out = []
    hubs = [parse(h) for h in model.publish.hubs]
    for i, v in enumerate(model.variants):
        longest = artifact_name(v.name, "feature-extractor")
        limits = [("a file name", len(longest.encode()), MAX_FILE_ARTIFACT)]
        limits += [(what, len(longest), limit) for limit, what in filter(None, (h.name_limit() for h in hubs))]
        for what, length, limit in limits:
            if length > limit:
                loc = ("variants", i, "name")
                out.append(_problem(lines, loc, f"{_format_loc(loc)}: {v.name[:40]!r}... makes the artifact name "
                                                f"{longest[:40]!r}... of {length} characters, too long for {what} "
                                                f"(at most {limit}; `_fe` included)"))
                break
    return out


def _format_problems(model: ManifestModel, lines: dict) -> list[tuple[int, str]]:
    from hubpub.formats import FORMATS

    known = [f.name for f in FORMATS]
    return [_problem(lines, ("formats", name), f"{_format_loc(('formats', name))}: unknown format {name!r}; known: "
                     f"{', '.join(known)} (the SavedModel is always built)")
            for name in model.formats if name not in known]


def _destination_problems(model: ManifestModel, lines: dict) -> list[tuple[int, str]]:
    """`publish.destination` is a bucket or a directory, each of `publish.hubs` a hub: as the destinations
    themselves read addresses."""
    from hubpub.destinations import forms, parse
    from hubpub.errors import PublishError

    out = []
    places: list[tuple[tuple[str | int, ...], str, bool]] = [
        (("publish", "destination"), model.publish.destination, False)]
    places += [(("publish", "hubs", i), hub, True) for i, hub in enumerate(model.publish.hubs)]
    for loc, text, hub in places:
        try:
            dest = parse(text)
        except PublishError as e:
            out.append(_problem(lines, loc, f"{_format_loc(loc)}: {e.message}"))
            continue
        if dest.is_hub != hub:
            said = (f"not a hub: {text!r}; give {forms(hub=True)}" if hub else
                    f"destination must be {forms(hub=False)}: {text!r} (a hub goes in publish.hubs, or use "
                    "`hubpub publish --dest`)")
            out.append(_problem(lines, loc, f"{_format_loc(loc)}: {said}"))
    return out


def _validation_problems(error: ValidationError, prefix: tuple, lines: dict) -> list[tuple[int, str]]:
    out = []
    for err in error.errors():
        loc = prefix + tuple(err["loc"])
        out.append(_problem(lines, loc, f"{_format_loc(loc)}: {_message(err)}"))
    return out


def _architectures(raw, lines: dict, problems: list) -> dict[str, ArchConfig]:
    """Each entry validated by the family it names; problems located like the rest of the manifest."""
    out: dict[str, ArchConfig] = {}
    for key, entry in (raw or {}).items() if isinstance(raw, dict) else ():
        if not isinstance(entry, dict):
            continue  # the schema reports it
        name = entry.get("family")
        family = FAMILIES.get(name) if isinstance(name, str) else None
        if family is None:
            loc = ("architectures", key, "family")
            said = (f"required field is missing; give one of {', '.join(sorted(FAMILIES))}" if "family" not in entry
                    else f"unknown family {entry.get('family')!r}; known: {', '.join(sorted(FAMILIES))}")
            problems.append(_problem(lines, loc, f"{_format_loc(loc)}: {said}"))
            continue
        try:
            out[key] = family.parse(entry)
        except ValidationError as e:
            problems += _validation_problems(e, ("architectures", key), lines)
    return out


def _resolve(m: ManifestModel, architectures: dict[str, ArchConfig], path: Path) -> Manifest:
    datasets = {key: DatasetRef(key, d.title, d.classes, path.parent / d.labels if d.labels else None, d.tfhub_id,
                                d.classes_note) for key, d in m.datasets.items()}
    builtin = {key: DatasetRef(key, d.title, d.classes, data_dir() / d.labels if d.labels else None, d.tfhub_id,
                               d.classes_note) for key, d in builtin_datasets().items()}
    datasets = builtin | datasets
    variants = []
    for spec in m.variants:
        url = spec.checkpoint.url
        if url is None:
            assert spec.checkpoint.path is not None  # the checks above: a url or a path, one of them
            url = str(path.parent / spec.checkpoint.path)
        elif m.checkpoint_base_url and "://" not in url:
            url = urljoin(m.checkpoint_base_url.rstrip("/") + "/", url)
        variants.append(
            Variant(
                name=spec.name,
                architecture_name=spec.architecture,
                architecture=architectures[spec.architecture],
                pretrain=datasets[spec.pretrain],
                finetune=datasets[spec.finetune] if spec.finetune else None,
                num_classes=spec.num_classes,
                resolution=spec.resolution,
                checkpoint_url=url,
                checkpoint_sha256=spec.checkpoint.sha256,
                top1=spec.top1,
                eval=spec.eval or m.eval_presets[spec.resolution],
                description=spec.description,
                license=spec.license or m.docs.license,
                version=m.collection.model_version,
            )
        )
        v = variants[-1]
        size = v.parameter_count("classifier")
        wanted = spec.litert if spec.litert is not None else size is not None and size <= m.litert.max_parameters
        if wanted:
            variants[-1] = dataclasses.replace(
                v, litert_formats=tuple(m.litert.formats), litert_min_cosine=m.litert.min_cosine,
                litert_calibration=tuple(path.parent / c for c in m.litert.calibration))
    return Manifest(
        path=path,
        publisher=m.publisher,
        collection=m.collection,
        docs=m.docs,
        notebooks=m.notebooks,
        publish=m.publish,
        architectures=architectures,
        variants=tuple(variants),
        require_pinned=m.require_pinned,
        # LiteRT has settings of its own (`litert`): off when they want it for no variant.
        formats_off=tuple(name for name, on in m.formats.items() if not on) + (
            () if any(v.litert_formats for v in variants) else ("litert",)),
        signing=m.signing.model_copy(update={k: getattr(m.signing, k) and str(path.parent / getattr(m.signing, k))
                                             for k in ("key", "public_key")}),
    )


def _check_size(node: yaml.Node | None, path: Path) -> None:
    """Count the nodes as aliases expand them, and stop at the bound (before anything walks them all)."""
    count, stack = 0, [node] if node is not None else []
    while stack:
        n = stack.pop()
        count += 1
        if count > MAX_MANIFEST_NODES:
            raise ManifestError(str(path), [
                f"more than {MAX_MANIFEST_NODES:,} YAML nodes once aliases are expanded (an alias bomb?); "
                "a manifest this large is not supported"])
        if isinstance(n, yaml.MappingNode):
            for k, v in n.value:
                stack += (k, v)
        elif isinstance(n, yaml.SequenceNode):
            stack += n.value


def _semantic_problems(data: dict, lines: dict) -> list[tuple[int, str]]:
    """Cross-field rules, checked on the raw data so they run even when types are wrong."""
    out: list[tuple[int, str]] = []
    archs = data.get("architectures")
    arch_names = set(archs) if isinstance(archs, dict) else set()
    presets = data.get("eval_presets")
    preset_res = set(presets) if isinstance(presets, dict) else set()
    base = data.get("checkpoint_base_url")
    declared = data.get("datasets")
    declared = declared if isinstance(declared, dict) else {}
    known_datasets = {k: d.classes for k, d in builtin_datasets().items()} | {
        k: d.get("classes") if isinstance(d, dict) else None for k, d in declared.items()}
    docs = data.get("docs")
    if data.get("notebooks") and isinstance(docs, dict) and docs.get("colab"):
        out.append(_problem(lines, ("docs", "colab"), "docs.colab: give either `notebooks` (hubpub writes the "
                            "notebooks and links them) or `docs.colab` (your own notebooks), not both"))
    variants = data.get("variants")
    if not isinstance(variants, list):
        return out
    seen: dict[str, int] = {}
    for i, v in enumerate(variants):
        if not isinstance(v, dict):
            continue
        at = f"variants[{i}]"
        name = v.get("name")
        if isinstance(name, str):
            if name in seen:
                out.append(_problem(lines, ("variants", i, "name"),
                                    f"{at}.name: duplicate variant name {name!r} "
                                    f"(first at variants[{seen[name]}])"))
            seen.setdefault(name, i)
        arch = v.get("architecture")
        if isinstance(arch, str) and arch_names and arch not in arch_names:
            out.append(_problem(lines, ("variants", i, "architecture"),
                                f"{at}.architecture: unknown architecture {arch!r}; "
                                f"known: {', '.join(sorted(arch_names))}"))
        for field in ("pretrain", "finetune"):
            if isinstance(v.get(field), str) and v[field] not in known_datasets:
                out.append(_problem(lines, ("variants", i, field),
                                    f"{at}.{field}: unknown dataset {v[field]!r}; known: "
                                    f"{', '.join(sorted(known_datasets))} (declare others under datasets:)"))
        dataset = v.get("finetune") or v.get("pretrain", "imagenet-1k")
        classes = v.get("num_classes")
        expected = known_datasets.get(dataset) if isinstance(dataset, str) else None
        if isinstance(classes, int) and expected and classes != expected:
            out.append(_problem(lines, ("variants", i, "num_classes"),
                                f"{at}.num_classes: {classes} classes on a {dataset} head; "
                                f"{dataset} has {expected}"))
        res = v.get("resolution")
        if v.get("eval") is None and isinstance(res, int) and res > 0 and res not in preset_res:
            out.append(_problem(lines, ("variants", i, "resolution"),
                                f"{at}.eval: no eval preprocessing for resolution {res}: "
                                f"add eval_presets.{res} or {at}.eval"))
        ckpt = v.get("checkpoint")
        url = ckpt.get("url") if isinstance(ckpt, dict) else None
        if isinstance(ckpt, dict) and ("url" in ckpt) == ("path" in ckpt):
            out.append(_problem(lines, ("variants", i, "checkpoint"),
                                f"{at}.checkpoint: give either url or path (a file beside the manifest)"))
        if isinstance(url, str):
            try:
                _check_url(url if "://" in url or not base else urljoin(str(base), url),
                           ("https", "http", "file"))
            except ValueError as e:
                hint = "" if base or "://" in url else " (relative, but no checkpoint_base_url)"
                out.append(_problem(lines, ("variants", i, "checkpoint", "url"),
                                    f"{at}.checkpoint.url: {e}{hint}"))
    return out


def _format_loc(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


def _message(err: ErrorDetails) -> str:
    kind, msg = err["type"], err["msg"]
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "missing":
        return "required field is missing"
    if kind == "string_pattern_mismatch":
        pattern = err.get("ctx", {}).get("pattern", "")
        if pattern == get_args(Handle)[1].pattern:
            return f"{err['input']!r} must be lowercase letters, digits and '-'"
        if pattern == get_args(Sha256)[1].pattern:
            return f"{err['input']!r} is not a 64-character lowercase hex sha256"
        if "\\r\\n" in pattern:
            return "must be a single non-empty line (no newlines)"
        return f"{err['input']!r} is not a valid name (letters, digits, '_', '.', '-')"
    if kind == "value_error":
        return msg.removeprefix("Value error, ")
    if "input" in err and not isinstance(err["input"], dict | list):
        return f"{msg} (got {err['input']!r})"
    return msg


def _line_index(node: yaml.Node | None) -> dict[tuple, int]:
    """Map each location tuple (`("variants", 3, "checkpoint", "url")`) to its 1-based line."""
    index: dict[tuple, int] = {}

    def walk(n: yaml.Node, loc: tuple) -> None:
        index[loc] = n.start_mark.line + 1
        if isinstance(n, yaml.MappingNode):
            for k, v in n.value:
                key = k.value
                if isinstance(k, yaml.ScalarNode) and k.tag.endswith(":int"):
                    key = int(key)
                index[loc + (key,)] = k.start_mark.line + 1
                walk(v, loc + (key,))
                index[loc + (key,)] = k.start_mark.line + 1
        elif isinstance(n, yaml.SequenceNode):
            for i, item in enumerate(n.value):
                walk(item, loc + (i,))

    if node is not None:
        walk(node, ())
    return index


def _problem(lines: dict[tuple, int], loc: tuple, message: str) -> tuple[int, str]:
    for end in range(len(loc), -1, -1):
        if loc[:end] in lines:
            line = lines[loc[:end]]
            return line, f"line {line}: {message}"
    return 0, message
