"""`hubpub audit` as an adversary meets it: the demo's own output, signature files tampered in each way,
destinations that are no hubpub publish, symbolic links and loops, a file replaced by a folder, links
out of the destination, files of gigabytes (memory measured in a process of its own), and remote
destinations without credentials."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from hubpub.cli import cli
from hubpub.destinations import parse as parse_destination
from hubpub.publish import publish
from hubpub.signing import Signer
from tests.test_publish import _setup
from tests.test_signing import BASE, _key_pair, _problems, _with_site

pytest.importorskip("model_signing")


def _audit(*args):
    return CliRunner().invoke(cli, ["audit", *map(str, args)])


def test_audit_right_after_the_demo_is_clean(demo_run, tmp_path):
    """`make demo`, then `hubpub audit dist/published` from anywhere: the demo's notebooks stay in its build,
    and the publish recorded where."""
    assert demo_run.returncode == 0, demo_run.stderr
    published = demo_run.dist / "published"
    r = subprocess.run([sys.executable, "-m", "hubpub", "audit", str(published)], cwd=tmp_path, env=demo_run.env,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.strip().startswith(f"{published}: ") and " 0 links" not in r.stdout
    named = _audit(published, "--notebooks", demo_run.dist / "notebooks")  # the same, said
    assert named.exit_code == 0, named.output
    elsewhere = _audit(published, "--checkout", tmp_path)  # a checkout without them: each Colab link is dead
    assert elsewhere.exit_code == 1
    assert {w.split(":")[0] for _, w in _problems(elsewhere.output)} == {"Colab link https"}


@pytest.fixture(scope="module")
def signed(micro_manifest_path, micro_dist, tmp_path_factory):
    """A directory publish of micro_1k_224, every artifact file signed; (folder, public key). Copy it."""
    tmp = tmp_path_factory.mktemp("signed")
    (key, pub), _ = _key_pair(tmp, "publisher"), None
    manifest, dist = _with_site(_setup(micro_manifest_path, micro_dist, tmp, bucket=None), BASE)
    out = tmp / "published"
    publish(manifest, dist, parse_destination(str(out)), public_url=BASE, signer=Signer(key=key))
    return out, pub, dist


def _copy(signed, tmp_path) -> Path:
    shutil.copytree(signed[0], tmp_path / "published", symlinks=True)
    return tmp_path / "published"


def _tampered(sig: Path, other: Path) -> bytes:
    bundle = json.loads(sig.read_text())
    s = bundle["dsseEnvelope"]["signatures"][0]["sig"]
    bundle["dsseEnvelope"]["signatures"][0]["sig"] = ("A" if s[0] != "A" else "B") + s[1:]
    return json.dumps(bundle).encode()


SIG_CASES = {  # how the .sig is spoiled, and what the check says after "signature check failed: "
    "tampered": (_tampered, "its .sig was altered, or made with another key than the one given"),
    "truncated": (lambda sig, other: sig.read_bytes()[: sig.stat().st_size // 2],
                  "its .sig is not a signature bundle (not JSON: cut short, or another file)"),
    "empty": (lambda sig, other: b"", "its .sig is not a signature bundle (empty)"),
    "swapped": (lambda sig, other: other.read_bytes(), "these bytes are not the ones signed"),
    "a JSON list": (lambda sig, other: b"[1, 2]", "its .sig is not a signature bundle (JSON without a DSSE "
                                                  "envelope)"),
    "no verification material": (lambda sig, other: b'{"dsseEnvelope": {"payload": ""}}',
                                 "its .sig is not a well-formed signature bundle (KeyError: 'verificationMaterial')"),
}


@pytest.mark.parametrize("case", sorted(SIG_CASES))
def test_a_spoiled_signature_is_refused_by_verify_and_audit(case, signed, tmp_path):
    spoil, said = SIG_CASES[case]
    out, pub, dist = _copy(signed, tmp_path), signed[1], signed[2]
    sig = out / "micro_1k_224/1.tar.gz.sig"
    sig.write_bytes(spoil(sig, out / "micro_1k_224/1.keras.sig"))
    r = _audit(out, "--public-key", pub, "--checkout", tmp_path)
    assert r.exit_code == 1, r.output
    assert _problems(r.output) == [("micro_1k_224/1.tar.gz", f"signature check failed: {said}")]
    v = CliRunner().invoke(cli, ["verify", str(out / "micro_1k_224/1.tar.gz"), "--public-key", str(pub),
                                 "--report", str(dist / "reports/micro_1k_224.json")])
    assert v.exit_code == 1 and v.output.strip().splitlines() == [
        f"error: {out / 'micro_1k_224/1.tar.gz'}: signature check failed: {said}"], v.output


def test_a_keyless_audit_of_docs_claiming_signatures_needs_the_sig_files(micro_manifest_path, micro_dist, tmp_path):
    from hubpub.docs import render_docs
    from hubpub.manifest import parse_manifest
    from tests.conftest import copy_built

    key, pub = _key_pair(tmp_path, "publisher")
    path = tmp_path / "collection.yaml"
    path.write_text(micro_manifest_path.read_text() + f"signing: {{key: {key.name}}}\n")
    manifest = parse_manifest(path.read_text(), path)
    dist = copy_built(micro_dist, tmp_path / "dist", saved_models=False)
    render_docs(manifest, dist=dist, out=dist / "docs")
    out = tmp_path / "published"
    publish(manifest, dist, parse_destination(str(out)), public_url=BASE)  # signed with the manifest's key
    assert _audit(out, "--checkout", tmp_path).exit_code == 0
    for sig in out.rglob("*.sig"):  # a publish that made none, as an older hubpub's could
        sig.unlink()
    r = _audit(out, "--checkout", tmp_path)
    assert r.exit_code == 1, r.output
    rows = _problems(r.output)
    assert len(rows) >= 8 and all(w.startswith("no signature (.sig missing), though docs/") and
                                  w.endswith(" says each file is signed") for _, w in rows)


def test_audit_refuses_what_no_publish_wrote(tmp_path):
    (tmp_path / "one").mkdir()
    (tmp_path / "one/notes.txt").write_text("hello\n")
    for folder in (tmp_path / "one", Path("/etc")):
        r = _audit(folder, "--public-url", "http://127.0.0.1:9/x")
        assert r.exit_code == 1, r.output
        [line] = r.output.strip().splitlines()
        assert line.startswith(f"error: {folder}: holds no hubpub collection: none of its ") and \
            "is an artifact file (.tar.gz, .keras, .tflite, .onnx, .onnx_data)" in line
    (tmp_path / "empty").mkdir()
    assert _audit(tmp_path / "empty").output == f"error: {tmp_path / 'empty'}: nothing is published there\n"


def test_links_loops_folders_and_pipes_are_findings_never_followed(signed, tmp_path):
    out = _copy(signed, tmp_path)
    (out / "loop").symlink_to("loop")  # a link to itself
    (out / "site/again").symlink_to("..")  # a folder loop
    (out / "docs/assets/passwd.md").symlink_to("/etc/passwd")  # out of the destination
    os.mkfifo(out / "micro_1k_224/pipe.md")  # opened, it would block the audit
    keras = out / "micro_1k_224/1.keras"
    keras.unlink()
    (keras / "inside").mkdir(parents=True)  # a folder where the file was, with a file in it
    (keras / "inside/x.bin").write_bytes(b"x")
    r = _audit(out, "--checkout", tmp_path)
    assert r.exit_code == 1, r.output
    rows = dict(_problems(r.output))
    assert rows["loop"] == "a symbolic link (to loop): publish writes none, and an audit does not follow it"
    assert rows["site/again"].startswith("a symbolic link (to ..)")
    assert rows["docs/assets/passwd.md"].startswith("a symbolic link (to /etc/passwd)")
    assert rows["micro_1k_224/pipe.md"] == "not a regular file (a FIFO, a socket or a device): not read"
    found = _problems(r.output)
    assert ("micro_1k_224/1.keras", "a folder stands where the file goes, but its .sha256 is published") in found
    assert any(w == f"link {BASE}/micro_1k_224/1.keras: not published" for _, w in found)


def test_links_out_of_the_destination_are_reported(signed, tmp_path):
    out = _copy(signed, tmp_path)
    doc = next(out.rglob("docs/**/micro_1k_224/1.md"))
    doc.write_text(doc.read_text() + f"\n[up]({BASE}/../../etc/passwd)\n"
                   "<!-- asset-path: https://elsewhere.example.com/micro_1k_224/1.tar.gz -->\n"
                   "[nb](https://colab.research.google.com/github/o/r/blob/main/notebooks/../../../../etc/passwd)\n")
    page = out / "site/index.html"
    page.write_text(page.read_text().replace("</body>", '<a href="../../../../etc/passwd">x</a></body>'))
    r = _audit(out, "--checkout", tmp_path)
    assert r.exit_code == 1, r.output
    said = {w for _, w in _problems(r.output)}
    assert f"link {BASE}/../../etc/passwd: not published" in said
    assert f"asset-path https://elsewhere.example.com/micro_1k_224/1.tar.gz: not below {BASE}, where this " \
           "collection is read from" in said
    assert "Colab link https://colab.research.google.com/github/o/r/blob/main/notebooks/../../../../etc/passwd: " \
           "not a notebook path of a repository" in said
    assert "link ../../../../etc/passwd: not published" in said


GIB = 1 << 30


def test_files_of_gigabytes_are_read_in_bounded_memory(signed, tmp_path):
    """Sparse files of gigabytes (a 2 GiB doc, read through; a 3 GiB page and .sha256, which are not) and a
    256 MiB artifact, hashed: the audit, in a process of its own, streams each, and its peak memory stays
    far below any one of them."""
    out = _copy(signed, tmp_path)
    for relative, size in (("docs/assets/huge.md", 2 * GIB), ("site/huge.html", 3 * GIB),
                           ("micro_1k_224/1.tar.gz.sha256", 3 * GIB), ("micro_1k_224/1.onnx", GIB // 4)):
        with open(out / relative, "wb") as f:
            f.truncate(size)
    # The process's own peak (VmHWM: its memory since exec); ru_maxrss would also count the pytest process it
    # was forked from, which Linux carries over an exec.
    code = ("import sys\nfrom hubpub.cli import cli\n"
            "code = cli.main(sys.argv[1:], prog_name='hubpub', standalone_mode=False)\n"
            "hwm = next(line for line in open('/proc/self/status') if line.startswith('VmHWM:'))\n"
            "print('peak', int(hwm.split()[1]) * 1024, code)\n")
    r = subprocess.run([sys.executable, "-c", code, "-q", "audit", str(out), "--checkout", str(tmp_path)],
                       capture_output=True, text=True, timeout=600)
    peak = int(r.stdout.split("peak ")[1].split()[0])
    assert peak < 400 * 2**20, f"peak RSS {peak / 2**20:.0f} MiB"
    rows = dict(_problems(r.stdout))
    assert rows["site/huge.html"].startswith("3,221,225,472 bytes: larger than any page hubpub writes")
    assert rows["micro_1k_224/1.tar.gz"] == "what is published as its sha256 is no digest (64 hex digits): " \
                                           f"{chr(0) * 24!r}"
    assert rows["micro_1k_224/1.onnx"].startswith("sha256 ")


REMOTE = {"gs://some-bucket/models": "no Google Cloud credentials found",
          "kaggle://someone/model": "on Kaggle: ",
          "hf://someorg": "listing hf://someorg: "}


@pytest.mark.parametrize("dest", sorted(REMOTE))
def test_a_remote_audit_without_credentials_is_one_line(dest, tmp_path):
    """No credentials in the environment; the hubs' API addresses unreachable (loopback port 9)."""
    if dest.startswith("hf://") and not os.environ.get("HUBPUB_SLOW"):
        pytest.skip("huggingface_hub retries a refused connection for 23 s; HUBPUB_SLOW=1 runs it")
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "HF_ENDPOINT": "http://127.0.0.1:9",
           "KAGGLE_API_ENDPOINT": "http://127.0.0.1:9", "NO_GCE_CHECK": "true", "GCE_METADATA_HOST": "127.0.0.1:9",
           "HUBPUB_DISABLE_PROGRESS": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}
    r = subprocess.run([sys.executable, "-m", "hubpub", "audit", dest], env=env, capture_output=True, text=True,
                       timeout=300, cwd=tmp_path)
    assert r.returncode == 1, r.stdout + r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and REMOTE[dest] in lines[0], r.stderr
