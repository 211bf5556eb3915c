"""The tfhub.dev docs tree: where each doc lives, in the tree and below a destination, and a doc's text as
a page shows it. Layout facts the publishing code needs, without the rendering."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hubpub.manifest.values import Artifact

# Where a published doc lives below the destination: `publish` uploads the rendered tree under `docs/`.
PUBLISHED_DOCS = "docs/assets/docs"


def doc_body(path: Path) -> str:
    """A rendered doc as a page shows it: without its tfhub.dev heading and metadata comments."""
    lines = path.read_text(encoding="utf-8").split("\n")
    kept = [line for line in lines[1:] if not re.fullmatch(r"<!-- [a-z-]+: .* -->", line)]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(kept)).strip() + "\n"


def lite_doc_name(artifact: Artifact, fmt: str) -> str:
    """The tfhub.dev model name of an artifact's LiteRT file: a name may hold slashes
    (`net_small_1k_224/int8`, as tfhub.dev's `keras-ocr/float16`)."""
    return f"{artifact.name}/{fmt}"


def model_doc_path(publisher: str, artifact: Artifact) -> str:
    """A model doc's path below `assets/docs/`."""
    return f"{publisher}/models/{artifact.name}/{artifact.version}.md"


def lite_doc_path(publisher: str, artifact: Artifact, fmt: str) -> str:
    """A Lite doc's path below `assets/docs/`: the format folder comes after the whole model name."""
    return f"{publisher}/models/{lite_doc_name(artifact, fmt)}/lite/{artifact.version}.md"


def collection_doc_path(publisher: str, collection: str) -> str:
    """The collection doc's path: tfhub.dev keeps one doc per collection, always `1.md`."""
    return f"{publisher}/collections/{collection}/1.md"
