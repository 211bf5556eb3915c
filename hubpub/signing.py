"""Signatures of the artifact files: OpenSSF Model Signing (the `model-signing` library), one Sigstore
bundle `<file>.sig` beside each file, made with a key (`--sign-key`), a key and its certificate chain
(`--sign-cert`) or keyless Sigstore (`--sign sigstore`, an OIDC identity in CI), and checked with the
public key, or the certificate's identity and issuer.

A file is signed once: a `.sig` that already verifies against the signer's public key is kept (ECDSA
signatures differ each time, and a published `.sig` is immutable like its file). Hashing is streamed in
the library's 1 MiB chunks: memory does not grow with the file.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from hubpub.errors import HubpubError
from hubpub.extras import require

SUFFIX = ".sig"
# What the docs and the site say of a signed model (templates/model.md.j2, site/model.html.j2): publish and
# audit hold the docs to it.
SIGNED_CLAIM = re.compile(r"Signed: each file (?:of this model )?has a signature beside it")


class SignatureError(HubpubError):
    """A file's signature is missing, malformed, or not made by the expected signer over these bytes."""


@dataclass(frozen=True)
class Signer:
    """How publish signs: a private key (with its certificate chain, if any), or keyless Sigstore."""

    key: Path | None = None  # EC private key (P-256, P-384, P-521), PEM
    certificates: tuple[Path, ...] = ()  # the signing certificate first, then its chain
    sigstore: bool = False

    def __post_init__(self):
        if self.certificates and self.key is None:
            raise SignatureError("--sign-cert needs the certificate's private key (--sign-key)")
        if self.sigstore == (self.key is not None):
            raise SignatureError("sign with a private key (--sign-key) or with Sigstore (--sign sigstore), one of them")
        if self.key is not None:  # before anything is signed or uploaded: one line naming the file
            read_private_key(self.key)
            check_certificates(self.certificates, self.key)

    @property
    def identity(self) -> str:
        """Who signs, as the docs and the summary say it: a key's fingerprint, or "Sigstore"."""
        if self.sigstore:
            return "Sigstore (the CI's OIDC identity)"
        assert self.key is not None  # __post_init__: a key, unless Sigstore
        return f"the key with SHA-256 fingerprint {public_key_fingerprint(self.key)}"

    def _config(self):
        require("signing", "signing artifacts")
        from model_signing import signing

        config = signing.Config()
        if self.sigstore:
            return _sigstore_config(config)
        assert self.key is not None  # __post_init__: a key, unless Sigstore
        if self.certificates:
            return config.use_certificate_signer(private_key=self.key, signing_certificate=self.certificates[0],
                                                 certificate_chain=self.certificates[1:])
        return config.use_elliptic_key_signer(private_key=self.key)

    def sign_members(self, archive: Path, sig: Path) -> Path:
        """`sig`: one signature over the files a zip holds (a `.keras` file as the HF Hub's Keras layout
        holds it: `config.json`, `metadata.json`, `model.weights.h5`), kept if it still verifies."""
        import tempfile
        import zipfile

        with tempfile.TemporaryDirectory(prefix="hubpub-sign-") as tmp:
            folder = Path(tmp) / "model"
            folder.mkdir()
            with zipfile.ZipFile(archive) as z:
                for info in z.infolist():
                    if not info.is_dir() and "/" not in info.filename and not info.filename.startswith("."):
                        with z.open(info) as src, open(folder / info.filename, "wb") as dst:
                            while block := src.read(1 << 20):
                                dst.write(block)
            return self.sign_folder(folder, sig, shown_as=archive)

    def sign_folder(self, folder: Path, sig: Path, *, shown_as: Path | None = None) -> Path:
        """`sig`: one signature over every file below `folder` (a manifest of their digests), kept if it
        still verifies."""
        from hubpub._files import atomic_path

        if self.key and not self.certificates and sig.is_file() and _verifies(folder, sig, self.key):
            return sig
        with atomic_path(sig) as out:
            try:
                self._config().sign(folder, out)
            except Exception as e:  # noqa: BLE001 - as in `sign`
                raise SignatureError(f"{shown_as or folder}: cannot sign its files: {_first_line(e)}") from None
        return sig

    def sign(self, files: list[Path]) -> list[Path]:
        """`<file>.sig` beside each file (kept where one already verifies with this key); their paths."""
        from hubpub._files import atomic_path

        config, sigs = None, []
        for path in files:
            sig = signature_path(path)
            if not (self.key and not self.certificates and sig.is_file() and _verifies(path, sig, self.key)):
                config = config or self._config()
                with atomic_path(sig) as tmp:
                    try:
                        config.sign(path, tmp)
                    except Exception as e:  # the library's errors have no common base: a bad key, a network fault
                        raise SignatureError(f"{path}: cannot sign it: {_first_line(e)}") from None
            sigs.append(sig)
        return sigs


