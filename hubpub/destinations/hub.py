"""What the model hubs where TF-Hub's models live now share: Kaggle Models (`kaggle.py`) and the Hugging
Face Hub (`hf.py`).

What both share: the built artifacts a publish takes (each checked against its build record), and
the text of the docs rendered for that hub, cut into what a hub's page shows. Nothing is typed
twice: a hub's page is the model doc, its model card the collection doc.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import shutil
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from hubpub.destinations.base import ArtifactLinks, Destination
from hubpub.doctree import PUBLISHED_DOCS, collection_doc_path, model_doc_path
from hubpub.errors import PublishError
from hubpub.layout import Dist
from hubpub.record import BuildRecord

if TYPE_CHECKING:
    from hubpub.manifest.values import Artifact, Manifest


@dataclass(frozen=True)
class Built:
    """One artifact ready to publish: its record, files and links at the hub."""

    artifact: Artifact
    record: BuildRecord
    dist: Dist
    tarball: Path
    keras: Path | None
    links: ArtifactLinks
    doc: Path  # the model doc rendered for this hub


def built_artifacts(manifest: Manifest, dist: Path, dest: Destination, base: str, fix: str,
                    records: dict) -> list[Built]:
    """Every artifact built into `dist` whose files match its record, with its doc rendered for the hub
    `dest` (read from `base`); `fix` is the command that renders them. Raises before anything is uploaded."""
    layout, out = Dist(dist), []
    pub = manifest.publisher.handle
    for artifact in manifest.artifacts():
        tar = layout.tarball(artifact.name)
        record = records.get(artifact.name)
        if record is None or not tar.is_file():
            continue
        keras = layout.keras(artifact.name) if record.keras is not None else None
        if record.tarball.size != tar.stat().st_size or (keras is not None and (
                not keras.is_file() or record.keras.size != keras.stat().st_size)):
            raise PublishError(f"{tar}: does not match its build report; rebuild {artifact.name}")
        links = dest.links(base, pub, artifact, f"{PUBLISHED_DOCS}/{model_doc_path(pub, artifact)}")
        doc = layout.docs / "assets" / "docs" / model_doc_path(pub, artifact)
        if not doc.is_file():
            raise PublishError(f"{doc}: no rendered doc for {artifact.name}; nothing was uploaded. Run: {fix}")
        if f"<!-- asset-path: {links.asset_url} -->" not in doc.read_text(encoding="utf-8"):
            raise PublishError(f"{doc}: rendered for another destination (its asset-path is not {links.asset_url}); "
                               f"nothing was uploaded. Run: {fix}")
        out.append(Built(artifact, record, layout, tar, keras, links, doc))
    if not out:
        raise PublishError(f"{dist}: nothing to publish (no tarballs with build reports); run a build first")
    return out


def collection_doc(manifest: Manifest, dist: Path) -> Path:
    path = collection_doc_path(manifest.publisher.handle, manifest.collection.name)
    return Dist(dist).docs / "assets" / "docs" / path


def split_usage(body: str) -> tuple[str, str]:
    """(everything but the `## Usage` section, the `## Usage` section's content)."""
    parts = re.split(r"(?m)^(?=## )", body)
    usage = [p for p in parts if p.startswith("## Usage")]
    rest = [p for p in parts if not p.startswith("## Usage")]
    text = usage[0].split("\n", 1)[1] if usage else ""
    return "".join(rest).strip() + "\n", text.strip() + "\n"


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def extract_saved_model(tarball: Path, into: Path) -> Path:
    """The published SavedModel as a directory: exactly the tarball's members (built by hubpub and
    checked against its record, so it is trusted; extracted with tarfile's `data` filter still)."""
    into.mkdir(parents=True, exist_ok=True)
    with tarfile.open(tarball, "r:gz") as tar:
        tar.extractall(into, filter="data")
    return into


def tar_members(tarball: Path) -> tuple[tuple[str, int], ...]:
    """The tarball's files (name, size); read once per tarball and publish."""
    st = tarball.stat()
    return _tar_members(tarball, st.st_mtime_ns, st.st_size)


@functools.lru_cache(maxsize=256)
def _tar_members(tarball: Path, _mtime_ns: int, _size: int) -> tuple[tuple[str, int], ...]:
    with tarfile.open(tarball, "r:gz") as tar:
        return tuple((m.name.removeprefix("./"), m.size) for m in tar.getmembers() if m.isfile())


def saved_model_tree(b: Built, scratch: Path) -> Path:
    """The published SavedModel's files as a folder: the build's own SavedModel folder when it holds
    exactly the tarball's members (names and sizes: the tarball was packed from it), else the
    tarball extracted into `scratch`. Either way, what the tarball holds."""
    folder = b.dist.saved_model(b.artifact.name)
    if folder.is_dir() and files_below(folder) == tuple(sorted(tar_members(b.tarball))):
        return folder
    return extract_saved_model(b.tarball, scratch)


def link_tree(source: Path, into: Path) -> Path:
    """`source`'s files under `into`, hard-linked where the file system allows (no copy of the bytes)."""
    for path in sorted(source.rglob("*")):
        if path.is_file():
            target = into / path.relative_to(source)
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(path, target)
            except OSError:
                shutil.copyfile(path, target)
    return into


def files_below(root: Path) -> tuple[tuple[str, int], ...]:
    return tuple((p.relative_to(root).as_posix(), p.stat().st_size) for p in sorted(root.rglob("*")) if p.is_file())


def hub_error(what: str, error: Exception) -> PublishError:
    """One line for a client's failure: what was being done, and the first line the client said."""
    first = (str(error).strip().splitlines() or [type(error).__name__])[0]
    return PublishError(f"{what}: {type(error).__name__}: {first[:300]}")


def verify_download(dist: Path, saved, download, *, fine_tune: bool):
    """Download one published SavedModel as its users do (`download(folder)` gives its folder), then
    hub.KerasLayer on it, compared with its build record; the result names the page it came from."""
    import tempfile

    from hubpub.verify import read_reference, verify_handle

    if saved is None:
        raise PublishError("nothing published to verify")
    record = read_reference(Dist(dist).report(saved.artifact))
    with tempfile.TemporaryDirectory(prefix="hubpub-verify-hub-") as tmp:
        checked = verify_handle(str(download(Path(tmp))), record, fine_tune=fine_tune)
    return type(checked)(saved.public_url, checked.max_abs, checked.fine_tune)
