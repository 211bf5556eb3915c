"""The offline demo (`hubpub demo`, `make demo`): a random-weight checkpoint in the official layout, the
collection pipeline for one variant (both kinds, usage notebooks executed), published to a local
directory, and one tarball got back over loopback HTTP with hub.KerasLayer and a fine-tuning step."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from hubpub.errors import HubpubError
from hubpub.layout import Dist
from hubpub.manifest import KINDS, Manifest

if TYPE_CHECKING:
    from hubpub.pipeline import CollectionResult

# The demo publishes to a local folder; its docs link to where `python -m http.server` serves it.
DEMO_PUBLIC_URL = "http://localhost:8000"


@dataclass(frozen=True)
class DemoResult:
    variant: str
    checkpoint: Path
    made_checkpoint: bool  # False: the one from an earlier run was reused
    collection: CollectionResult  # published and verified (with a fine-tuning step)


def run_demo(manifest: Manifest, out: Path, *, variant: str | None = None, progress=None,
             on_checkpoint: Callable[[Path, bool], None] = lambda path, made: None) -> DemoResult:
    """The demo for `variant` (default: the manifest's first); `on_checkpoint` hears of the checkpoint
    before the build starts."""
    from hubpub.pipeline import build_collection, demo_checkpoint

    v = manifest.variant(variant) if variant else manifest.variants[0]
    checkpoint, made = demo_checkpoint(v, out)
    on_checkpoint(checkpoint, made)
    dist = Dist(out)
    # Random-weight notebooks go to dist/, never into the checkout the manifest's `notebooks` names.
    result = build_collection(manifest, out, only=(v.name,), kinds=KINDS, checkpoints={v.name: str(checkpoint)},
                              publish_dest=str(dist.published), public_url=DEMO_PUBLIC_URL,
                              notebooks=dist.notebooks, execute=True, progress=progress, verify=True,
                              fine_tune=True)
    if result.summary.failed:
        raise HubpubError(f"the demo build failed: {', '.join(result.summary.failed)}")
    return DemoResult(v.name, checkpoint, made, result)
