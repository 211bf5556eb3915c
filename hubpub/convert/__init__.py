"""Checkpoint reading, and porting by each family's declarative name rules."""

from hubpub.convert.port import PortReport, official_tensors, port_weights, unported
from hubpub.convert.readers import Checkpoint, read_checkpoint
from hubpub.convert.rules import Rule
from hubpub.convert.synthetic import RANDOM_WEIGHTS_KEY, save_checkpoint

__all__ = [
    "Checkpoint",
    "PortReport",
    "RANDOM_WEIGHTS_KEY",
    "Rule",
    "official_tensors",
    "port_weights",
    "read_checkpoint",
    "save_checkpoint",
    "unported",
]
