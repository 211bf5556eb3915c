"""ImageNet label files: `<synset>\\t<lemmas>` per line, line i = class i.

The lists ship in `hubpub/data/labels/`, generated once from timm's package data (a wheel is a zip: no
import of timm needed): `python -m hubpub.labels path/to/timm-*.whl hubpub/data/labels`.
"""

from __future__ import annotations

import sys
import zipfile
from pathlib import Path
from typing import cast

LABEL_FILES = {"imagenet-1k": "imagenet-1k.txt", "imagenet-21k": "imagenet-21k.txt"}
_SOURCES = {"imagenet-1k": "imagenet_synsets.txt", "imagenet-21k": "imagenet22k_synsets.txt"}
_LEMMAS = "imagenet_synset_to_lemma.txt"
_INFO = "timm/data/_info/"


def read_labels(path: Path) -> list[tuple[str, str]]:
    # Each line of these files holds one tab, so each split is a pair.
    return [cast(tuple[str, str], tuple(line.split("\t", 1))) for line in path.read_text(encoding="utf-8").splitlines()]


def generate_from_timm_wheel(wheel: Path, out_dir: Path) -> dict[str, Path]:
    with zipfile.ZipFile(wheel) as zf:
        lemmas = dict(line.split("\t", 1) for line in zf.read(_INFO + _LEMMAS).decode().splitlines())
        written = {}
        for dataset, source in _SOURCES.items():
            synsets = zf.read(_INFO + source).decode().split()
            lines = [f"{s}\t{lemmas[s]}" for s in synsets]
            path = out_dir / LABEL_FILES[dataset]
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("\n".join(lines) + "\n", encoding="utf-8")
            written[dataset] = path
    return written


if __name__ == "__main__":
    for dataset, path in generate_from_timm_wheel(Path(sys.argv[1]), Path(sys.argv[2])).items():
        print(dataset, path, sum(1 for _ in path.open()))
