"""Checkpoint reading and porting by declarative name rules."""

from hubpub.convert.port import PortReport, detect_layout, infer_architecture, official_tensors, port_weights
from hubpub.convert.readers import Checkpoint, read_checkpoint
from hubpub.convert.rules import HIERARCHICAL_RULES, ISOTROPIC_RULES, TIMM_NAMES, Rule, rules_for
from hubpub.convert.synthetic import RANDOM_WEIGHTS_KEY, official_shapes, random_checkpoint, save_checkpoint, to_timm

__all__ = [
    "Checkpoint",
    "HIERARCHICAL_RULES",
    "ISOTROPIC_RULES",
    "PortReport",
    "RANDOM_WEIGHTS_KEY",
    "Rule",
    "TIMM_NAMES",
    "detect_layout",
    "infer_architecture",
    "official_shapes",
    "official_tensors",
    "port_weights",
    "random_checkpoint",
    "read_checkpoint",
    "rules_for",
    "save_checkpoint",
    "to_timm",
]
