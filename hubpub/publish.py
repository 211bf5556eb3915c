"""Publishing a build, whatever the destination: the docs checked, the destination's own publish, the
notebooks the docs link copied into the checkout, and one artifact got back as users get it.

What a destination does (plan, conditional uploads, a hub's metadata) is in `hubpub.destinations`.
Published model versions are immutable everywhere; docs and pages are updated in place.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

from hubpub.destinations import Destination, PublishJob, PublishResult, public_url_base
from hubpub.errors import PublishError, VerifyError
from hubpub.extras import require
from hubpub.layout import Dist
from hubpub.manifest import Manifest
from hubpub.record import RecordError, read_records
from hubpub.signing import Signer

log = logging.getLogger(__name__)


def publish(manifest: Manifest, dist: Path, dest: Destination, *, public_url: str | None = None, force: bool = False,
            dry_run: bool = False, jobs: int = 4, deadline: float = 300.0, timeout: float = 60.0,
            chunk_bytes: int | None = None, notebooks: Path | None = None, public: bool = False,
            artifacts_only: bool = False, verify: bool = False, fine_tune: bool = False,
            signer: Signer | None = None) -> PublishResult:
    """Check everything first, then send what is missing or changed; raise before touching anything on a
    conflict. On a hub, models are private unless `public` or the manifest's `publish.public`.
    `artifacts_only` (a shard's publish) sends the artifact files and no docs or site: those come once,
    at the end (`build-all --collect`). With `verify`, one published artifact is then got back as its
    users get it and checked against its build (`result.verified`; with `fine_tune`, a training step too).
    With a `signer` (or the manifest's `signing:`), every artifact file gets a `.sig` beside it, published
    with it; `signing.required` refuses to publish without one, before anything is uploaded."""
    signer = signer or manifest_signer(manifest)
    if signer is None and manifest.signing is not None and manifest.signing.required:
        raise PublishError(f"{manifest.path}: signing.required is set, and no signer was given: publish with "
                           "--sign-key PRIVATE_KEY.pem or --sign sigstore (nothing was uploaded)")
    if signer is not None and not dest.signatures:
        raise PublishError(f"{dest}: hubpub does not publish signatures to {dest.title} yet; publish signed "
                           "artifacts to a bucket, a directory or the Hugging Face Hub (nothing was uploaded)")
    if dest.extra:  # before anything else: no point checking docs for a destination hubpub cannot reach
        require(dest.extra, f"publishing to {dest.title}")
    base = public_url_base(dest, manifest, public_url)
    fix = f"hubpub docs --dest {dest}" + (f" --public-url {public_url}" if public_url else "")
    if artifacts_only and dest.is_hub:
        raise PublishError(f"{dest}: a hub takes a whole collection, pages included; publish there once")
    docs, colab = (), None
    if not artifacts_only:
        docs, colab = _checked_docs(manifest, dist, notebooks, fix)
        _check_signing_claim(manifest, docs, signer)
    try:
        records = read_records(Dist(dist).reports)  # read once: the destination and the notebooks take these
    except RecordError as e:
        raise PublishError(str(e)) from None
    if signer is not None and not dry_run:
        files = [Dist(dist).root / f for r in records.values() for f in r.artifact_files()]
        signer.sign(files)
        log.info("signed %d artifact files with %s", len(files), signer.identity)
    job = PublishJob(manifest, Path(dist), base, fix, force=force, dry_run=dry_run, jobs=jobs, deadline=deadline,
                     timeout=timeout, chunk_bytes=chunk_bytes, public=public or manifest.publish.public,
                     artifacts_only=artifacts_only, docs=tuple(docs), records=records,
                     signer=signer if not dry_run else None, signed=signer is not None)
    result = dest.publish(job)
    if not dry_run and colab is not None and not _publish_notebooks(colab, manifest, records, result) \
            and colab.found:  # the linked notebooks stay where they were checked (a demo's, in its build)
        path, inside = colab.found[0]
        for _ in Path(inside).parts:
            path = path.parent
        dest.keep_record({"notebooks": str(path.resolve())})  # where an audit looks for them
    if verify and not dry_run:
        try:
            checked = verify_published(manifest, dist, dest, result, fine_tune=fine_tune)
        except VerifyError as e:  # the uploads stand; say so, or the user would think nothing happened
            raise VerifyError(f"published to {dest} ({result.summary()}), but the artifact got back from "
                              f"there failed its check: {e}") from None
        if signer is not None and signer.key is not None and not dest.is_hub:
            _check_published_signature(checked.handle, signer.key)
        result = replace(result, verified=checked)
    return result


def _check_published_signature(handle: str, key: Path) -> None:
    """The verified artifact's published `.sig`, checked as a user checks it, with the signer's public key."""
    import tempfile

    from hubpub.signing import SignatureError, public_key_pem
    from hubpub.verify import check_signature

    with tempfile.NamedTemporaryFile(suffix=".pem") as pem:
        pem.write(public_key_pem(key).encode() + b"\n")
        pem.flush()
        try:
            check_signature(handle, public_key=Path(pem.name))
        except SignatureError as e:
            raise VerifyError(f"published, but the signature got back from there failed its check: {e}") from None



def _check_signing_claim(manifest: Manifest, docs, signer: Signer | None) -> None:
    """The docs say "signed" only of a publish that signs, with the key they name: else nothing is uploaded."""
    from hubpub.signing import SIGNED_CLAIM, public_key_fingerprint

    claiming = next((d.path for d in docs if SIGNED_CLAIM.search(d.body)), None)
    if claiming is not None and signer is None:
        raise PublishError(f"{claiming}: says each file is signed, but this publish signs nothing (nothing was "
                           "uploaded): give --sign-key PRIVATE_KEY.pem (the manifest's signing.key), or render the "
                           "docs without signing.public_key")
    settings = manifest.signing
    if claiming is not None and signer is not None and signer.key is not None and settings is not None \
            and settings.public_key \
            and public_key_fingerprint(Path(settings.public_key)) != public_key_fingerprint(signer.key):
        raise PublishError(f"{claiming}: names the key of signing.public_key ({settings.public_key}), but "
                           f"{signer.key} is another key (nothing was uploaded): sign with its private half")


def manifest_signer(manifest: Manifest) -> Signer | None:
    """The signer the manifest's `signing:` section names, if any."""
    settings = manifest.signing
    if settings is None:
        return None
    if settings.sigstore:
        return Signer(sigstore=True)
    return Signer(key=Path(settings.key)) if settings.key else None


def _checked_docs(manifest: Manifest, dist: Path, notebooks: Path | None, fix: str):
    """The rendered docs, valid, and what their Colab links open: this build's notebooks for the
    destination (`notebooks`, default DIST/notebooks), else those already in the checkout."""
    from hubpub.docs.validate import validate_docs
    from hubpub.notebooks import check_colab_links, checkout_notebooks

    root = Dist(dist).docs
    if not root.is_dir():
        raise PublishError(f"{root}: no rendered docs; run `{fix}` first")
    docs = validate_docs(root)
    folders = [notebooks or Dist(dist).notebooks] + [f for f in (checkout_notebooks(manifest),) if f is not None]
    check = check_colab_links(docs, manifest, folders, fix=fix.replace("hubpub docs", "hubpub notebooks", 1)
                              + " --execute")
    for warning in check.warnings():
        log.warning("warning: %s", warning)
    return docs, check


def _publish_notebooks(check, manifest: Manifest, records: dict, result: PublishResult) -> bool:
    """The notebooks the published docs link, copied into the manifest's checkout (never a demo's
    random-weight ones), where a commit and push publishes them; False if they have no place there."""
    from hubpub.notebooks import checkout_notebooks, publish_notebooks

    if any(r.random_weights for r in records.values()) or checkout_notebooks(manifest) is None:
        return False
    result.notebooks = publish_notebooks(check, manifest)
    return True


def verify_published(manifest: Manifest, dist: Path, dest: Destination, result: PublishResult,
                     *, fine_tune: bool = False):
    """One published artifact, got back as its users get it (the public URL, a directory's file, a hub's
    download) and checked with hub.KerasLayer against its build record."""
    return dest.verify(manifest, dist, result, fine_tune=fine_tune)
