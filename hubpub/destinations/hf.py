"""Publish a collection to the Hugging Face Hub: `hubpub publish --dest hf://ORG`.

One repository per artifact, `ORG/<artifact>`: a classifier and its feature extractor differ in
what the Hub keys on (`pipeline_tag`, the model-index, what `keras.saving.load_model("hf://...")`
returns), so each gets its own page and handle, as Keras' own uploads do. A repository holds:
- the Keras 3 artifact as the Hub's Keras layout at the root (`config.json`, `metadata.json`,
  `model.weights.h5`: what `keras.saving.load_model("hf://ORG/<artifact>")` reads) and as the
  single file `model.keras`;
- the SavedModel as a tree (`saved_model/`) and as the tarball `hub.KerasLayer` loads from the tag's
  resolve URL (`saved_model.tar.gz`);
- `README.md`, the model card: typed metadata (huggingface_hub's `ModelCardData`: license,
  library_name, tags, datasets, pipeline_tag, a model-index with the parity and eval figures) over
  the model doc's body; and `hubpub.json`, what the version holds.
A version is a git tag `v<model_version>` on the commit that added it; a tag holding other bytes is
refused without `--force`. The collection doc becomes a Hub collection of the repositories.
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from hubpub.destinations.base import ArtifactLinks, Destination, Outcome, PublishJob, PublishResult, Upload
from hubpub.destinations.hub import Built, built_artifacts, collection_doc, hub_error, saved_model_tree, tar_members
from hubpub.destinations.links import tfhub_url
from hubpub.doctree import doc_body
from hubpub.errors import PublishError
from hubpub.extras import require
from hubpub.formats import FORMATS, by_name

if TYPE_CHECKING:
    from hubpub.manifest.values import Artifact, Manifest

log = logging.getLogger(__name__)

HF_WEB = "https://huggingface.co"
# What a repository holds besides the Keras files: the SavedModel, as a tree and as the tarball
# `hub.KerasLayer` loads from the tag's resolve URL.
HF_SAVED_MODEL_DIR = "saved_model"
HF_TARBALL = "saved_model.tar.gz"
HF_KERAS_FILE = "model.keras"
HF_LITERT_DIR = "litert"
# Hugging Face user and organization names.
HF_NAMESPACE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,94}[A-Za-z0-9])?$")
HF_REPO_NAME_MAX = 96  # huggingface_hub's validate_repo_id


@dataclass(frozen=True)
class HuggingFace(Destination):
    """`hf://ORG`: one repository per artifact, `ORG/<artifact>`, each version a tag `v<N>`."""

    owner: str
    title: ClassVar[str] = "Hugging Face Hub"
    form: ClassVar[str] = "hf://ORG"  # how its address is written
    is_hub: ClassVar[bool] = True
    extra: ClassVar[str] = "hf"

    @classmethod
    def parse(cls, text: str) -> HuggingFace | None:
        if not text.startswith("hf://"):
            return None
        owner = text[5:].strip("/")
        if not HF_NAMESPACE.match(owner):
            raise PublishError(f"{text!r}: a Hugging Face destination is hf://ORG (a user or organization name; "
                               "each artifact becomes a repository ORG/ARTIFACT)")
        return cls(owner)

    def __str__(self) -> str:
        return f"hf://{self.owner}"

    def own_url_base(self) -> str:
        return str(self)

    def repo(self, artifact: str) -> str:
        return f"{self.owner}/{artifact}"

    def links(self, base: str, publisher: str, artifact: Artifact, doc_path: str) -> ArtifactLinks:
        repo, version = self.repo(artifact.name), artifact.version
        return ArtifactLinks(
            asset_url=f"{HF_WEB}/{repo}/resolve/v{version}/{HF_TARBALL}", keras_url=f"hf://{repo}",
            keras_source="hf", page_url=f"{HF_WEB}/{repo}", doc_url=None, tfhub_url=tfhub_url(publisher, artifact),
            litert_prefix=f"{HF_WEB}/{repo}/resolve/v{version}/{HF_LITERT_DIR}/{artifact.name}.",
            formats={f.name: f"{HF_WEB}/{repo}/resolve/v{version}/{f.hf_folder}/{artifact.name}{f.suffix}"
                     for f in FORMATS})

    def where(self, base: str) -> str:
        return f"on the Hugging Face Hub ({HF_WEB}/{self.owner})"

    def notebooks_folder(self, base: str) -> str:
        return f"hf-{self.owner}"

    def name_limit(self) -> tuple[int, str]:
        return HF_REPO_NAME_MAX, "a Hugging Face repository name"

    def publish(self, job: PublishJob) -> PublishResult:
        built = built_artifacts(job.manifest, job.dist, self, job.base, job.fix, job.records)
        return publish_hf(plan_hf(job.manifest, built, job.dist, self, public=job.public), self, force=job.force,
                          dry_run=job.dry_run)

    def verify(self, manifest: Manifest, dist: Path, result: PublishResult, *, fine_tune: bool = False):
        """The first published repository, downloaded as users do (`snapshot_download`), its SavedModel."""
        from hubpub.destinations.hub import verify_download

        require(self.extra, "downloading from the Hugging Face Hub")
        saved = next((o.upload for o in result.outcomes if o.upload.artifact), None)
        return verify_download(dist, saved, lambda into: download_repo(saved.relative, into) / HF_SAVED_MODEL_DIR,
                               fine_tune=fine_tune)


MARKER = "hubpub.json"
PIPELINE_TAGS = {"classifier": "image-classification", "feature-extractor": "image-feature-extraction"}
CREDENTIALS = "set HF_TOKEN (or run `hf auth login`)"


@dataclass(frozen=True)
class HfRepo:
    built: Built
    repo_id: str
    tag: str
    files: tuple[tuple[str, int], ...]  # path in the repository, size (README and hubpub.json: their text's)
    card: str  # README.md
    marker: dict

    @property
    def page(self) -> str:
        return f"{HF_WEB}/{self.repo_id}"


@dataclass(frozen=True)
class HfPlan:
    owner: str
    private: bool
    repos: tuple[HfRepo, ...]
    collection_title: str
    collection_description: str

    def describe(self) -> list[str]:
        lines = [f"Hugging Face Hub, {self.owner} ({'private' if self.private else 'public'}): collection "
                 f"{self.collection_title!r} of {len(self.repos)} repositories"]
        for r in self.repos:
            meta = r.card.split("---")[1].strip().replace("\n", "; ")
            lines.append(f"  {r.repo_id} @ {r.tag}: {meta[:400]}")
            lines += [f"    {name} ({size:,} bytes)" for name, size in r.files]
        return lines


def plan_hf(manifest: Manifest, built: list[Built], dist: Path, dest: HuggingFace, *, public: bool) -> HfPlan:
    card = collection_doc(manifest, dist)
    if not card.is_file():
        raise PublishError(f"{card}: no collection doc; run `hubpub docs --dest {dest}`")
    families = list(dict.fromkeys(b.artifact.variant.family for b in built))
    title = manifest.collection.title or " and ".join(f.docs.title for f in families)
    repos = []
    for b in built:
        _check_repo_id(dest.repo(b.artifact.name))
        r = b.record
        marker = {"artifact": b.artifact.name, "version": b.artifact.version, "saved_model_sha256": r.tarball.sha256,
                  "keras_sha256": r.keras.sha256 if r.keras else None, "parity_max_abs": r.parity.max_abs,
                  "litert_sha256": {f.format: f.sha256 for f in r.litert},
                  "formats_sha256": {f.format: f.sha256 for f in r.formats}}
        card_text = model_card(manifest, b)
        files = [(HF_TARBALL, r.tarball.size)]
        files += [(f"{HF_SAVED_MODEL_DIR}/{name}", size) for name, size in tar_members(b.tarball)]
        if b.keras is not None:
            files += [(HF_KERAS_FILE, r.keras.size)] + list(_zip_members(b.keras))
        files += [(f"{HF_LITERT_DIR}/{Path(f.path).name}", f.size) for f in r.litert]
        files += [(f"{by_name(f.format).hf_folder}/{Path(f.path).name}", f.size) for f in r.formats]
        labels = b.dist.litert_labels(b.artifact.name)
        if r.litert and labels.is_file():
            files.append((f"{HF_LITERT_DIR}/{labels.name}", labels.stat().st_size))
        files += [("README.md", len(card_text.encode())), (MARKER, len(_marker_bytes(marker)))]
        repos.append(HfRepo(b, dest.repo(b.artifact.name), f"v{b.artifact.version}", tuple(files),
                            card_text, marker))
    return HfPlan(dest.owner, not public, tuple(repos), title[:60], manifest.collection.description[:150])


def _check_repo_id(repo_id: str) -> None:
    """The Hub's rule for repository names (at most 96 characters, ...), as huggingface_hub checks it; in
    the plan, so a dry run refuses what the upload would."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError as e:
        raise PublishError(f"hf://{repo_id}: not a valid Hugging Face repository name ({len(repo_id.split('/')[-1])} "
                           f"characters): {str(e).splitlines()[0]}; shorten the variant's name") from None