def doc_values(settings) -> dict | None:
    """What the docs say of the signatures the manifest's `signing:` section makes (None: unsigned):
    who signs, and how a reader checks."""
    if settings is None or not (settings.key or settings.public_key or settings.sigstore):
        return None
    if settings.sigstore:
        return {"sigstore": True, "identity": settings.identity, "issuer": settings.issuer}
    require("signing", "docs of signed artifacts")
    return {"sigstore": False, "fingerprint": public_key_fingerprint(Path(settings.public_key or settings.key)),
            "public_key_lines": public_key_pem(Path(settings.public_key or settings.key)).splitlines()}


def public_key_pem(key: Path) -> str:
    """The public half of a PEM private (or public) key, as PEM text."""
    from cryptography.hazmat.primitives import serialization

    return _public(key).public_bytes(serialization.Encoding.PEM,
                                     serialization.PublicFormat.SubjectPublicKeyInfo).decode().strip()


def _sigstore_config(config):
    """Keyless signing, never interactive: the identity token from SIGSTORE_ID_TOKEN or the CI's ambient
    credential (GitHub Actions with `id-token: write`, and the others sigstore-python detects)."""
    import os

    from sigstore.oidc import detect_credential

    token = os.environ.get("SIGSTORE_ID_TOKEN") or detect_credential()
    if not token:
        raise SignatureError("--sign sigstore needs an OIDC identity: none in this environment (in GitHub Actions "
                             "give the job `permissions: {id-token: write}`; elsewhere set SIGSTORE_ID_TOKEN)")
    try:  # the production trust root comes over the network (TUF), once, and is cached
        return config.use_sigstore_signer(identity_token=token)
    except Exception as e:  # noqa: BLE001 - offline, a proxy, a bad token: one line
        raise SignatureError(f"cannot set up Sigstore signing: {_first_line(e)}") from None


def signature_path(path: Path) -> Path:
    return path.with_name(path.name + SUFFIX)


def fresh_signature(path: Path, sig: Path | None = None) -> Path | None:
    """The signature of a built file (by default the `.sig` beside it), if one was made after the file
    (not one of an older build)."""
    sig = sig or signature_path(path)
    if sig.is_file() and path.is_file() and sig.stat().st_mtime_ns >= path.stat().st_mtime_ns:
        return sig
    return None


def public_key_fingerprint(key: Path) -> str:
    """The SHA-256 of a key's public half (DER SubjectPublicKeyInfo), in hex: the bundle's key hint."""
    from cryptography.hazmat.primitives import serialization

    der = _public(key).public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


def _public(key: Path):
    """The public half of a private key, or a public key, checked as `private_key` or `public_key` checks it."""
    data = _read_key(key)
    if "PRIVATE" in (_pem_label(data) or ""):
        return read_private_key(key, data).public_key()
    return read_public_key(key, data)


# What OpenSSF Model Signing signs and checks with (model_signing._signing.sign_ec_key): EC keys on these
# curves, in PEM, unencrypted (hubpub has no place to ask for a password).
CURVES = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}
WANTED_PRIVATE = "an unencrypted EC private key (P-256, P-384 or P-521) in PEM"
WANTED_PUBLIC = "an EC public key (P-256, P-384 or P-521) in PEM"
MAKE_KEY = ("make one with `openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out publisher.pem` "
            "and its public half with `openssl pkey -in publisher.pem -pubout -out publisher.pub.pem`")
