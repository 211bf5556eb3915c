"""The model families hubpub can build, listed here explicitly: a new family is a folder beside
these and one line below. Nothing registers itself on import."""

from __future__ import annotations

from types import MappingProxyType

from hubpub.families import convnext, convnext_v2, keras_file, vit
from hubpub.families.base import ArchConfig, Converter, DocText, Family

FAMILIES: MappingProxyType[str, Family] = MappingProxyType({f.name: f for f in (
    convnext.FAMILY,
    convnext_v2.FAMILY,
    keras_file.FAMILY,
    vit.FAMILY,
)})

__all__ = ["FAMILIES", "ArchConfig", "Converter", "DocText", "Family", "family_of"]


def family_of(arch: ArchConfig) -> Family:
    return FAMILIES[arch.family]
