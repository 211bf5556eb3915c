"""Every key problem of `publish --sign-key/--sign-cert`, `verify --public-key` and `audit --public-key` is one
`error:` line naming the file and what it should be; the keys OpenSSF Model Signing takes (EC P-256, P-384,
P-521) sign and verify. Keys are made here with `cryptography`, as `openssl` would make them."""

from pathlib import Path

import pytest
from click.testing import CliRunner

from hubpub.cli import cli
from hubpub.signing import Signer, verify

pytest.importorskip("model_signing")


def _pem_private(key, password: bytes | None = None, traditional: bool = False) -> bytes:
    from cryptography.hazmat.primitives import serialization

    encryption = serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
    fmt = serialization.PrivateFormat.TraditionalOpenSSL if traditional else serialization.PrivateFormat.PKCS8
    return key.private_bytes(serialization.Encoding.PEM, fmt, encryption)


def _pem_public(key) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def _certificate(key, subject_key) -> bytes:
    """A self-signed certificate for `subject_key`, signed by `key`."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(subject_key.public_key())
            .serial_number(1).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM)


@pytest.fixture(scope="module")
def made():
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    p256 = ec.generate_private_key(ec.SECP256R1())
    return {"p256": p256, "rsa": rsa.generate_private_key(public_exponent=65537, key_size=2048),
            "ed25519": ed25519.Ed25519PrivateKey.generate(), "k1": ec.generate_private_key(ec.SECP256K1())}


def _file(folder: Path, name: str, data: bytes) -> Path:
    path = folder / name
    path.write_bytes(data)
    return path


# (file name, its bytes from the made keys, what the one error line says after "<file>: ")
PRIVATE_CASES = {
    "garbage": (lambda k: b"not a key at all\n", "not a PEM file; expected an unencrypted EC private key"),
    "empty": (lambda k: b"", "not a PEM file; expected an unencrypted EC private key"),
    "rsa": (lambda k: _pem_private(k["rsa"]), "an RSA key; OpenSSF Model Signing takes an unencrypted EC private "
            "key (P-256, P-384 or P-521) in PEM: make one with `openssl genpkey -algorithm EC -pkeyopt "
            "ec_paramgen_curve:P-256"),
    "rsa-traditional": (lambda k: _pem_private(k["rsa"], traditional=True), "an RSA key; OpenSSF Model Signing"),
    "ed25519": (lambda k: _pem_private(k["ed25519"]), "an Ed25519 key; OpenSSF Model Signing takes"),
    "secp256k1": (lambda k: _pem_private(k["k1"]), "an EC key on the curve secp256k1; OpenSSF Model Signing takes"),
    "encrypted": (lambda k: _pem_private(k["p256"], b"secret"), "the key is encrypted; hubpub signs with an "
                  "unencrypted EC private key"),
    "encrypted-traditional": (lambda k: _pem_private(k["p256"], b"secret", traditional=True),
                              "the key is encrypted; hubpub signs with"),
    "public": (lambda k: _pem_public(k["p256"]), "a public key, where the private key is needed"),
    "certificate": (lambda k: _certificate(k["p256"], k["p256"]), "a certificate, where the private key is needed"),
    "openssh": (lambda k: b"-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n",
                "an OpenSSH key; expected an unencrypted EC private key"),
    "bad-body": (lambda k: b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
                 "its PRIVATE KEY block does not read as a private key"),
}


def _one_error(result, path: Path, said: str, code: int = 1) -> None:
    assert result.exit_code == code, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {path}: {said}"), result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("case", sorted(PRIVATE_CASES))
def test_each_sign_key_problem_is_one_line(case, made, tmp_path, micro_manifest_path):
    data, said = PRIVATE_CASES[case]
    key = _file(tmp_path, f"{case}.pem", data(made))
    r = CliRunner().invoke(cli, ["publish", "--manifest", str(micro_manifest_path), "--dist", str(tmp_path / "d"),
                                 "--dest", str(tmp_path / "p"), "--sign-key", str(key)])
    _one_error(r, key, said)
    assert not (tmp_path / "p").exists()


def test_the_manifest_signing_key_missing_or_a_folder_is_one_line(tmp_path, micro_manifest_path):
    for name in ("missing.pem", "folder.pem"):
        if name == "folder.pem":
            (tmp_path / name).mkdir()
        text = micro_manifest_path.read_text() + f"signing: {{key: {tmp_path / name}}}\n"
        (tmp_path / "collection.yaml").write_text(text)
        r = CliRunner().invoke(cli, ["publish", "--manifest", str(tmp_path / "collection.yaml"), "--dist",
                                     str(tmp_path / "d"), "--dest", str(tmp_path / "p")])
        said = "cannot read the key: No such file or directory" if name == "missing.pem" else "a folder, not a key"
        _one_error(r, tmp_path / name, said)


PUBLIC_CASES = {
    "garbage": (lambda k: b"\x00\x01 binary", "not a PEM file; expected an EC public key (P-256, P-384 or P-521)"),
    "private": (lambda k: _pem_private(k["p256"]), "a private key, where its public half is needed (share that "
                "one, never this): write it with `openssl pkey -in"),
    "rsa": (lambda k: _pem_public(k["rsa"]), "an RSA key; OpenSSF Model Signing takes an EC public key"),
    "certificate": (lambda k: _certificate(k["p256"], k["p256"]), "a certificate, where a public key is needed"),
}


@pytest.mark.parametrize("command", ["verify", "audit"])
@pytest.mark.parametrize("case", sorted(PUBLIC_CASES))
def test_each_public_key_problem_is_one_line(case, command, made, tmp_path):
    data, said = PUBLIC_CASES[case]
    key = _file(tmp_path, f"{case}.pub.pem", data(made))
    target = tmp_path / "somewhere" / "1.tar.gz"  # the key is checked before anything is read
    r = CliRunner().invoke(cli, [command, str(target), "--public-key", str(key)])
    _one_error(r, key, said)


def test_sign_cert_problems_are_one_line(made, tmp_path, micro_manifest_path):
    from cryptography.hazmat.primitives.asymmetric import ec

    key = _file(tmp_path, "key.pem", _pem_private(made["p256"]))
    other = ec.generate_private_key(ec.SECP256R1())
    cases = [(_file(tmp_path, "garbage.crt", b"garbage"), "not a PEM certificate (-----BEGIN CERTIFICATE-----)"),
             (_file(tmp_path, "bad-body.crt", b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"),
              "its CERTIFICATE block does not read as an X.509 certificate"),
             (_file(tmp_path, "other.crt", _certificate(other, other)),
              f"the certificate is not for the key {key} (its public key is another one)")]
    for cert, said in cases:
        r = CliRunner().invoke(cli, ["publish", "--manifest", str(micro_manifest_path), "--dist", str(tmp_path / "d"),
                                     "--dest", str(tmp_path / "p"), "--sign-key", str(key), "--sign-cert", str(cert)])
        _one_error(r, cert, said)


@pytest.mark.parametrize("curve", ["SECP256R1", "SECP384R1", "SECP521R1"])
def test_the_curves_model_signing_takes_sign_and_verify(curve, tmp_path):
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(getattr(ec, curve)())
    private, public = _file(tmp_path, "k.pem", _pem_private(key)), _file(tmp_path, "k.pub.pem", _pem_public(key))
    artifact = _file(tmp_path, "model.onnx", b"bytes of a model" * 100)
    [sig] = Signer(key=private).sign([artifact])
    verify(artifact, sig, public_key=public)