MAX_PEM_BYTES = 1 << 20  # a key or a certificate chain is a few KiB; anything bigger is another file


def _read_key(path: Path, what: str = "key") -> bytes:
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_PEM_BYTES + 1)
    except IsADirectoryError:
        raise SignatureError(f"{path}: a folder, not a {what} file") from None
    except OSError as e:
        raise SignatureError(f"{path}: cannot read the {what}: {e.strerror or e}") from None
    if len(data) > MAX_PEM_BYTES:
        raise SignatureError(f"{path}: larger than 1 MiB, not a PEM {what}")
    return data


def _pem_label(data: bytes) -> str | None:
    """`PRIVATE KEY`, `PUBLIC KEY`, `CERTIFICATE`, ...: the first PEM block's label, None if there is none."""
    found = re.search(rb"-----BEGIN ([A-Z0-9 ]+)-----", data)
    return found[1].decode() if found else None


def _check_type(path: Path, key, wanted: str):
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        if key.curve.name in CURVES:
            return key
        kind = f"an EC key on the curve {key.curve.name}"
    elif isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        kind = "an RSA key"
    else:
        name = type(key).__name__.removeprefix("_").removesuffix("PrivateKey").removesuffix("PublicKey")
        kind = f"{'an' if name[:1] in 'AEIOU' else 'a'} {name} key"
    raise SignatureError(f"{path}: {kind}; OpenSSF Model Signing takes {wanted}: {MAKE_KEY}")


def read_private_key(path: Path, data: bytes | None = None):
    """The EC private key in `path`, or one `SignatureError` naming the file and what it should be."""
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization

    data = _read_key(path) if data is None else data
    label = _pem_label(data)
    if label is None:
        raise SignatureError(f"{path}: not a PEM file; expected {WANTED_PRIVATE}")
    if label == "ENCRYPTED PRIVATE KEY" or b"Proc-Type: 4,ENCRYPTED" in data:
        raise SignatureError(f"{path}: the key is encrypted; hubpub signs with {WANTED_PRIVATE}: write a decrypted "
                             f"copy with `openssl pkey -in {path} -out decrypted.pem` (keep it as secret)")
    if "PUBLIC KEY" in label or label == "CERTIFICATE":
        raise SignatureError(f"{path}: a {label.lower().replace('rsa ', 'RSA ')}, where the private key is needed; "
                             f"expected {WANTED_PRIVATE}")
    if label == "OPENSSH PRIVATE KEY":
        raise SignatureError(f"{path}: an OpenSSH key; expected {WANTED_PRIVATE}: {MAKE_KEY}")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:  # "Password was not given but private key is encrypted"
        raise SignatureError(f"{path}: the key is encrypted; hubpub signs with {WANTED_PRIVATE}") from None
    except (ValueError, UnsupportedAlgorithm):
        raise SignatureError(f"{path}: its {label} block does not read as a private key; expected "
                             f"{WANTED_PRIVATE}") from None
    return _check_type(path, key, WANTED_PRIVATE)


def read_public_key(path: Path, data: bytes | None = None):
    """The EC public key in `path`, or one `SignatureError` naming the file and what it should be."""
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization

    data = _read_key(path) if data is None else data
    label = _pem_label(data)
    if label is None:
        raise SignatureError(f"{path}: not a PEM file; expected {WANTED_PUBLIC}")
    if "PRIVATE" in label:
        raise SignatureError(f"{path}: a private key, where its public half is needed (share that one, never "
                             f"this): write it with `openssl pkey -in {path} -pubout -out public.pem`")
    if label == "CERTIFICATE":
        raise SignatureError(f"{path}: a certificate, where a public key is needed; expected {WANTED_PUBLIC} "
                             f"(`openssl x509 -in {path} -pubkey -noout > public.pem`)")
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm):
        raise SignatureError(f"{path}: its {label} block does not read as a public key; expected "
                             f"{WANTED_PUBLIC}") from None
    return _check_type(path, key, WANTED_PUBLIC)


