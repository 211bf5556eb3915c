"""Publish a collection to the Hugging Face Hub: `hubpub publish --dest hf://ORG`.

One repository per artifact and format, so that each way of loading downloads that format alone:
`keras.saving.load_model("hf://ORG/<artifact>")` downloads its whole repository (Keras calls
`snapshot_download` without file patterns), and so does a `snapshot_download` user. A classifier and
its feature extractor differ in what the Hub keys on (`pipeline_tag`, the model-index), so each gets
its own repositories, as Keras' own uploads do:
- `ORG/<artifact>`: the Keras 3 artifact in the Hub's Keras layout (`config.json`, `metadata.json`,
  `model.weights.h5`: what Keras' `hf://` loader reads; `library_name: keras`);
- `ORG/<artifact>-savedmodel`: the SavedModel as the tarball `hub.KerasLayer` loads from the tag's
  resolve URL (`saved_model.tar.gz`; `library_name: tf-keras`);
- `ORG/<artifact>-litert`: the LiteRT files and class names (`library_name: litert`), and
  `ORG/<artifact>-<format>` for each format of `hubpub.formats` (ONNX), as the Hub's own `-onnx`
  and LiteRT community repositories do.
Each holds `README.md`, the model card (typed metadata through huggingface_hub's `ModelCardData` over
the model doc's body, which links every repository), and `hubpub.json`, what the version holds. A
version is a git tag `v<model_version>` on the commit that added it; a tag holding other bytes is
refused without `--force`. The collection doc becomes a Hub collection of the repositories.
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, cast

from hubpub.destinations.base import ArtifactLinks, Destination, Outcome, PublishJob, PublishResult, Upload
from hubpub.destinations.hub import Built, built_artifacts, collection_doc, hub_error
from hubpub.destinations.links import tfhub_url
from hubpub.doctree import doc_body
from hubpub.errors import PublishError
from hubpub.extras import require
from hubpub.formats import FILE_FORMATS, FORMATS, by_name
from hubpub.signing import SUFFIX as SIGNATURE
from hubpub.signing import fresh_signature

if TYPE_CHECKING:
    from hubpub.manifest.values import Artifact, Manifest

log = logging.getLogger(__name__)

HF_WEB = "https://huggingface.co"
HF_TARBALL = "saved_model.tar.gz"
EVAL_RESULTS = ".eval_results/hubpub.yaml"  # the Hub's evaluation-results files (huggingface_hub 2.4)
KERAS_LAYOUT_SIGNATURE = "model.sig"  # over the Keras layout's files, as they are in the repository
# The SavedModel's repository, by the suffix of its name (a format's: `Format.hf_suffix`).
SAVED_MODEL_SUFFIX = "-savedmodel"
# Hugging Face user and organization names.
HF_NAMESPACE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,94}[A-Za-z0-9])?$")
HF_REPO_NAME_MAX = 96  # huggingface_hub's validate_repo_id


def _suffixes() -> tuple[str, ...]:
    return tuple(dict.fromkeys(("", SAVED_MODEL_SUFFIX, *(f.hf_suffix for f in FORMATS))))


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

        def resolve(suffix: str, name: str) -> str:
            return f"{HF_WEB}/{repo}{suffix}/resolve/v{version}/{name}"

        return ArtifactLinks(
            asset_url=resolve(SAVED_MODEL_SUFFIX, HF_TARBALL), keras_url=f"hf://{repo}",
            keras_source="hf", page_url=f"{HF_WEB}/{repo}", doc_url=None, tfhub_url=tfhub_url(publisher, artifact),
            litert_prefix=resolve(by_name("litert").hf_suffix, f"{artifact.name}."),
            formats={f.name: resolve(f"-{f.name}", f"{artifact.name}{f.suffix}") for f in FILE_FORMATS})

    def where(self, base: str) -> str:
        return f"on the Hugging Face Hub ({HF_WEB}/{self.owner})"

    def notebooks_folder(self, base: str) -> str:
        return f"hf-{self.owner}"

    def name_limit(self) -> tuple[int, str]:
        longest = max(_suffixes(), key=len)
        return HF_REPO_NAME_MAX - len(longest), f"a Hugging Face repository name with `{longest}` after it"

    def reader(self):
        from hubpub.destinations.hub_readers import HfReader

        require(self.extra, "auditing the Hugging Face Hub")
        return HfReader(self.owner, api=_api, download=download_repo)

    def publish(self, job: PublishJob) -> PublishResult:
        built = built_artifacts(job.manifest, job.dist, self, job.base, job.fix, job.records)
        return publish_hf(plan_hf(job.manifest, built, job.dist, self, public=job.public, signer=job.signer,
                                  signed=job.signed), self,
                          force=job.force,
                          dry_run=job.dry_run)

    def verify(self, manifest: Manifest, dist: Path, result: PublishResult, *, fine_tune: bool = False):
        """The first published repository, downloaded as users do (`snapshot_download`), its SavedModel."""
        from hubpub.destinations.hub import verify_download

        require(self.extra, "downloading from the Hugging Face Hub")
        saved = next((o for o in result.outcomes if o.upload.artifact and o.upload.relative.endswith(
            SAVED_MODEL_SUFFIX)), None)
        if saved is None:
            raise PublishError("nothing published to verify")
        return verify_download(dist, saved.upload, lambda into: download_file(
            saved.upload.relative, HF_TARBALL, into, revision=saved.detail), fine_tune=fine_tune)


MARKER = "hubpub.json"
PIPELINE_TAGS = {"classifier": "image-classification", "feature-extractor": "image-feature-extraction"}
CREDENTIALS = "set HF_TOKEN (or run `hf auth login`)"


@dataclass(frozen=True)
class HfFile:
    path: str  # in the repository
    size: int
    source: Path | bytes  # a file of the build, or the text hubpub writes (README.md, hubpub.json)
    member: bool = False  # `source` is the .keras file (a zip) and this file one of its members


@dataclass(frozen=True)
class HfRepo:
    built: Built
    repo_id: str
    tag: str
    form: str  # what it holds: "keras", "saved_model", "litert" or a format's name
    files: tuple[HfFile, ...]
    marker: dict

    @property
    def page(self) -> str:
        return f"{HF_WEB}/{self.repo_id}"

    @property
    def card(self) -> str:
        # The card is made in memory (bytes); the other files are read from dist (paths).
        return next(cast(bytes, f.source).decode() for f in self.files if f.path == "README.md")


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
            lines += [f"    {f.path} ({f.size:,} bytes)" for f in r.files]
        return lines


# The SavedModel's repository: its card's title, what it holds, the library the Hub lists it under
# (huggingface.js model-libraries.ts: `tf-keras` counts saved_model.pb downloads) and its tags. A
# format's say the same (`Format.holds`, `hf_library`, `hf_tags`: `keras` counts config.json and .keras,
# `litert` .tflite; ONNX is a file format there, not a library: its cards name none).
SAVED_MODEL_FORM = ("SavedModel", "the SavedModel as a TF-Hub tarball (`hub.KerasLayer`)", "tf-keras",
                    ("tensorflow", "tf-keras", "saved-model", "tensorflow-hub"))


def _form(form: str) -> tuple[str, str, str | None, tuple[str, ...]]:
    if form == "saved_model":
        return SAVED_MODEL_FORM
    fmt = by_name(form)
    return fmt.title, fmt.holds, fmt.hf_library, fmt.hf_tags or (form,)


def plan_hf(manifest: Manifest, built: list[Built], dist: Path, dest: HuggingFace, *, public: bool,
            signer=None, signed: bool = False) -> HfPlan:
    card = collection_doc(manifest, dist)
    if not card.is_file():
        raise PublishError(f"{card}: no collection doc; run `hubpub docs --dest {dest}`")
    families = list(dict.fromkeys(b.artifact.variant.family for b in built))
    title = manifest.collection.title or " and ".join(f.docs.title for f in families)
    repos = []
    for b in built:
        repos += _artifact_repos(manifest, b, dest, signer, signed=signed or signer is not None)
    return HfPlan(dest.owner, not public, tuple(repos), title[:60], manifest.collection.description[:150])


def _artifact_repos(manifest: Manifest, b: Built, dest: HuggingFace, signer=None, *,
                    signed: bool = False) -> list[HfRepo]:
    """The repositories of one artifact, each with the files of one format (none for a format not built),
    and the signature of each file beside it (`<file>.sig`; the Keras layout's files: `model.sig`)."""
    r, name, main = b.record, b.artifact.name, dest.repo(b.artifact.name)
    held: list[tuple[str, str, list[tuple[str, Path]], object]] = []  # form, suffix, files, sha256
    for fmt in FORMATS:
        if fmt.entries(r):
            # The `.keras` file as the Hub's Keras layout, its members (below): what Keras' hf:// loader reads.
            files = [] if fmt.name == "keras" else fmt.hub_files(r, b.dist)
            held.append((fmt.name, fmt.hf_suffix, files, fmt.hub_sha256(r)))
    saved_model = ("saved_model", SAVED_MODEL_SUFFIX, [(HF_TARBALL, b.tarball)], r.tarball.sha256)
    # Listed after the artifact's own repository (the Keras one), before the other formats'.
    held.insert(1 if held and held[0][1] == "" else 0, saved_model)
    siblings = [(form, f"{main}{suffix}") for form, suffix, _, _ in held]
    repos = []
    for form, suffix, files, digest in held:
        repo_id = f"{main}{suffix}"
        _check_repo_id(repo_id)
        entries = [HfFile(path, src.stat().st_size, src) for path, src in files]
        entries += [HfFile(path + SIGNATURE, sig.stat().st_size, sig) for path, src in files
                    if signed and (sig := fresh_signature(src))]
        if form == "keras":
            assert b.keras is not None  # the keras form is held only where the .keras file was built
            entries += [HfFile(member, size, b.keras, member=True) for member, size in _zip_members(b.keras)]
            layout_sig = b.dist.keras_layout_signature(name)
            if signer is not None:
                signer.sign_members(b.keras, layout_sig)
            if signed and fresh_signature(b.keras, layout_sig):
                entries.append(HfFile(KERAS_LAYOUT_SIGNATURE, layout_sig.stat().st_size, layout_sig))
        marker = {"artifact": name, "version": b.artifact.version, "form": form, "sha256": digest,
                  "parity_max_abs": r.parity.max_abs}
        card, results = model_card(manifest, b, form, siblings).encode(), eval_results(b)
        entries += [HfFile("README.md", len(card), card), HfFile(MARKER, len(_marker_bytes(marker)),
                                                                  _marker_bytes(marker))]
        entries += [HfFile(EVAL_RESULTS, len(results), results)] if results else []
        repos.append(HfRepo(b, repo_id, f"v{b.artifact.version}", form, tuple(entries), marker))
    return repos


def _check_repo_id(repo_id: str) -> None:
    """The Hub's rule for repository names (at most 96 characters, ...), as huggingface_hub checks it; in
    the plan, so a dry run refuses what the upload would."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError as e:
        raise PublishError(f"hf://{repo_id}: not a valid Hugging Face repository name ({len(repo_id.split('/')[-1])} "
                           f"characters): {str(e).splitlines()[0]}; shorten the variant's name") from None


def model_card(manifest: Manifest, b: Built, form: str = "keras", siblings: Sequence[tuple[str, str]] = ()) -> str:
    """README.md of the repository holding `form`: typed metadata (validated by huggingface_hub), a line
    naming every repository of the artifact, and the model doc's body."""
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
    title, what, library, tags = _form(form)
    data = ModelCardData(
        license=v.license, library_name=library, pipeline_tag=task, model_name=b.artifact.name,
        datasets=[d.key for d in v.datasets], eval_results=results or None,
        tags=[*tags, v.family.name, "hubpub"])
    where = ", ".join(f"{_form(f)[0]} [{repo}]({HF_WEB}/{repo})" for f, repo in siblings)
    note = (f"This repository holds {what} of `{b.artifact.name}`: one repository per format, so that each "
            f"download is that format alone ({where}).\n\n") if siblings else ""
    return str(ModelCard(f"---\n{data.to_yaml()}\n---\n\n{note}{doc_body(b.doc)}"))  # parsed back: valid YAML


def eval_results(b: Built) -> bytes | None:
    """`.eval_results/hubpub.yaml`, the Hub's current evaluation-results format (huggingface_hub's
    `EvalResultEntry`; the card's `model-index` stays for older readers): the published top-1, the one
    `hubpub eval` measured, and the parity against the PyTorch reference."""
    import yaml
    from huggingface_hub import EvalResultEntry, eval_result_entries_to_yaml

    v, r, entries = b.artifact.variant, b.record, []
    if b.artifact.kind == "classifier" and v.top1:
        entries.append(EvalResultEntry(dataset_id=v.dataset.key, task_id="default", value=v.top1,
                                       notes="top-1 accuracy (%), as published with the checkpoint"))
    eval_path = b.dist.eval_report(b.artifact.name)
    if b.artifact.kind == "classifier" and eval_path.is_file():
        entries.append(EvalResultEntry(dataset_id=v.dataset.key, task_id="default",
                                       value=round(json.loads(eval_path.read_text())["top1"], 3),
                                       notes="top-1 accuracy (%), measured by hubpub eval on this file"))
    if r.parity.max_abs is not None:
        entries.append(EvalResultEntry(dataset_id="hubpub-parity", task_id="max_abs_diff",
                                       value=float(f"{r.parity.max_abs:.3g}"),
                                       notes="largest |Δ| from the PyTorch reference on fixed random inputs"))
    return yaml.safe_dump(eval_result_entries_to_yaml(entries), sort_keys=False).encode() if entries else None


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
    rows = [Upload(r.built.doc, r.repo_id, sum(f.size for f in r.files), "", r.page, r.built.artifact.name,
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
    committed = []
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
            commit = _call(f"uploading {r.repo_id} (no commit is made from a partial upload, and no version is "
                           "tagged until every repository has its files; run publish again)",
                           lambda r=r: api.create_commit(r.repo_id, operations=_operations(r, Path(tmp)),
                                                         commit_message=f"{r.built.artifact.name} {r.tag} (hubpub)"))
            committed.append((r, row, exists, commit))
    # The tags last: a version appears in every repository of the collection, or in none.
    for r, row, exists, commit in committed:
        if exists:
            _call(f"moving tag {r.tag} of {r.repo_id}", lambda r=r: api.delete_tag(r.repo_id, tag=r.tag))
        _call(f"tagging {r.repo_id} {r.tag}", lambda r=r, c=commit: api.create_tag(
            r.repo_id, tag=r.tag, revision=c.oid, tag_message=f"{r.built.artifact.name} version {r.tag[1:]}"))
        result.outcomes.append(Outcome(row, "overwritten (forced)" if exists else "uploaded", r.tag))
    order = {r.repo_id: i for i, r in enumerate(plan.repos)}
    result.outcomes.sort(key=lambda o: order[o.upload.relative])
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
    return True, (held.get("form"), held.get("sha256")) == (r.marker["form"], r.marker["sha256"])


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
    """The plan's files, read from the build's own files (the Keras layout unpacked from the .keras
    file into `tmp` first: read from disk as uploaded, never held in memory whole)."""
    from huggingface_hub import CommitOperationAdd

    ops = []
    for f in r.files:
        if isinstance(f.source, bytes):
            ops.append(CommitOperationAdd(f.path, f.source))
        elif f.member:
            with zipfile.ZipFile(f.source) as z:
                unpacked = Path(z.extract(f.path, tmp / r.repo_id))
            ops.append(CommitOperationAdd(f.path, str(unpacked)))
        else:
            ops.append(CommitOperationAdd(f.path, str(f.source)))
    return ops


def _collection(api, plan: HfPlan) -> None:
    collection = _call(f"creating the collection {plan.collection_title!r}", lambda: api.create_collection(
        plan.collection_title, namespace=plan.owner, description=plan.collection_description, private=plan.private,
        exists_ok=True))
    for r in plan.repos:
        _call(f"adding {r.repo_id} to the collection", lambda r=r: api.add_collection_item(
            collection.slug, item_id=r.repo_id, item_type="model", exists_ok=True))


def download_file(repo_id: str, filename: str, into: Path, revision: str | None = None) -> Path:
    """One file of a published version, as `hf_hub_download` gets it."""
    from huggingface_hub import hf_hub_download

    try:
        return Path(hf_hub_download(repo_id, filename, revision=revision, local_dir=str(into), endpoint=_endpoint()))
    except Exception as e:
        raise hub_error(f"downloading {filename} of {repo_id} from the Hugging Face Hub", e) from None


def download_repo(repo_id: str, into: Path, revision: str | None = None) -> Path:
    """A published version's files, as its users get them (`snapshot_download`)."""
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id, revision=revision, local_dir=str(into), endpoint=_endpoint()))
    except Exception as e:
        raise hub_error(f"downloading {repo_id} from the Hugging Face Hub", e) from None