def model_card(manifest: Manifest, b: Built) -> str:
    """README.md: typed metadata (validated by huggingface_hub) over the model doc's body."""
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    v, r = b.artifact.variant, b.record
    task = PIPELINE_TAGS[b.artifact.kind]
    results = []
    if b.artifact.kind == "classifier" and v.top1:
        results.append(EvalResult(task_type=task, dataset_type=v.dataset.key, dataset_name=v.dataset.title,
                                  metric_type="accuracy", metric_name="top-1 accuracy (published, %)",
                                  metric_value=v.top1, verified=False))
    eval_path = b.dist.eval_report(b.artifact.name)
    if b.artifact.kind == "classifier" and eval_path.is_file():
        measured = json.loads(eval_path.read_text())
        results.append(EvalResult(task_type=task, dataset_type=v.dataset.key, dataset_name=v.dataset.title,
                                  metric_type="accuracy", metric_name="top-1 accuracy (hubpub eval, %)",
                                  metric_value=round(measured["top1"], 3), verified=False))
    if r.parity.max_abs is not None:
        sizes = " and ".join("x".join(map(str, run["size"])) for run in r.parity.runs or ())
        results.append(EvalResult(task_type=task, dataset_type="hubpub-parity",
                                  dataset_name=f"fixed random inputs at {sizes}" if sizes else "fixed random inputs",
                                  metric_type="max_abs_diff", metric_name="largest |Δ| from the PyTorch reference",
                                  metric_value=float(f"{r.parity.max_abs:.3g}"), verified=False))
    data = ModelCardData(
        license=v.license, library_name="keras", pipeline_tag=task, model_name=b.artifact.name,
        datasets=[d.key for d in v.datasets], eval_results=results or None,
        tags=["keras", "tensorflow", "tf-keras", "saved-model", "tensorflow-hub", v.family.name, "hubpub"])
    return str(ModelCard(f"---\n{data.to_yaml()}\n---\n\n{doc_body(b.doc)}"))  # parsed back: valid YAML


