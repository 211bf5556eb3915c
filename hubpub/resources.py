"""Files that ship inside the package: doc templates, ImageNet label lists, sample photos.

Found through `importlib.resources`, so an installed wheel has them as a source checkout does.
`$HUBPUB_ASSETS` points the data lookups at another folder of the same layout (`labels/`, `photos/`).
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

from hubpub.errors import HubpubError


def _package_folder(name: str) -> Path:
    folder = resources.files("hubpub").joinpath(name)
    # Wheels install as plain files; a zipped install would need extraction to hand paths to TensorFlow.
    if not isinstance(folder, Path):
        raise HubpubError(f"hubpub's {name}/ is not on the file system ({folder}); install hubpub unzipped")
    return folder


def data_dir() -> Path:
    """`hubpub/data/` (or `$HUBPUB_ASSETS`): `labels/*.txt`, `photos/*.jpg`, `vocabularies.yaml`."""
    override = os.environ.get("HUBPUB_ASSETS")
    return Path(override) if override else _package_folder("data")


def packaged_templates_dir() -> Path:
    """The templates hubpub ships: `model.md.j2`, `collection.md.j2`, `publisher.md.j2`."""
    return _package_folder("templates")


def photos() -> list[Path]:
    """The sample photos (CC0 / public domain, see `photos/README.md`)."""
    return sorted((data_dir() / "photos").glob("*.jpg"))