def check_certificates(certificates: tuple[Path, ...], key: Path) -> None:
    """The signing certificate (first) holds `key`'s public half, and every file reads as PEM certificates."""
    from cryptography import x509

    for i, path in enumerate(certificates):
        data = _read_key(path, "certificate")
        if _pem_label(data) != "CERTIFICATE":
            raise SignatureError(f"{path}: not a PEM certificate (-----BEGIN CERTIFICATE-----); --sign-cert takes "
                                 "the signing certificate first, then its chain")
        try:
            certs = x509.load_pem_x509_certificates(data)
        except ValueError:
            raise SignatureError(f"{path}: its CERTIFICATE block does not read as an X.509 certificate") from None
        if i == 0 and certs[0].public_key() != read_private_key(key).public_key():
            raise SignatureError(f"{path}: the certificate is not for the key {key} (its public key is another "
                                 "one); give the certificate issued for that key first")


def verify(path: Path, sig: Path, *, public_key: Path | None = None, identity: str | None = None,
           issuer: str | None = None, shown_as: str | None = None, only_signed: bool = False) -> None:
    """Check `sig` over `path`'s bytes (a file, or a folder's files) with a public key, or a Sigstore
    identity and issuer; SignatureError names the file and says why. `only_signed`: a folder's files the
    signature does not name are not checked (a hub's card and marker beside the signed files)."""
    require("signing", "checking signatures")
    from model_signing import verifying

    shown = shown_as or str(path)
    if not sig.is_file():
        raise SignatureError(f"{shown}: no signature ({shown}{SUFFIX} is missing)")
    config = verifying.Config()
    if public_key is not None:
        read_public_key(public_key)  # the key file checked first: one line naming it
        config = config.use_elliptic_key_verifier(public_key=public_key)
    elif identity and issuer:
        config = config.use_sigstore_verifier(identity=identity, oidc_issuer=issuer)
    else:
        raise SignatureError("checking a signature needs --public-key, or --identity with --issuer")
    if only_signed:
        config = config.set_ignore_unsigned_files(True)
    if (malformed := _malformed_bundle(sig)) is not None:
        raise SignatureError(f"{shown}: signature check failed: its {SUFFIX} is not a signature bundle ({malformed})")
    try:
        config.verify(path, sig)
    except Exception as e:  # ValueError on a mismatch, others on a malformed bundle or another key
        text = str(e)
        if text.startswith("Key mismatch"):
            reason = "made with another key than the one given"
        elif text.startswith("Signature mismatch"):
            reason = "these bytes are not the ones signed"
        elif type(e).__name__ == "InvalidSignature":
            reason = f"its {SUFFIX} was altered, or made with another key than the one given"
        elif isinstance(e, KeyError | TypeError | AttributeError | IndexError):  # a bundle's field missing or odd
            reason = f"its {SUFFIX} is not a well-formed signature bundle ({type(e).__name__}: {_first_line(e)})"
        else:
            reason = _first_line(e)
        raise SignatureError(f"{shown}: signature check failed: {reason}") from None


MAX_BUNDLE_BYTES = 16 << 20  # a bundle is a few KiB (a folder's lists every file's digest)


def _malformed_bundle(sig: Path) -> str | None:
    """Why `sig` cannot be a Sigstore bundle (empty, cut short, not JSON, no DSSE envelope), else None."""
    import json

    try:
        with open(sig, "rb") as f:
            data = f.read(MAX_BUNDLE_BYTES + 1)
    except OSError as e:
        return f"cannot be read: {e.strerror or e}"
    if not data.strip():
        return "empty"
    if len(data) > MAX_BUNDLE_BYTES:
        return "larger than 16 MiB"
    try:
        bundle = json.loads(data)
    except ValueError:
        return "not JSON: cut short, or another file"
    if not isinstance(bundle, dict) or not isinstance(bundle.get("dsseEnvelope"), dict):
        return "JSON without a DSSE envelope"
    return None


def _verifies(path: Path, sig: Path, key: Path) -> bool:
    import tempfile

    with tempfile.NamedTemporaryFile(suffix=".pem") as f:
        f.write(public_key_pem(key).encode() + b"\n")
        f.flush()
        try:
            verify(path, sig, public_key=Path(f.name))
        except SignatureError:
            return False
    return True


def _first_line(error: Exception) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0][:300]
