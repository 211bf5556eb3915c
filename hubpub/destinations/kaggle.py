"""Publish a collection to Kaggle Models: `hubpub publish --dest kaggle://OWNER/MODEL`.

One Kaggle model for the collection (title, subtitle, card = the collection doc, provenance); per
artifact one variation under `tensorFlow2` holding the SavedModel (the tarball's members, so
`hub.KerasLayer` loads the variation's URL), and one for each format Kaggle has a framework for
(`keras`: the `.keras` file, `tfLite`: the LiteRT files, `onnx`), holding its files. Each
variation's overview and usage are the model doc's, its license the manifest's in Kaggle's names.

Files go up through `kagglehub.model_upload` (every file of the directory, sub-directories
included: a SavedModel's `variables/` is never dropped); metadata through the Kaggle SDK client that
kagglehub builds. Kaggle numbers versions itself, so each version also holds `hubpub.json`, which
names the artifact's sha256: publishing the same bytes again creates no version, other bytes need a
bumped `model_version` or `--force`. Everything is checked before the first upload.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from hubpub.destinations.base import ArtifactLinks, Destination, Outcome, PublishJob, PublishResult, Upload
from hubpub.destinations.hub import (
    Built,
    built_artifacts,
    collection_doc,
    files_below,
    link_tree,
    saved_model_tree,
    split_usage,
    tar_members,
)
from hubpub.destinations.kaggle_client import MARKER, KaggleApi, check_credentials, download_variation
from hubpub.destinations.links import tfhub_url
from hubpub.doctree import doc_body
from hubpub.errors import PublishError
from hubpub.extras import require
from hubpub.formats import FILE_FORMATS, FORMATS
from hubpub.signing import SUFFIX as SIGNATURE
from hubpub.signing import fresh_signature

if TYPE_CHECKING:
    from hubpub.manifest.values import Artifact, Manifest

log = logging.getLogger(__name__)

SAVED_MODEL_SIGNATURE = "saved_model.sig"  # over the SavedModel's files, as a variation holds them

KAGGLE_WEB = "https://www.kaggle.com/models"
# Kaggle's slug rules, as its CLI checks them (`_validate_slug_syntax`): owners may use underscores.
KAGGLE_OWNER = re.compile(r"^[a-z0-9]+(?:[_-][a-z0-9]+)*$")
KAGGLE_SLUG = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")


@dataclass(frozen=True)
class Kaggle(Destination):
    """`kaggle://OWNER/MODEL`: one Kaggle model for the collection, a variation per artifact and framework."""

    owner: str
    model: str
    title: ClassVar[str] = "Kaggle Models"
    form: ClassVar[str] = "kaggle://OWNER/MODEL"  # how its address is written
    is_hub: ClassVar[bool] = True
    extra: ClassVar[str] = "kaggle"

    @classmethod
    def parse(cls, text: str) -> Kaggle | None:
        if not text.startswith("kaggle://"):
            return None
        owner, _, model = text[9:].strip("/").partition("/")
        if not KAGGLE_OWNER.match(owner) or not KAGGLE_SLUG.match(model) or "/" in model:
            raise PublishError(f"{text!r}: a Kaggle destination is kaggle://OWNER/MODEL, both lowercase letters, "
                               "digits and single hyphens (the owner may use underscores)")
        return cls(owner, model)

    def __str__(self) -> str:
        return f"kaggle://{self.owner}/{self.model}"

    def own_url_base(self) -> str:
        return str(self)

    def links(self, base: str, publisher: str, artifact: Artifact, doc_path: str) -> ArtifactLinks:
        variation, version = kaggle_variation(artifact.name), artifact.version
        return ArtifactLinks(
            asset_url=f"{KAGGLE_WEB}/{self.owner}/{self.model}/tensorFlow2/{variation}/{version}",
            keras_url=f"{self.owner}/{self.model}/keras/{variation}/{version}", keras_source="kaggle",
            page_url=f"{KAGGLE_WEB}/{self.owner}/{self.model}/tensorFlow2/{variation}", doc_url=None,
            tfhub_url=tfhub_url(publisher, artifact),
            litert_prefix=f"{KAGGLE_WEB}/{self.owner}/{self.model}/tfLite/{variation}/{version}/{artifact.name}.",
            formats={f.name: f"{KAGGLE_WEB}/{self.owner}/{self.model}/{f.kaggle_framework}/{variation}/{version}"
                     for f in FILE_FORMATS if f.kaggle_framework},
            format_handles={f.name: f"{self.owner}/{self.model}/{f.kaggle_framework}/{variation}/{version}"
                            for f in FILE_FORMATS if f.kaggle_framework})

    def where(self, base: str) -> str:
        return f"on Kaggle Models ({KAGGLE_WEB}/{self.owner}/{self.model})"

    def notebooks_folder(self, base: str) -> str:
        return f"kaggle-{self.owner}-{self.model}"

    def reader(self):
        from hubpub.destinations.hub_readers import KaggleReader

        require(self.extra, "auditing Kaggle Models")
        return KaggleReader(self.owner, self.model)

    def publish(self, job: PublishJob) -> PublishResult:
        built = built_artifacts(job.manifest, job.dist, self, job.base, job.fix, job.records)
        plan = plan_kaggle(job.manifest, built, job.dist, self, public=job.public, signer=job.signer,
                           signed=job.signed)
        return publish_kaggle(plan, self, force=job.force, dry_run=job.dry_run,
                              sigstore=bool(job.signer and job.signer.sigstore))

    def verify(self, manifest: Manifest, dist: Path, result: PublishResult, *, fine_tune: bool = False):
        """The first published SavedModel variation, downloaded as users do (`kagglehub.model_download`)."""
        from hubpub.destinations.hub import verify_download

        require(self.extra, "downloading from Kaggle Models")
        saved = next((o.upload for o in result.outcomes if o.upload.relative.startswith("tensorFlow2/")), None)
        if saved is None:
            raise PublishError("nothing published to verify")
        return verify_download(dist, saved, lambda into: download_variation(
            f"{self.owner}/{self.model}/{saved.relative}", into), fine_tune=fine_tune)


def kaggle_variation(artifact: str) -> str:
    """The Kaggle variation slug of an artifact: lowercase, single hyphens (`net_small_1k_224_fe`
    -> `net-small-1k-224-fe`)."""
    slug = re.sub(r"[^a-z0-9]+", "-", artifact.lower()).strip("-")
    if not slug:
        raise PublishError(f"{artifact!r}: no Kaggle variation slug can be made from this name")
    return slug


# The manifest's license ids in Kaggle's license names, as kaggle-api's docs/models_metadata.md lists
# "the available licenses for models" (some are long names, e.g. CC BY-NC 4.0).
LICENSES = {"mit": "MIT", "apache-2.0": "Apache 2.0", "bsd-3-clause": "BSD-3-Clause",
            "cc-by-4.0": "Attribution 4.0 International (CC BY 4.0)", "cc-by-sa-4.0": "CC BY-SA 4.0",
            "cc-by-nd-4.0": "Attribution-NoDerivatives 4.0 International (CC BY-ND 4.0)",
            "cc-by-nc-4.0": "Attribution-NonCommercial 4.0 International (CC BY-NC 4.0)",
            "cc-by-nc-nd-4.0": "Attribution-NonCommercial-NoDerivatives 4.0 International (CC BY-NC-ND 4.0)",
            "cc-by-nc-sa-4.0": "CC BY-NC-SA 4.0", "cc0-1.0": "CC0: Public Domain", "gpl-2.0": "GPL 2",
            "gpl-3.0": "GPL 3", "lgpl-3.0": "GNU Lesser General Public License 3.0",
            "agpl-3.0": "GNU Affero General Public License 3.0"}


@dataclass(frozen=True)
class KaggleModel:
    owner: str
    slug: str
    title: str
    subtitle: str
    description: str  # the model card: the collection doc's body
    is_private: bool
    provenance_sources: str


@dataclass(frozen=True)
class KaggleVariation:
    built: Built
    framework: str  # "tensorFlow2" (the SavedModel), or a format's (`Format.kaggle_framework`)
    slug: str
    files: tuple[tuple[str, int], ...]  # what the version holds, relative path and size
    overview: str
    usage: str
    license_name: str
    fine_tunable: bool
    training_data: tuple[str, ...]
    version_notes: str
    marker: dict  # hubpub.json
    signatures: tuple[tuple[str, Path], ...] = ()  # (name in the version, the .sig in dist/)

    def handle(self, model: KaggleModel) -> str:
        return f"{model.owner}/{model.slug}/{self.framework}/{self.slug}"

    def page(self, model: KaggleModel) -> str:
        return f"{KAGGLE_WEB}/{self.handle(model)}"


@dataclass(frozen=True)
class KagglePlan:
    model: KaggleModel
    variations: tuple[KaggleVariation, ...]

    def describe(self) -> list[str]:
        m = self.model
        lines = [f"Kaggle model {m.owner}/{m.slug} ({'private' if m.is_private else 'public'}): title {m.title!r}, "
                 f"subtitle {m.subtitle!r}, card {len(m.description):,} characters (the collection doc), "
                 f"provenance {m.provenance_sources!r}"]
        for v in self.variations:
            lines.append(f"  {v.handle(m)}: license {v.license_name!r}, fine-tunable {v.fine_tunable}, training data "
                         f"{list(v.training_data)}, overview {len(v.overview):,} and usage {len(v.usage):,} "
                         f"characters (the model doc), notes {v.version_notes!r}")
            lines += [f"    {name} ({size:,} bytes)" for name, size in v.files]
        return lines


def plan_kaggle(manifest: Manifest, built: list[Built], dist: Path, dest: Kaggle, *, public: bool,
                signer=None, signed: bool = False) -> KagglePlan:
    """Everything a publish sends, from the manifest, the build records and the rendered docs; the `.sig`
    files only of a signed publish (`signed`, or a `signer` here)."""
    signed = signed or signer is not None
    c = manifest.collection
    families = list(dict.fromkeys(b.artifact.variant.family for b in built))
    title = c.title or " and ".join(f.docs.title for f in families)
    subtitle = c.subtitle or c.description.split(". ")[0].rstrip(".")
    if not 5 <= len(title) <= 50:
        raise PublishError(f"Kaggle needs a model title of 5 to 50 characters; {title!r} has {len(title)}: "
                           "set collection.title in the manifest")
    if not 20 <= len(subtitle) <= 80:
        raise PublishError(f"Kaggle needs a subtitle of 20 to 80 characters; the description's first sentence has "
                           f"{len(subtitle)}: set collection.subtitle in the manifest")
    card = collection_doc(manifest, dist)
    if not card.is_file():
        raise PublishError(f"{card}: no collection doc; run `hubpub docs --dest {dest}`")
    sources = sorted({b.artifact.variant.checkpoint_url for b in built if "://" in b.artifact.variant.checkpoint_url})
    codes = [f.docs.code for f in families if f.docs.code]
    provenance = "; ".join(filter(None, [
        f"Ported from the official checkpoints of {', '.join(codes)}" if codes else "",
        f"{len(sources)} checkpoint(s), e.g. {sources[0]}" if sources else "the publisher's own Keras models"]))
    model = KaggleModel(dest.owner, dest.model, title, subtitle, doc_body(card), not public, provenance)

    variations = []
    for b in built:
        license_name = LICENSES.get(b.artifact.variant.license)
        if license_name is None:
            raise PublishError(f"{b.artifact.name}: license {b.artifact.variant.license!r} has no Kaggle name; "
                               f"Kaggle takes: {', '.join(sorted(LICENSES))}")
        overview, usage = split_usage(doc_body(b.doc))
        r = b.record
        parity = f"parity max |Δ| {r.parity.max_abs:.1e} against the PyTorch reference" \
            if r.parity.max_abs is not None else f"parity {r.parity.status}"
        common: dict[str, Any] = dict(overview=overview, license_name=license_name,
                                      fine_tunable=manifest.docs.fine_tunable,
                                      training_data=tuple(d.title for d in b.artifact.variant.datasets), built=b)
        slug = kaggle_variation(b.artifact.name)
        tf_usage = usage.replace(f"tensorFlow2/{slug}/{b.artifact.version}", "${FRAMEWORK}/${VARIATION_SLUG}/"
                                 "${VERSION_NUMBER}")
        notes = (f"{b.artifact.name} version {b.artifact.version}: SavedModel tar.gz sha256 {r.tarball.sha256}; "
                 f"{parity}; weights from {b.artifact.variant.checkpoint_url.rsplit('/', 1)[-1]}")
        marker = {"artifact": b.artifact.name, "version": b.artifact.version, "sha256": r.tarball.sha256,
                  "format": "saved_model_2", "parity_max_abs": r.parity.max_abs}
        sigs = _signed(((SAVED_MODEL_SIGNATURE, b.tarball, _tree_signature(b, signer)),)) if signed else ()
        variations.append(KaggleVariation(framework="tensorFlow2", slug=slug, usage=tf_usage,
                                          files=tar_members(b.tarball) + _sizes(sigs) + ((MARKER, 0),),
                                          version_notes=notes, marker=marker, signatures=sigs, **common))
        for fmt in FORMATS:  # a variation for each format built that Kaggle has a framework for
            if not fmt.kaggle_framework or not fmt.entries(r):
                continue
            framework, held, digest = fmt.kaggle_framework, fmt.hub_files(r, b.dist), fmt.hub_sha256(r)
            sigs = _signed(tuple((name + SIGNATURE, path, None) for name, path in held)) if signed else ()
            if isinstance(digest, dict):  # several files: the digest of their digests, and each
                digest = {"sha256": hashlib.sha256("".join(digest.values()).encode()).hexdigest(), "files": digest}
            else:
                digest = {"sha256": digest}
            variations.append(KaggleVariation(
                framework=framework, slug=slug, usage=usage.replace(f"{framework}/{slug}/{b.artifact.version}",
                                                                    "${FRAMEWORK}/${VARIATION_SLUG}/${VERSION_NUMBER}"),
                files=tuple((name, path.stat().st_size) for name, path in held) + _sizes(sigs) + ((MARKER, 0),),
                signatures=sigs, version_notes=f"{b.artifact.name} version {b.artifact.version}: {fmt.describe(r)}; "
                                               f"{parity}",
                marker={**marker, **digest, "format": fmt.name}, **common))
    return KagglePlan(model, tuple(variations))


def _signed(candidates) -> tuple[tuple[str, Path], ...]:
    """(name, signature) of each (name, signed file, its signature or None: the `.sig` beside it) that has
    a signature made after the file."""
    return tuple((name, sig) for name, path, given in candidates if (sig := fresh_signature(path, given)))


def _sizes(signatures) -> tuple[tuple[str, int], ...]:
    return tuple((name, sig.stat().st_size) for name, sig in signatures)


def _tree_signature(b: Built, signer) -> Path:
    """The signature over the SavedModel's files as the variation holds them (made now with a signer)."""
    sig = b.dist.saved_model_files_signature(b.artifact.name)
    if signer is not None:
        with tempfile.TemporaryDirectory(prefix="hubpub-sign-") as tmp:
            signer.sign_folder(saved_model_tree(b, Path(tmp) / "extracted"), sig, shown_as=b.tarball)
    return sig


