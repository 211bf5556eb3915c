"""The manifest's JSON Schema, for editors: generated from the pydantic models of `schema.py` and the
families' architecture settings, and shipped as `hubpub/data/collection.schema.json` (`hubpub schema`
prints it). `hubpub validate` stays the authority: it also checks what a schema cannot say (a variant's
architecture exists, its classes match its dataset, a destination parses)."""

from __future__ import annotations

import json
import typing
from functools import reduce
from operator import or_

from pydantic import TypeAdapter

from hubpub.resources import _package_folder

SCHEMA_FILE = "collection.schema.json"


def _architecture_models() -> list[type]:
    """The pydantic models each family validates an `architectures` entry with: its config class, or the
    classes its config function returns (ConvNeXt: hierarchical or isotropic)."""
    from hubpub.families import FAMILIES

    models = []
    for family in FAMILIES.values():
        config = family.config
        if isinstance(config, type):
            models.append(config)
            continue
        returned = typing.get_type_hints(config)["return"]
        models += list(typing.get_args(returned)) or [returned]
    return models


def manifest_schema() -> dict:
    """The JSON Schema (draft 2020-12) of a schema 2 manifest."""
    from hubpub.manifest.schema import ManifestModel

    schema = ManifestModel.model_json_schema(mode="validation")
    arch = TypeAdapter(reduce(or_, _architecture_models())).json_schema(ref_template="#/$defs/{model}")
    schema["$defs"].update(arch.pop("$defs", {}))
    architectures = schema["properties"]["architectures"]
    (pattern,) = architectures["patternProperties"]
    architectures["patternProperties"] = {pattern: arch}
    architectures["additionalProperties"] = False
    # YAML keys such as `224:` reach a JSON validator as the strings they are in the file.
    schema["properties"]["eval_presets"]["propertyNames"] = {"pattern": "^[1-9][0-9]*$"}
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "title": "hubpub collection manifest",
            "description": "A hubpub manifest (collection.yaml); `hubpub validate` checks it in full.", **schema}


def render() -> str:
    return json.dumps(manifest_schema(), indent=2, sort_keys=True) + "\n"


def shipped() -> str:
    """The schema file shipped in the package (not `$HUBPUB_ASSETS`: the schema belongs to this code)."""
    return (_package_folder("data") / SCHEMA_FILE).read_text(encoding="utf-8")
