"""Datasets a variant is trained on: their class count, label file and tfhub.dev id.

hubpub knows ImageNet-1k and ImageNet-21k (`hubpub/data/datasets.yaml`); a manifest declares any
other in its `datasets:` section, with a label file beside the manifest.
"""

from __future__ import annotations

from functools import cache

import yaml
from pydantic import BaseModel, ConfigDict, Field

from hubpub.resources import data_dir


class Dataset(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    title: str = Field(pattern=r"^[^\r\n]+$")
    classes: int = Field(gt=0)
    labels: str | None = Field(default=None, description="label file: one line per class, `<id>\\t<names>`")
    tfhub_id: str | None = Field(default=None, description="the docs' `dataset` metadata value, if tfhub.dev has one")
    classes_note: str | None = None


@cache
def builtin_datasets() -> dict[str, Dataset]:
    raw = yaml.safe_load((data_dir() / "datasets.yaml").read_text(encoding="utf-8"))
    return {key: Dataset.model_validate(value) for key, value in raw.items()}