# --------------------------------------------------------------------------- publishing


def publish_kaggle(plan: KagglePlan, dest: Kaggle, *, force: bool = False, dry_run: bool = False,
                   sigstore: bool = False) -> PublishResult:
    """Create or update the model, then per variation: nothing if its latest version holds the same
    bytes, a new version if the manifest's model_version is newer (or `force`), else refuse."""
    m = plan.model
    result = PublishResult(dest, str(dest), plan=plan.describe() if dry_run else [],
                           visibility="private" if m.is_private else "public")
    rows = [Upload(v.built.doc, f"{v.framework}/{v.slug}", sum(s for _, s in v.files), "", v.page(m),
                   v.built.artifact.name, v.built.record.random_weights) for v in plan.variations]
    if dry_run:
        result.outcomes += [Outcome(u, "would publish") for u in rows]
        return result
    random = sorted({v.built.artifact.name for v in plan.variations if v.built.record.random_weights})
    if random:
        raise PublishError(f"refusing to publish random-weight (demo) artifacts to {dest}: {', '.join(random)}")
    check_credentials()
    with KaggleApi(plan.model) as api:
        _publish_variations(api, plan, rows, result, force=force, sigstore=sigstore)
    return result


def _publish_variations(api: KaggleApi, plan: KagglePlan, rows: list[Upload], result: PublishResult, *,
                        force: bool, sigstore: bool = False) -> None:
    m = plan.model
    states = [api.latest(v) for v in plan.variations]  # every check before the first upload
    conflicts = [f"{v.handle(m)}: version {n} holds other bytes (sha256 {str(sha)[:12]}...) than this build "
                 f"({v.marker['sha256'][:12]}...)" for v, (n, sha, _) in zip(plan.variations, states, strict=True)
                 if n is not None and sha != v.marker["sha256"] and n >= v.built.artifact.version and not force]
    if conflicts:
        raise PublishError(f"{conflicts[0]}; nothing was uploaded. Published versions are immutable: bump "
                           f"collection.model_version in the manifest, or pass --force to add a version",
                           conflicts[1:])
    api.upsert_model()
    with tempfile.TemporaryDirectory(prefix="hubpub-kaggle-") as tmp:
        for v, row, (n, sha, instance) in zip(plan.variations, rows, states, strict=True):
            if n is not None and sha == v.marker["sha256"]:
                changed = api.update_variation(v, instance)
                result.outcomes.append(Outcome(row, "updated (page)" if changed else "already published",
                                               f"version {n}"))
                continue
            staged = _stage(v, Path(tmp) / f"{v.framework}-{v.slug}")
            api.upload(v, staged, new=n is None, sigstore=sigstore)
            api.update_variation(v, None)
            shutil.rmtree(staged, ignore_errors=True)
            status = "uploaded" if n is None else ("overwritten (forced)" if n >= v.built.artifact.version else
                                                   "uploaded")
            result.outcomes.append(Outcome(row, status, "version 1" if n is None else f"version {n + 1}"))


def _stage(v: KaggleVariation, folder: Path) -> Path:
    """The directory a version uploads: the SavedModel's files, or the .keras file; and hubpub.json."""
    if v.framework == "tensorFlow2":
        link_tree(saved_model_tree(v.built, folder.with_name(folder.name + "-extracted")), folder)
    else:  # a format of `hubpub.formats`: its hub files
        folder.mkdir(parents=True)
        fmt = next(f for f in FORMATS if f.kaggle_framework == v.framework)
        for name, path in fmt.hub_files(v.built.record, v.built.dist):
            _link(path, folder / name)
    for name, sig in v.signatures:
        _link(sig, folder / name)
    (folder / MARKER).write_text(json.dumps(v.marker, indent=2) + "\n")
    planned = {name for name, _ in v.files}
    found = {name for name, _ in files_below(folder)}
    if planned != found:  # never upload something other than what the plan showed
        raise PublishError(f"{v.built.tarball}: staged files differ from the plan: {sorted(planned ^ found)}")
    return folder


def _link(source: Path, target: Path) -> None:
    try:  # the same bytes, without a copy where the file system allows
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)