def _marker_bytes(marker: dict) -> bytes:
    return (json.dumps(marker, indent=2) + "\n").encode()


def _zip_members(path: Path):
    with zipfile.ZipFile(path) as z:
        return [(i.filename, i.file_size) for i in z.infolist() if not i.is_dir()]


# --------------------------------------------------------------------------- publishing


def _endpoint() -> str:
    """`HF_ENDPOINT` as set now (huggingface_hub reads it once, at import)."""
    from huggingface_hub import constants

    return os.environ.get("HF_ENDPOINT", constants.ENDPOINT).rstrip("/")


def _api():
    from huggingface_hub import HfApi

    return HfApi(endpoint=_endpoint(), library_name="hubpub")


def publish_hf(plan: HfPlan, dest: HuggingFace, *, force: bool = False, dry_run: bool = False) -> PublishResult:
    """Per repository: nothing if its tag holds the same bytes (the card is updated on `main` if it
    changed), else a commit of every file and the tag; a tag holding other bytes needs `force`."""
    result = PublishResult(dest, str(dest), plan=plan.describe() if dry_run else [],
                           visibility="private" if plan.private else "public")
    rows = [Upload(r.built.doc, r.repo_id, sum(s for _, s in r.files), "", r.page, r.built.artifact.name,
                   r.built.record.random_weights) for r in plan.repos]
    if dry_run:
        result.outcomes += [Outcome(u, "would publish", r.tag) for u, r in zip(rows, plan.repos, strict=True)]
        return result
    random = sorted({r.built.artifact.name for r in plan.repos if r.built.record.random_weights})
    if random:
        raise PublishError(f"refusing to publish random-weight (demo) artifacts to {dest}: {', '.join(random)}")
    from huggingface_hub import get_token

    if not get_token():
        raise PublishError(f"no Hugging Face credentials: {CREDENTIALS}; nothing was uploaded")
    api = _api()
    states = [_tagged(api, r) for r in plan.repos]  # every check before the first upload
    conflicts = [f"{r.repo_id}: tag {r.tag} holds other bytes than this build" for r, (exists, same) in
                 zip(plan.repos, states, strict=True) if exists and not same and not force]
    if conflicts:
        raise PublishError(f"{conflicts[0]}; nothing was uploaded. Published versions are immutable: bump "
                           "collection.model_version in the manifest, or pass --force to move the tag", conflicts[1:])
    with tempfile.TemporaryDirectory(prefix="hubpub-hf-") as tmp:
        for r, row, (exists, same) in zip(plan.repos, rows, states, strict=True):
            _call(f"creating {r.repo_id}", lambda r=r: api.create_repo(r.repo_id, private=plan.private,
                                                                       exist_ok=True))
            _call(f"setting {r.repo_id} {'private' if plan.private else 'public'}",
                  lambda r=r: api.update_repo_settings(r.repo_id, private=plan.private))
            if exists and same:
                changed = _update_card(api, r)
                result.outcomes.append(Outcome(row, "updated (card)" if changed else "already published", r.tag))
                continue
            commit = _call(f"uploading {r.repo_id} (no commit is made from a partial upload; run publish again)",
                           lambda r=r: api.create_commit(r.repo_id, operations=_operations(r, Path(tmp)),
                                                         commit_message=f"{r.built.artifact.name} {r.tag} (hubpub)"))
            if exists:
                _call(f"moving tag {r.tag} of {r.repo_id}", lambda r=r: api.delete_tag(r.repo_id, tag=r.tag))
            _call(f"tagging {r.repo_id} {r.tag}", lambda r=r, c=commit: api.create_tag(
                r.repo_id, tag=r.tag, revision=c.oid, tag_message=f"{r.built.artifact.name} version {r.tag[1:]}"))
            result.outcomes.append(Outcome(row, "overwritten (forced)" if exists else "uploaded", r.tag))
    _collection(api, plan)
    return result


