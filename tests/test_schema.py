"""The manifest's JSON Schema: generated from the pydantic models, shipped in the package, printed by
`hubpub schema`, named by the shipped manifests, and in agreement with `hubpub validate`."""

import json
import re

import jsonschema
import pytest
import yaml
from click.testing import CliRunner

from hubpub.cli import cli
from hubpub.errors import ManifestError
from hubpub.manifest import parse_manifest
from hubpub.manifest.json_schema import SCHEMA_FILE, render, shipped
from tests.conftest import ROOT

MANIFESTS = ("collection.yaml", "convnext_v2.yaml", "vit.yaml")


def _validator() -> jsonschema.Draft202012Validator:
    schema = json.loads(shipped())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def _as_json(text: str):
    """The manifest as an editor's validator sees it: YAML read, then JSON's types (keys are strings)."""
    return json.loads(json.dumps(yaml.safe_load(text)))


def test_the_shipped_schema_is_the_generated_one():
    assert shipped() == render(), "regenerate it: hubpub.manifest.json_schema.render() > hubpub/data/" + SCHEMA_FILE


def test_hubpub_schema_prints_it():
    result = CliRunner().invoke(cli, ["schema"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == json.loads(shipped())


@pytest.mark.parametrize("name", MANIFESTS)
def test_the_shipped_manifests_name_the_schema_and_are_valid(name):
    text = (ROOT / name).read_text()
    first = text.splitlines()[0]
    assert first.startswith("# yaml-language-server: $schema=")
    assert (ROOT / first.split("$schema=", 1)[1]).read_text() == shipped()  # the path an editor resolves
    assert list(_validator().iter_errors(_as_json(text))) == []


def _schema_fields(instance) -> set[str]:
    """Every field the schema refuses, named as `hubpub validate` names it (`variants[1].top1`)."""
    fields = set()
    for error in _validator().iter_errors(instance):
        path = list(error.absolute_path)
        if error.validator == "additionalProperties":  # the unknown keys themselves
            extra = set(error.instance) - set(error.schema.get("properties", {}))
            fields |= {_loc([*path, key]) for key in extra}
        elif error.validator == "required":
            fields |= {_loc([*path, key]) for key in re.findall(r"'(\w+)' is a required", error.message)}
        else:
            fields.add(_loc(path))
    return fields


def _loc(parts) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _validate_fields(text: str) -> set[str]:
    with pytest.raises(ManifestError) as caught:
        parse_manifest(text)
    return {re.match(r"line \d+: ([^:]+):", p).group(1) for p in caught.value.problems}


def test_a_bad_manifest_fails_on_the_fields_validate_names():
    text = (ROOT / "collection.yaml").read_text()
    for old, new in [
        ("handle: hubpub", "handle: HubPub"),  # a pattern
        ("top1: 83.1", "top1: high"),  # a type
        ("num_classes: 1000, resolution: 224, top1: 83.8,", "resolution: 224, top1: 83.8,"),  # required
        ("top1: 82.1,", "top1: 82.1, colour: red,"),  # an unknown key
        ("resolution: 384, top1: 85.1", "resolution: 0, top1: 85.1"),  # a bound
    ]:
        assert old in text, old
        text = text.replace(old, new, 1)
    text += "\nextra_stuff: 1\n"
    named = _validate_fields(text)
    assert named == {"publisher.handle", "variants[1].top1", "variants[2].num_classes", "variants[0].colour",
                     "variants[3].resolution", "extra_stuff"}
    assert _schema_fields(_as_json(text)) == named
