"""The dist folder: where every file a build, the docs and the demo write lives. The one place that
knows these names."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Dist:
    """`dist/` and the paths of everything in it, for an artifact name (`<variant>` or `<variant>_fe`)."""

    root: Path

    def __post_init__(self):
        object.__setattr__(self, "root", Path(self.root))

    # The folders; `docs` is what `publish` uploads under `docs/` (the tfhub.dev tree is `docs/assets/docs/`),
    # `published` the demo's local destination.
    saved_models = property(lambda self: self.root / "saved_models")
    tars = property(lambda self: self.root / "tars")
    reports = property(lambda self: self.root / "reports")
    keras_files = property(lambda self: self.root / "keras")
    docs = property(lambda self: self.root / "docs")
    notebooks = property(lambda self: self.root / "notebooks")
    site = property(lambda self: self.root / "site")  # to open from here: downloads link to the files in dist/
    site_upload = property(lambda self: self.root / "site-upload")  # what publish uploads as site/
    # the `.sha256` files as a bucket or directory holds them: each names its file as published (`1.tar.gz`)
    published_sha256 = property(lambda self: self.root / "sha256-upload")
    litert_files = property(lambda self: self.root / "litert")
    demo = property(lambda self: self.root / "demo")
    published = property(lambda self: self.root / "published")
    build_report = property(lambda self: self.root / "build-report.json")

    def saved_model(self, artifact: str) -> Path:
        return self.saved_models / artifact

    def tarball(self, artifact: str) -> Path:
        return self.tars / f"{artifact}.tar.gz"

    def tarball_sha256(self, artifact: str) -> Path:
        return self.tars / f"{artifact}.tar.gz.sha256"

    def keras(self, artifact: str) -> Path:
        return self.keras_files / f"{artifact}.keras"

    def keras_sha256(self, artifact: str) -> Path:
        return self.keras_files / f"{artifact}.keras.sha256"

    def keras_layout_signature(self, artifact: str) -> Path:
        """The signature over the `.keras` file's members as a hub holds them, unzipped (HF's Keras layout)."""
        return self.keras_files / f"{artifact}.keras.layout.sig"

    def saved_model_files_signature(self, artifact: str) -> Path:
        """The signature over the SavedModel's files as a hub holds them, unpacked (a Kaggle variation)."""
        return self.tars / f"{artifact}.saved_model.sig"

    def litert(self, artifact: str, fmt: str) -> Path:
        return self.litert_files / f"{artifact}.{fmt}.tflite"

    def litert_labels(self, artifact: str) -> Path:
        """A classifier's class names, published beside its LiteRT files."""
        return self.litert_files / f"{artifact}.labels.txt"

    def format_file(self, fmt: str, artifact: str, suffix: str) -> Path:
        """A file of a format of the format seam (`hubpub.formats`): `<fmt>/<artifact><suffix>`."""
        return self.root / fmt / f"{artifact}{suffix}"

    def report(self, artifact: str) -> Path:
        return self.reports / f"{artifact}.json"

    def eval_report(self, artifact: str) -> Path:
        return self.reports / f"{artifact}.eval.json"

    def parity_report(self, variant: str) -> Path:
        return self.reports / f"{variant}.parity.json"

    def relative(self, path: Path) -> str:
        return Path(path).relative_to(self.root).as_posix()

    def temp_dirs(self) -> tuple[Path, ...]:
        """Where an interrupted build can leave temp files beside the final names: each folder of dist/."""
        return tuple(sorted(p for p in self.root.iterdir() if p.is_dir())) if self.root.is_dir() else ()
