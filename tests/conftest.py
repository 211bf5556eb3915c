import os
from pathlib import Path

import pytest

os.environ.setdefault("HUBPUB_DISABLE_PROGRESS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def manifest_text() -> str:
    return (ROOT / "collection.yaml").read_text()
