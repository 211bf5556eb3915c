"""The collection manifest (`collection.yaml`): loaded, validated, and turned into frozen values.

Every later stage receives these values; nothing is guessed from file names. Validation reports every
problem in one run, each with its place in the file (`variants[3].checkpoint.url, line 42`). `schema.py`
says what a manifest may hold, `load.py` reads one, `values.py` is what the stages get.
"""

from hubpub.manifest.load import load_manifest, parse_manifest
from hubpub.manifest.schema import KINDS, SCHEMA_VERSION, EvalPreprocessing, PublishSettings
from hubpub.manifest.values import Artifact, DatasetRef, Manifest, Variant, artifact_name, iter_selected

__all__ = ["KINDS", "SCHEMA_VERSION", "Artifact", "DatasetRef", "EvalPreprocessing", "Manifest", "PublishSettings",
           "Variant", "artifact_name", "iter_selected", "load_manifest", "parse_manifest"]