def _call(what: str, fn):
    try:
        return fn()
    except PublishError:
        raise
    except Exception as e:  # huggingface_hub and httpx raise many types
        raise hub_error(f"{what} on the Hugging Face Hub", e) from None


def _tagged(api, r: HfRepo) -> tuple[bool, bool]:
    """(the version's tag exists, it holds this build's bytes)."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import RepositoryNotFoundError

    try:
        refs = api.list_repo_refs(r.repo_id)
    except RepositoryNotFoundError:
        return False, False
    except Exception as e:
        raise hub_error(f"reading {r.repo_id} on the Hugging Face Hub", e) from None
    if r.tag not in {t.name for t in refs.tags}:
        return False, False
    with tempfile.TemporaryDirectory(prefix="hubpub-hf-marker-") as tmp:
        try:
            path = hf_hub_download(r.repo_id, MARKER, revision=r.tag, local_dir=tmp, endpoint=_endpoint())
            held = json.loads(Path(path).read_text())
        except Exception as e:  # no marker: a tag made by something else
            log.debug("%s@%s: no readable %s: %s", r.repo_id, r.tag, MARKER, e)
            return True, False
    keys = ("saved_model_sha256", "keras_sha256", "litert_sha256", "formats_sha256")
    return True, all(held.get(k) == r.marker[k] for k in keys)


def _update_card(api, r: HfRepo) -> bool:
    from huggingface_hub import CommitOperationAdd, hf_hub_download

    with tempfile.TemporaryDirectory(prefix="hubpub-hf-card-") as tmp:
        try:
            current = Path(hf_hub_download(r.repo_id, "README.md", local_dir=tmp, endpoint=_endpoint())).read_text()
        except Exception:
            current = None
    if current == r.card:
        return False
    _call(f"updating the card of {r.repo_id}", lambda: api.create_commit(
        r.repo_id, operations=[CommitOperationAdd("README.md", r.card.encode())],
        commit_message="Update the model card (hubpub)"))
    return True


def _operations(r: HfRepo, tmp: Path) -> list:
    """Every file of the version, read from the build's own files (the SavedModel as the tarball's
    members, the Keras layout as the .keras file's)."""
    from huggingface_hub import CommitOperationAdd

    b = r.built
    saved = saved_model_tree(b, tmp / r.built.artifact.name / HF_SAVED_MODEL_DIR)
    ops = [CommitOperationAdd(HF_TARBALL, str(b.tarball))]
    ops += [CommitOperationAdd(f"{HF_SAVED_MODEL_DIR}/{p.relative_to(saved).as_posix()}", str(p))
            for p in sorted(saved.rglob("*")) if p.is_file()]
    if b.keras is not None:
        ops.append(CommitOperationAdd(HF_KERAS_FILE, str(b.keras)))
        with zipfile.ZipFile(b.keras) as z:
            ops += [CommitOperationAdd(i.filename, z.read(i)) for i in z.infolist() if not i.is_dir()]
    ops += [CommitOperationAdd(f"{HF_LITERT_DIR}/{Path(f.path).name}", str(b.dist.root / f.path))
            for f in b.record.litert]
    ops += [CommitOperationAdd(f"{by_name(f.format).hf_folder}/{Path(f.path).name}", str(b.dist.root / f.path))
            for f in b.record.formats]
    labels = b.dist.litert_labels(b.artifact.name)
    if b.record.litert and labels.is_file():
        ops.append(CommitOperationAdd(f"{HF_LITERT_DIR}/{labels.name}", str(labels)))
    ops += [CommitOperationAdd("README.md", r.card.encode()), CommitOperationAdd(MARKER, _marker_bytes(r.marker))]
    planned = {name for name, _ in r.files}
    if {op.path_in_repo for op in ops} != planned:  # never upload something other than what the plan showed
        raise PublishError(f"{b.tarball}: files differ from the plan: "
                           f"{sorted(planned ^ {op.path_in_repo for op in ops})}")
    return ops


def _collection(api, plan: HfPlan) -> None:
    collection = _call(f"creating the collection {plan.collection_title!r}", lambda: api.create_collection(
        plan.collection_title, namespace=plan.owner, description=plan.collection_description, private=plan.private,
        exists_ok=True))
    for r in plan.repos:
        _call(f"adding {r.repo_id} to the collection", lambda r=r: api.add_collection_item(
            collection.slug, item_id=r.repo_id, item_type="model", exists_ok=True))


def download_repo(repo_id: str, into: Path, revision: str | None = None) -> Path:
    """A published version's files, as its users get them (`snapshot_download`)."""
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id, revision=revision, local_dir=str(into), endpoint=_endpoint()))
    except Exception as e:
        raise hub_error(f"downloading {repo_id} from the Hugging Face Hub", e) from None
