"""MkDocs hooks: the reference pages' tables are generated from the code at every build, so they cannot
drift from it. A page asks for one with a marker line, `<!-- generated: NAME -->`:

- `tolerances`: every constant of `hubpub/tolerances.py`, with the comment above it;
- `manifest-schema`: every section of the manifest, from its JSON Schema (the pydantic models);
- `errors`: every `HubpubError` subclass of `hubpub/errors.py`, with its docstring;
- `benchmarks`: the results table, from `benchmarks/results/*.json` (`benchmarks/report.py`).
"""

from __future__ import annotations

import ast
import importlib.util
import json
import re
from pathlib import Path

ROOT = Path(__file__).parent
MARKER = re.compile(r"^<!-- generated: ([a-z-]+) -->$", re.M)


def tolerances_table() -> str:
    path = ROOT / "hubpub" / "tolerances.py"
    source = path.read_text()
    lines = source.splitlines()
    rows = ["| name | value | what it compares |", "|---|---|---|"]
    for node in ast.parse(source).body:
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)):
            continue
        name = node.targets[0].id
        if not name.isupper():
            continue
        comment, i = [], node.lineno - 2
        while i >= 0 and lines[i].startswith("#"):
            comment.insert(0, lines[i].lstrip("# "))
            i -= 1
        value = ast.get_source_segment(source, node.value)
        rows.append(f"| `{name}` | {value} | {' '.join(comment).replace('|', '&#124;')} |")
    return "\n".join(rows)


def _type(prop: dict) -> str:
    if "$ref" in prop:
        name = prop["$ref"].rsplit("/", 1)[1]
        return f"[{name}](#{name.lower()})"
    if "anyOf" in prop:
        kinds = [_type(p) for p in prop["anyOf"] if p.get("type") != "null"]
        optional = any(p.get("type") == "null" for p in prop["anyOf"])
        return " or ".join(kinds) + (" or null" if optional else "")
    if "const" in prop:
        return f"`{json.dumps(prop['const'])}`"
    if "enum" in prop:
        return "one of " + ", ".join(f"`{json.dumps(v)}`" for v in prop["enum"])
    kind = prop.get("type", "any")
    if kind == "array":
        return f"list of {_type(prop.get('items', {}))}"
    if kind == "object":
        values = prop.get("additionalProperties")
        if not values and prop.get("patternProperties"):
            values = next(iter(prop["patternProperties"].values()))
        return f"mapping of {_type(values)}" if isinstance(values, dict) and values else "mapping"
    limits = [f"{word} {prop[key]}" for key, word in (("exclusiveMinimum", ">"), ("minimum", ">="),
                                                       ("maximum", "<="), ("minLength", "length >="),
                                                       ("maxLength", "length <=")) if key in prop]
    if "pattern" in prop:
        limits.append(f"matching `{prop['pattern']}`")
    return kind + (f" ({', '.join(limits)})" if limits else "")


def _section(title: str, anchor: str, schema: dict) -> list[str]:
    out = [f"### {title} {{#{anchor}}}", ""]
    if schema.get("description"):
        out += [" ".join(schema["description"].split()), ""]
    required = set(schema.get("required", ()))
    out += ["| field | type | default | what it is |", "|---|---|---|---|"]
    for field, prop in schema.get("properties", {}).items():
        default = "required" if field in required else (f"`{json.dumps(prop['default'])}`" if "default" in prop
                                                        else "")
        text = prop.get("description", "").replace("|", "&#124;").replace("\n", " ")
        out.append(f"| `{field}` | {_type(prop).replace('|', '&#124;')} | {default} | {text} |")
    return out + [""]


def manifest_schema_tables() -> str:
    from hubpub.manifest.json_schema import manifest_schema

    schema = manifest_schema()
    out = _section("The manifest (top level)", "manifestmodel", schema)
    for name, definition in sorted(schema["$defs"].items()):
        out += _section(name, name.lower(), definition)
    return "\n".join(out)


def benchmarks_table() -> str:
    spec = importlib.util.spec_from_file_location("benchmarks_report", ROOT / "benchmarks" / "report.py")
    report = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(report)
    return report.render()


def errors_table() -> str:
    from hubpub import errors

    rows = ["| error | raised when |", "|---|---|"]
    for name, value in vars(errors).items():
        if isinstance(value, type) and issubclass(value, errors.HubpubError) and value is not errors.HubpubError:
            doc = " ".join((value.__doc__ or "").split("\n\n")[0].split())
            rows.append(f"| `{name}` | {doc} |")
    return "\n".join(rows)


GENERATORS = {"tolerances": tolerances_table, "errors": errors_table, "manifest-schema": manifest_schema_tables,
              "benchmarks": benchmarks_table}


def on_page_markdown(markdown: str, page, config, files) -> str:
    def replace(match: re.Match) -> str:
        return GENERATORS[match.group(1)]()

    return MARKER.sub(replace, markdown)
