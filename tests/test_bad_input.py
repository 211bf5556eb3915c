"""Bad input, as a user makes it: one `error:` line that says what and where, the documented exit code
(1 for input, 2 for the command line, 130 for Ctrl-C), no traceback, and nothing half-written."""

import io
import json
import os
import re
import signal
import subprocess
import sys
import tarfile
import textwrap
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from hubpub.cli import cli
from hubpub.record import SCHEMA_VERSION
from tests.conftest import copy_built

BOMB = """\
a: &a ["x", "x", "x", "x", "x", "x", "x", "x", "x", "x"]
b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]
c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]
d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]
e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]
f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]
g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f, *f]
h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g, *g]
i: &i [*h, *h, *h, *h, *h, *h, *h, *h, *h, *h]
"""


def run(*args, code: int = 1, **kw):
    """Run the CLI; assert the exit code, no traceback, and only `error:` lines (at least one) on stderr."""
    # -q: no stage log lines, only errors
    result = CliRunner().invoke(cli, ["-q", *(str(a) for a in args)], prog_name="hubpub", **kw)
    assert result.exit_code == code, (result.output, result.exception)
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit), result.exception
    errors = result.stderr.splitlines()
    assert errors and all(line.startswith("error: ") for line in errors), result.stderr
    assert "Traceback" not in result.output
    return errors


# --------------------------------------------------------------------------- manifests


def test_alias_bomb_is_refused_quickly(tmp_path):
    (tmp_path / "m.yaml").write_text(BOMB)
    start = time.perf_counter()
    [error] = run("validate", "--manifest", tmp_path / "m.yaml")
    assert time.perf_counter() - start < 5
    assert "m.yaml: more than 200,000 YAML nodes once aliases are expanded (an alias bomb?)" in error


def test_huge_manifest_is_refused_before_parsing(tmp_path):
    path = tmp_path / "m.yaml"
    path.write_text("# padding\n" * 500_000)
    [error] = run("validate", "--manifest", path)
    assert error == f"error: {path}: 5,000,000 bytes; a manifest may be at most 4,194,304"


def test_non_utf8_manifest(tmp_path, manifest_text):
    path = tmp_path / "m.yaml"
    path.write_bytes(manifest_text.encode().replace(b"name: hubpub", "name: hübpub".encode("latin-1"), 1))
    [error] = run("validate", "--manifest", path)
    assert f"{path}: line " in error and "not UTF-8 text (byte 0xfc" in error


# --------------------------------------------------------------------------- templates


def test_template_cannot_run_code(micro_manifest_path, micro_dist, tmp_path):
    marker = tmp_path / "pwned"
    template = tmp_path / "evil.md.j2"
    template.write_text(f"{{{{ cycler.__init__.__globals__.os.system('touch {marker}') }}}}\n")
    [error] = run("docs", "--manifest", micro_manifest_path, "--dist", micro_dist, "--out", tmp_path / "out",
                  "--template", template)
    assert "evil.md.j2:1: refused by the template sandbox" in error and "__init__" in error
    assert not marker.exists()
    assert not (tmp_path / "out").exists(), "a failed docs run leaves no folder"


@pytest.mark.parametrize("include", ["/etc/passwd", "../../../../etc/passwd"])
def test_template_cannot_include_outside_the_templates_folders(micro_manifest_path, micro_dist, tmp_path, include):
    template = tmp_path / "inc.md.j2"
    template.write_text(f"{{% include '{include}' %}}\n")
    [error] = run("docs", "--manifest", micro_manifest_path, "--dist", micro_dist, "--out", tmp_path / "out",
                  "--template", template)
    assert f"template {include!r} not found in the templates folders" in error
    assert "a template can include only templates inside them" in error


def test_docs_out_is_a_file(micro_manifest_path, micro_dist, tmp_path):
    (tmp_path / "file").write_text("x")
    [error] = run("docs", "--manifest", micro_manifest_path, "--dist", micro_dist, "--out", tmp_path / "file")
    assert error == f"error: {tmp_path / 'file'}: --out is a file, not a folder"


def test_docs_errors_name_the_final_paths(micro_manifest_path, micro_dist, tmp_path, root):
    template = tmp_path / "bad.md.j2"
    template.write_text((root / "hubpub/templates/model.md.j2").read_text().replace(
        "<!-- task: {{ a.task }} -->", "<!-- task: image-nonsense -->"))
    out = tmp_path / "out"
    errors = run("docs", "--manifest", micro_manifest_path, "--dist", micro_dist, "--out", out, "--template", template)
    assert errors and all(".docs.tmp" not in e for e in errors)
    assert f"error: {out}/assets/docs/testpub/models/micro_1k_224/1.md:" in errors[0]
    assert "unknown task 'image-nonsense'" in errors[0]
    assert not out.exists()


# --------------------------------------------------------------------------- checkpoints


def test_zero_byte_checkpoint(micro_manifest_path, tmp_path):
    (tmp_path / "empty.pth").write_bytes(b"")
    [error] = run("build", "micro_1k_224", "--manifest", micro_manifest_path, "--out", tmp_path / "dist",
                  "--checkpoint", tmp_path / "empty.pth")
    assert error == f"error: {tmp_path / 'empty.pth'}: the file is empty (0 bytes); download it again"


def test_pickle_with_code_is_refused_as_unsafe(micro_manifest_path, tmp_path):
    torch = pytest.importorskip("torch")
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    torch.save({"model": Evil()}, tmp_path / "evil.pth")
    [error] = run("build", "micro_1k_224", "--manifest", micro_manifest_path, "--out", tmp_path / "dist",
                  "--checkpoint", tmp_path / "evil.pth")
    assert "evil.pth: refused as unsafe: the pickle holds Python code" in error
    assert "system" in error and "corrupt" not in error
    assert not marker.exists()


# --------------------------------------------------------------------------- command line


@pytest.mark.parametrize("size", [("-5", "0"), ("8", "8"), ("100000", "224")])
def test_parity_sizes_out_of_range(micro_manifest_path, tmp_path, size):
    [error] = run("verify-parity", "micro_1k_224", "--manifest", micro_manifest_path, "--checkpoint",
                  tmp_path / "never-read.pth", "--size", *size, code=2)
    assert error.startswith(f"error: Invalid value for --size: {size[0]} {size[1]}: height and width must be "
                            "between 32 (the model's total stride) and 4096 pixels")
    assert "hubpub verify-parity --help" in error


def test_usage_errors_exit_2_with_one_error_line(tmp_path):
    [error] = run("build-all", "--bogus", code=2)
    assert error.startswith("error: No such option '--bogus'.") and error.endswith("(see `hubpub build-all --help`)")
    [error] = run("verify", code=2)
    assert error.startswith("error: Missing argument 'HANDLE'")



# A script that runs one command line in this process and says its exit code and whether TensorFlow was imported.
_MODULES_AFTER = """\
import json, sys
from hubpub.cli import cli
code = cli.main(sys.argv[1:], prog_name="hubpub", standalone_mode=False)
print(json.dumps([code, "tensorflow" in sys.modules, "keras" in sys.modules]))
"""


@pytest.mark.parametrize(("args", "code", "said"), [
    (["build", "micro_1k_224", "--kinds", "bogus"], 2, "Invalid value for --kinds"),
    (["build", "no_such_variant"], 1, "no_such_variant"),
    (["verify-parity", "micro_1k_224", "--checkpoint", "x.pth", "--size", "8", "8"], 2, "Invalid value for --size"),
    (["verify-parity", "micro_1k_224", "--checkpoint", "x.pth", "--kinds", "bogus"], 2, "Invalid value for --kinds"),
    (["verify", "x.tar.gz", "--max-unpacked", "bogus"], 2, "expected a size like 16G"),
    (["verify", "x.tar.gz", "--identity", "someone"], 2, "--identity and --issuer go together"),
    (["verify", "x.onnx", "--fine-tune"], 2, "--fine-tune trains a SavedModel or a .keras file"),
    (["eval", "no_such_artifact", "--data", "."], 1, "not an artifact of"),
    (["eval", "micro_1k_224_fe", "--data", "."], 1, "is a feature extractor"),
])
def test_a_command_line_mistake_answers_without_importing_tensorflow(micro_manifest_path, tmp_path, args, code, said):
    manifest = ["--manifest", str(micro_manifest_path)] if args[0] in ("build", "verify-parity", "eval") else []
    proc = subprocess.run([sys.executable, "-c", _MODULES_AFTER, *args, *manifest], capture_output=True, text=True,
                          cwd=tmp_path, timeout=120)
    assert json.loads(proc.stdout.splitlines()[-1]) == [code, False, False], proc.stderr
    [error] = proc.stderr.splitlines()
    assert error.startswith("error: ") and said in error, error


# --------------------------------------------------------------------------- verify


def _saved_model_tar(path: Path, extra: list[tuple[str, bytes]] = (), root: bytes = b"pb") -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in [("saved_model.pb", root), *extra]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_verify_refuses_an_archive_bomb_before_extracting(micro_dist, tmp_path, hub_cache):
    bomb = _saved_model_tar(tmp_path / "bomb.tar.gz", [("variables/variables.data-00000-of-00001",
                                                        bytes(3 * 2**20))])
    assert bomb.stat().st_size < 20_000  # zeros compress a thousandfold
    [error] = run("verify", bomb, "--report", micro_dist / "reports/micro_1k_224.json", "--max-unpacked", "1M")
    assert error.startswith(f"error: {bomb}: unpacks to more than 1,048,576 bytes")
    assert "--max-unpacked" in error
    assert not hub_cache.exists() or not any(hub_cache.iterdir())


def test_verify_names_the_handle_for_an_absolute_member(micro_dist, tmp_path, file_server, hub_cache):
    archive = _saved_model_tar(file_server.root / "abs.tar.gz", [("/etc/evil", b"x")])
    url = f"{file_server.url}/abs.tar.gz"
    [error] = run("verify", url, "--report", micro_dist / "reports/micro_1k_224.json")
    assert error == f"error: {url}: member /etc/evil escapes the archive root"
    [error] = run("verify", archive, "--report", micro_dist / "reports/micro_1k_224.json")
    assert error == f"error: {archive}: member /etc/evil escapes the archive root"


def test_verify_errors_name_the_path_given(micro_dist, tmp_path, hub_cache):
    broken = _saved_model_tar(tmp_path / "micro_1k_224.tar.gz", root=b"not a protobuf")
    [error] = run("verify", broken, "--report", micro_dist / "reports/micro_1k_224.json")
    assert error.startswith(f"error: {broken}: hub.KerasLayer could not load it")
    assert "127.0.0.1" not in error and "hubpub-verify-" not in error


def test_verify_a_file_that_is_not_a_keras_archive(micro_dist, tmp_path):
    bad = tmp_path / "model.keras"
    bad.write_text("not a zip")
    [error] = run("verify", bad, "--report", micro_dist / "reports/micro_1k_224.json")
    assert error == f"error: {bad}: not a .keras file (a zip archive of config and weights)"


def test_verify_report_missing_keys(micro_dist, tmp_path):
    report = tmp_path / "r.json"
    target = micro_dist / "saved_models/micro_1k_224"
    report.write_text(json.dumps({"artifact": "x", "reference": {"inputs": {"height": 8}}}))
    [error] = run("verify", target, "--report", report)
    assert error == f"error: {report}: not a build report of this hubpub (schema None, expected " \
                    f"{SCHEMA_VERSION}); rebuild the artifact (or pass --report with the artifact's build report)"
    record = json.loads((micro_dist / "reports/micro_1k_224.json").read_text())
    del record["tarball"]
    report.write_text(json.dumps(record))
    [error] = run("verify", target, "--report", report)
    assert error.startswith(f"error: {report}: incomplete build report (KeyError: 'tarball'); rebuild the artifact")
    record = json.loads((micro_dist / "reports/micro_1k_224.json").read_text())
    del record["reference"]["outputs"]
    report.write_text(json.dumps(record))
    [error] = run("verify", target, "--report", report)
    assert error == f"error: {report}: the build report's reference record is incomplete ('outputs'); rebuild " \
                    "the artifact"
    report.write_text("{not json")
    [error] = run("verify", target, "--report", report)
    assert error.startswith(f"error: {report}: not a build report (invalid JSON")


# --------------------------------------------------------------------------- publish


def _dist_with_docs(micro_manifest_path, micro_dist, tmp_path) -> Path:
    dist = tmp_path / "dist"
    copy_built(micro_dist, dist, saved_models=False)
    result = CliRunner().invoke(cli, ["docs", "--manifest", str(micro_manifest_path), "--dist", str(dist)])
    assert result.exit_code == 0, result.output
    return dist


def test_publish_to_a_file_or_an_unwritable_directory(micro_manifest_path, micro_dist, tmp_path):
    dist = _dist_with_docs(micro_manifest_path, micro_dist, tmp_path)
    (tmp_path / "a-file").write_text("x")
    common = ["publish", "--manifest", micro_manifest_path, "--dist", dist, "--public-url", "http://127.0.0.1:9/b"]
    [error] = run(*common, "--dest", tmp_path / "a-file")
    assert error == f"error: {tmp_path / 'a-file'}: the destination is a file, not a directory"
    [error] = run(*common, "--dest", tmp_path / "a-file" / "below")
    assert error.startswith(f"error: {tmp_path / 'a-file' / 'below'}: cannot write to the destination: ")
    [error] = run(*common, "--dest", "/proc/hubpub-cannot-be-here/x")
    assert error.startswith("error: /proc/hubpub-cannot-be-here/x: cannot write to the destination: ")


def test_publish_failure_midway_says_what_did_upload(micro_manifest_path, micro_dist, tmp_path):
    """A real fault, no mock: a file stands where one artifact's folder must go."""
    dist = _dist_with_docs(micro_manifest_path, micro_dist, tmp_path)
    dest = tmp_path / "published"
    dest.mkdir()
    (dest / "micro_1k_224_fe").write_text("in the way")
    errors = run("publish", "--manifest", micro_manifest_path, "--dist", dist, "--dest", dest,
                 "--public-url", "http://127.0.0.1:9/bucket/micro", "--jobs", "1")
    # micro_1k_224_fe's 10 files (tarball, .keras, ONNX, 2 LiteRT files, each with its .sha256) cannot go;
    # the classifier's 11 (the same and its LiteRT class names) do; the 8 docs and pages, which link them all,
    # are held back. One line says it.
    [error] = errors
    assert error.startswith(f"error: {dest}: 10 of 21 upload(s) failed: {dest}/micro_1k_224_fe/")
    assert ": cannot write: File exists (and 9 more); 11 uploaded and stay published; the 8 docs and pages " \
           "were not uploaded (rerun to upload the rest)" in error
    uploaded = sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file() and p.parent != dest)
    assert "micro_1k_224/1.tar.gz" in uploaded and "micro_1k_224/1.keras" in uploaded and len(uploaded) == 11
    assert "micro_1k_224/1.int8.tflite.sha256" in uploaded
    assert "micro_1k_224/1.onnx" in uploaded and "micro_1k_224/1.onnx.sha256" in uploaded
    assert not (dest / "docs").exists() and not (dest / "site").exists()


def test_refused_publish_leaves_no_folder(micro_manifest_path, micro_dist, tmp_path):
    dist = _dist_with_docs(micro_manifest_path, micro_dist, tmp_path)
    dest = tmp_path / "new" / "published"
    [error] = run("publish", "--manifest", micro_manifest_path, "--dist", dist, "--dest", dest,
                  "--public-url", "https://elsewhere.example.com/models")
    assert "asset-path http://127.0.0.1:9/bucket/micro/micro_1k_224/1.tar.gz is not below " \
           "https://elsewhere.example.com/models" in error
    assert error.endswith(f"hubpub docs --dest {dest} --public-url https://elsewhere.example.com/models")
    assert not (tmp_path / "new").exists()


# --------------------------------------------------------------------------- downloads


@pytest.mark.parametrize("fault", ["404", "reset"])
def test_failed_download_leaves_no_empty_cache_folder(file_server, tmp_path, monkeypatch, fault):
    from hubpub.errors import FetchError
    from hubpub.fetch import fetch

    cache = tmp_path / "cache"
    url = f"{file_server.url}/missing.pth"
    if fault == "reset":  # the connection closes before the first byte, every time
        (file_server.root / "reset.pth").write_bytes(b"x" * 1000)
        file_server.faults["/reset.pth"] = ("drop", 0, 99)
        url = f"{file_server.url}/reset.pth"
    with pytest.raises(FetchError, match="HTTP 404" if fault == "404" else "download failed after 1 retries"):
        fetch(url, cache=cache, retries=1, backoff=0)
    assert not cache.exists() or not any(cache.rglob("*"))


# --------------------------------------------------------------------------- Ctrl-C


def _interrupt_at(args: list[str], stage: str, tmp_path: Path):
    # The marker is in every process this run starts (workers inherit the environment), so survivors are
    # found even once re-parented to init.
    env = {**os.environ, "HUBPUB_DISABLE_PROGRESS": "1", "PYTHONUNBUFFERED": "1", "HUBPUB_TEST_RUN": str(tmp_path)}
    # SIGINT back to its default in the child: a test run started in the background of a shell
    # without job control inherits SIGINT ignored, and so would hubpub.
    proc = subprocess.Popen([sys.executable, "-m", "hubpub", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True, env=env,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    seen, deadline = [], time.time() + 240
    for line in proc.stderr:
        seen.append(line)
        if stage in line:
            # into the stage; the last stages of a micro build take milliseconds, and a Ctrl-C after the
            # parent has finished its work meets an interpreter already exiting, not hubpub
            time.sleep(0.0 if stage.endswith(": pack") else 0.3)
            os.killpg(proc.pid, signal.SIGINT)  # as a terminal's Ctrl-C does: the whole process group
            break
        assert time.time() < deadline, seen
    _, err = proc.communicate(timeout=120)
    return proc, err


def _micro_args(command: str, manifest: Path, checkpoint: Path, out: Path) -> list[str]:
    # --no-parity: PyTorch's import and reference run before the stages interrupted here, and show nothing
    args = [command, "--manifest", str(manifest), "--out", str(out), "--no-parity"]
    return args + (["--only", "micro_1k_224", "--checkpoint", f"micro_1k_224={checkpoint}"] if command == "build-all"
                   else ["micro_1k_224", "--checkpoint", str(checkpoint)])


def _artifact_bytes(out: Path) -> dict[str, bytes]:
    """What a user downloads of a build: the tarballs and `.keras` files with their `.sha256`."""
    return {str(p.relative_to(out)): p.read_bytes() for folder in ("tars", "keras") for p in (out / folder).iterdir()}


def _uninterrupted(micro_pair) -> dict[str, bytes]:
    """micro_1k_224's artifacts (both kinds) as the shared micro pair built them, in one go."""
    return {name: data for name, data in _artifact_bytes(micro_pair.dist).items()
            if Path(name).name.startswith(("micro_1k_224.", "micro_1k_224_fe."))}


def _check_interrupted(proc, err: str, out: Path, tmp_path: Path) -> None:
    """One line, exit 130, no temp file and no process of the run left."""
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    lines = err.splitlines()  # stage log lines may come first; then the one error line, last
    assert lines[-1] == "error: interrupted; finished files are kept, rerun the command to go on", err
    assert [line for line in lines if "error" in line.lower()] == lines[-1:], err
    left = [p for p in out.rglob("*") if p.name.startswith(".") and p.name not in (".stages", ".hubpub.lock")]
    assert not left if out.exists() else True, left
    time.sleep(0.5)
    assert not processes_of_run(tmp_path), "processes of the interrupted run left running"


# In the order a build-all logs them: each rerun goes on from the stages done before, so the next stage of
# the list still runs in it.
BUILD_ALL_STAGES = ("micro_1k_224: port", "micro_1k_224: export", "micro_1k_224_fe: keras-check",
                    "micro_1k_224: round-trip", "micro_1k_224_fe: pack")


def test_ctrl_c_at_each_stage_of_a_build_all_then_a_rerun_makes_the_same_bytes(micro_manifest_path, micro_checkpoints,
                                                                            micro_pair, tmp_path):
    """Ctrl-C at each stage in turn, each in the rerun of the run interrupted before: one line, exit 130, no temp
    file and no process left each time; then a last rerun whose artifacts are byte for byte an uninterrupted
    build's (the shared micro pair's, built in one go)."""
    out = tmp_path / "dist"
    args = _micro_args("build-all", micro_manifest_path, micro_checkpoints["micro_1k_224"], out)
    for stage in BUILD_ALL_STAGES:
        proc, err = _interrupt_at(args, stage, tmp_path)
        _check_interrupted(proc, err, out, tmp_path)
    rerun = subprocess.run([sys.executable, "-m", "hubpub", "-q", *args], capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    uninterrupted = _uninterrupted(micro_pair)
    assert len(uninterrupted) == 8 and _artifact_bytes(out) == uninterrupted


@pytest.mark.parametrize("stage", ["micro_1k_224: export", "micro_1k_224: keras-check"])
def test_ctrl_c_of_a_build_is_one_line_and_exit_130(micro_manifest_path, micro_checkpoints, tmp_path, stage):
    out = tmp_path / "dist"
    proc, err = _interrupt_at(_micro_args("build", micro_manifest_path, micro_checkpoints["micro_1k_224"], out),
                              stage, tmp_path)
    _check_interrupted(proc, err, out, tmp_path)


def test_a_rerun_sweeps_what_an_older_interrupted_build_left(micro_manifest_path, micro_checkpoints, micro_pair,
                                                            tmp_path):
    """Temp files of a run killed before it could clean up (and an older hubpub's `.keras-check-*` folders)
    are removed by the next build-all into the same --out."""
    import shutil

    from tests.conftest import MICRO_PAIR

    out = tmp_path / "dist"
    shutil.copytree(micro_pair.dist, out)  # up to date: the rerun builds nothing
    stale = [out / "keras" / ".keras-check-abc123", out / "keras" / ".keras-check-def456.tmp",
             out / "keras" / f".{MICRO_PAIR[0]}.keras.host.1.1.tmp.d",
             out / "tars" / f".{MICRO_PAIR[0]}.tar.gz.host.1.1.tmp"]
    for path in stale[:3]:
        (path / "assets").mkdir(parents=True)
    stale[3].write_bytes(b"half")
    result = CliRunner().invoke(cli, ["-q", "build-all", "--manifest", str(micro_manifest_path), "--out", str(out),
                                      *(x for n in MICRO_PAIR for x in ("--only", n, "--checkpoint",
                                                                          f"{n}={micro_checkpoints[n]}"))])
    assert result.exit_code == 0, result.output
    assert not [p for p in stale if p.exists()]


def test_ctrl_c_that_a_library_swallows_is_still_exit_130():
    """TensorFlow's tracing catches the KeyboardInterrupt of a Ctrl-C and raises a ValueError instead (seen in CI
    at the export stage). The group remembers the signal itself: the failure that follows is the Ctrl-C."""
    import click

    from hubpub.cli.group import EXIT_INTERRUPTED, _Group

    @click.group(cls=_Group)
    def group():
        pass

    @group.command()
    def trace():
        try:  # as tensorflow/python/framework/func_graph.py does with what it calls
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)
        except KeyboardInterrupt:
            raise ValueError("Tried to convert 'shape' to a tensor and failed.") from None

    @group.command()
    def bug():
        raise ValueError("a bug")

    # Python's own handler, as in a terminal: a run started in the background of a shell without job control
    # (nohup, `cmd &`) inherits SIGINT ignored, and hubpub leaves an ignored SIGINT ignored.
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        result = CliRunner().invoke(group, ["trace"])
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # put back as it was
    finally:
        signal.signal(signal.SIGINT, before)
    assert result.exit_code == EXIT_INTERRUPTED, result.output
    assert result.stderr.splitlines() == ["error: interrupted; finished files are kept, rerun the command to go on"]
    result = CliRunner().invoke(group, ["bug"])  # without a Ctrl-C, a bug is still a bug
    assert isinstance(result.exception, ValueError) and result.exit_code == 1


def test_ctrl_c_inside_a_finalizer_still_stops_the_command():
    """Python ignores an exception raised in a `__del__` ("Exception ignored in"), and TensorFlow's objects have
    finalizers the garbage collector runs anywhere (seen at the LiteRT stage): a Ctrl-C that lands in one is
    raised again once it is done, so the command stops with exit 130 instead of going on."""
    import click

    from hubpub.cli.group import EXIT_INTERRUPTED, _Group

    @click.group(cls=_Group)
    def group():
        pass

    class Finalized:
        def __del__(self):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.2)

    @group.command()
    def collect():
        Finalized()  # collected at once: its finalizer gets the Ctrl-C
        time.sleep(2)
        click.echo("went on")

    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        result = CliRunner().invoke(group, ["collect"])
    finally:
        signal.signal(signal.SIGINT, before)
    assert result.exit_code == EXIT_INTERRUPTED and "went on" not in result.output, result.output
    assert result.stderr.splitlines()[-1] == "error: interrupted; finished files are kept, rerun the command to go on"


def test_ctrl_c_inside_a_constructor_ends_on_the_error_line():
    """A Ctrl-C inside a constructor leaves a half-made object whose finaliser fails at exit (TensorFlow's
    ScopedTFImportGraphDefOptions, seen at the LiteRT stage): the command's last line is still the error line,
    not Python's "Exception ignored in" report."""
    script = textwrap.dedent("""
        import os, signal, time
        import click
        from hubpub.cli.group import _Group

        held = []

        class HalfMade:
            def __init__(self):
                held.append(self)  # alive until exit, as a module-level cache holds TensorFlow's
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(1)
                self.options = 1

            def __del__(self):
                self.options

        @click.group(cls=_Group)
        def group():
            pass

        @group.command()
        def make():
            HalfMade()

        group(["make"])
    """)
    # SIGINT as a terminal leaves it (a pytest-xdist worker's children inherit it ignored)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                          preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert proc.returncode == 130, proc.stderr
    assert proc.stderr.splitlines() == ["error: interrupted; finished files are kept, rerun the command to go on"]


def test_ctrl_c_while_the_fork_server_imports_is_ignored_by_it():
    """build-all's fork server imports TensorFlow for seconds before it can ignore Ctrl-C itself: it starts with
    Ctrl-C ignored, so a Ctrl-C then is its parent's alone, and no traceback of its own follows the error line."""
    script = textwrap.dedent("""
        import os, signal, time
        from multiprocessing import forkserver
        from hubpub.pipeline.collection import _fork_server

        _fork_server()
        pid = forkserver._forkserver._forkserver_pid
        time.sleep(0.5)  # into its imports
        os.kill(pid, signal.SIGINT)
        time.sleep(0.5)
        print("alive" if os.waitpid(pid, os.WNOHANG) == (0, 0) else "ended")
    """)
    # SIGINT as a terminal leaves it (a pytest-xdist worker's children inherit it ignored)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "alive" and "Traceback" not in proc.stderr, proc.stderr


def test_an_eof_error_is_a_bug_not_an_interrupt():
    """click takes an EOFError for Ctrl-D at a prompt and aborts ("interrupted", exit 130); hubpub never
    prompts, so one is a bug (build-all's queue manager dying at its start raised it): raised as it is."""
    import click

    from hubpub.cli.group import EXIT_INTERRUPTED, _Group

    @click.group(cls=_Group)
    def group():
        pass

    @group.command()
    def read():
        raise EOFError("Ran out of input")

    result = CliRunner().invoke(group, ["read"])
    assert isinstance(result.exception, EOFError) and result.exit_code not in (0, EXIT_INTERRUPTED), result.output
    assert "interrupted" not in result.output


def processes_of_run(marker: Path) -> list[int]:
    """Live processes whose environment carries this run's HUBPUB_TEST_RUN marker."""
    needle = f"HUBPUB_TEST_RUN={marker}".encode() + b"\0"
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
            if needle in (proc / "environ").read_bytes() and state != "Z":
                found.append(int(proc.name))
        except OSError:  # gone meanwhile, or not ours to read
            continue
    return found


@pytest.mark.parametrize("pool", [("--jobs", "2"), ("--scheduler", "local:1")])
def test_kill_9_of_the_parent_alone_takes_its_workers_and_helpers(micro_manifest_path, micro_checkpoints, tmp_path,
                                                                  pool):
    """`kill -9` of build-all's own process (an OOM kill, a CI runner's timeout): its worker processes, the
    queue's manager process and multiprocessing's resource tracker (or a LocalCluster's workers and their
    build processes) go too, within seconds."""
    if pool[0] == "--scheduler":
        pytest.importorskip("distributed", reason="the cluster extra is not installed")
    env = {**os.environ, "HUBPUB_DISABLE_PROGRESS": "1", "PYTHONUNBUFFERED": "1", "HUBPUB_TEST_RUN": str(tmp_path)}
    names = ("micro_1k_224", "micro_iso_1k_224")[: 2 if pool[0] == "--jobs" else 1]
    args = ["build-all", "--manifest", str(micro_manifest_path), "--out", str(tmp_path / "dist"), "--no-parity",
            *pool, *(x for n in names for x in ("--only", n, "--checkpoint", f"{n}={micro_checkpoints[n]}"))]
    proc = subprocess.Popen([sys.executable, "-m", "hubpub", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, start_new_session=True, env=env)
    try:
        seen = []
        for line in proc.stderr:  # both workers are building
            seen.append(line)
            if sum(": port" in x for x in seen) == len(names):
                break
        assert len(processes_of_run(tmp_path)) >= 3, seen  # the parent and its helpers and workers
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        deadline = time.monotonic() + 5
        while processes_of_run(tmp_path) and time.monotonic() < deadline:
            time.sleep(0.2)
        left = {pid: Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")[:200]
                for pid in processes_of_run(tmp_path)}
        assert not left, f"left running after the parent's kill -9: {left}"
    finally:
        for pid in processes_of_run(tmp_path):
            os.kill(pid, signal.SIGKILL)


def test_the_leftover_check_finds_a_leftover(tmp_path):
    """The check above can fail: a process of the run that outlives its parent is found."""
    env = {**os.environ, "HUBPUB_TEST_RUN": str(tmp_path)}
    parent = subprocess.run([sys.executable, "-c", "import subprocess, sys; subprocess.Popen([sys.executable, '-c', "
                             "'import time; time.sleep(30)'], start_new_session=True)"], env=env, timeout=30)
    assert parent.returncode == 0
    try:
        assert len(processes_of_run(tmp_path)) == 1  # re-parented to init, still found
    finally:
        for pid in processes_of_run(tmp_path):
            os.kill(pid, signal.SIGKILL)


# --------------------------------------------------------------------------- the stage memo (dist/.stages/)


def _corrupt(path: Path, how: str) -> None:
    memo = json.loads(path.read_text())
    if how == "deleted":
        path.unlink()
    elif how == "folder":
        path.unlink()
        (path / "inside").mkdir(parents=True)
    elif how == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif how == "not utf-8":
        path.write_bytes(b"\xff\xfe" + path.read_bytes())
    else:
        edits = {"a list": lambda m: [m], "a string": lambda m: "memo", "null": lambda m: None,
                 "no wrote": lambda m: {k: v for k, v in m.items() if k != "wrote"},
                 "no result": lambda m: {k: v for k, v in m.items() if k != "result"},
                 "wrote a list": lambda m: {**m, "wrote": list(m["wrote"])},
                 "wrote sizes a string": lambda m: {**m, "wrote": dict.fromkeys(m["wrote"], "x")},
                 "result a string": lambda m: {**m, "result": "r"},
                 "result emptied": lambda m: {**m, "result": {}},
                 "result values of another type": lambda m: {**m, "result": dict.fromkeys(m["result"], 7)}}
        path.write_text(json.dumps(edits[how](memo)))


@pytest.mark.parametrize("how", ["deleted", "folder", "truncated", "not utf-8", "a list", "a string", "null",
                                 "no wrote", "no result", "wrote a list", "wrote sizes a string", "result a string",
                                 "result emptied", "result values of another type"])
def test_a_corrupted_stage_memo_runs_that_stage_again(micro_manifest, micro_pair, tmp_path, how):
    """The shared pair's records collected (notebooks, docs and site rendered, each with its memo), every
    memo corrupted, then collected again: each stage runs again, and leaves its memo as it was."""
    from hubpub.pipeline import build_collection
    from tests.conftest import MICRO_PAIR

    out = copy_built(micro_pair.dist, tmp_path / "dist", saved_models=False)
    build_collection(micro_manifest, out, only=MICRO_PAIR, collect=True)
    stages = sorted(p.stem for p in (out / ".stages").glob("*.json"))
    assert stages == ["docs", "notebooks", "site"]
    kept = {p: p.read_bytes() for p in (out / ".stages").glob("*.json")}
    for stage in stages:
        _corrupt(out / ".stages" / f"{stage}.json", how)
    result = build_collection(micro_manifest, out, only=MICRO_PAIR, collect=True)
    assert result.docs is not None and result.site is not None and len(result.notebooks) == 4
    assert all(p.is_file() for p in (*result.docs.paths, *result.site.pages, *(n.path for n in result.notebooks)))
    for path, before in kept.items():  # each memo rewritten whole, as an uncorrupted run leaves it
        assert path.is_file() and path.read_bytes() == before, path


# --------------------------------------------------------------------------- --collect of records that do not fit


@pytest.mark.parametrize("change", ["architecture", "checkpoint", "hubpub version", "no inputs key"])
def test_collect_refuses_records_the_manifest_did_not_make(micro_manifest_path, micro_pair, tmp_path, change):
    """Records built from other settings (a shard run with an older manifest) or by another hubpub would
    render docs of widths, classes or numbers the artifact does not have."""
    from hubpub import __version__
    from tests.conftest import MICRO_PAIR

    out = copy_built(micro_pair.dist, tmp_path / "dist", saved_models=False)
    manifest = tmp_path / "collection.yaml"
    text = micro_manifest_path.read_text()
    stale = "micro_1k_224"
    if change == "architecture":
        text = text.replace("micro: {family: convnext, depths: [1, 1, 2, 1], dims: [8, 16, 32, 64]}",
                            "micro: {family: convnext, depths: [1, 1, 2, 1], dims: [16, 32, 64, 128]}")
    elif change == "checkpoint":
        text = text.replace("micro_iso_1k_224.pth", "micro_iso_1k_224_v2.pth")
        stale = "micro_iso_1k_224"
    else:
        record = out / "reports" / f"{stale}_fe.json"
        data = json.loads(record.read_text())
        if change == "hubpub version":
            data["hubpub_version"] = "0.0.1"
        else:
            data["inputs_key"] = None
        record.write_text(json.dumps(data))
    manifest.write_text(text)
    result = CliRunner().invoke(cli, ["build-all", "--collect", "--manifest", str(manifest), "--out", str(out),
                                      "--only", MICRO_PAIR[0], "--only", MICRO_PAIR[1]])
    assert result.exit_code == 1, result.output
    first, *problems = result.stderr.splitlines()
    assert first.startswith("error: --collect: ") and "do not match the manifest" in first, result.stderr
    assert problems and all(p.startswith("error: ") and stale in p for p in problems), result.stderr
    if change == "hubpub version":
        assert problems == [f"error: {out / 'reports' / f'{stale}_fe.json'} was built by hubpub 0.0.1, this is "
                            f"hubpub {__version__}"]
    assert not (out / "docs").exists() and not (out / "site").exists()  # nothing rendered from them


# --------------------------------------------------------------------------- two runs into one --out


def test_a_second_build_into_the_same_out_stops_with_one_line(micro_manifest_path, micro_checkpoints, micro_pair,
                                                               tmp_path):
    """Two build-all (or build) into one --out at once: the second stops at once, saying why, and touches
    nothing (its start would sweep the first one's temp files); the first finishes as if alone."""
    out = tmp_path / "dist"
    args = _micro_args("build-all", micro_manifest_path, micro_checkpoints["micro_1k_224"], out)
    env = {**os.environ, "HUBPUB_DISABLE_PROGRESS": "1", "PYTHONUNBUFFERED": "1"}
    first = subprocess.Popen([sys.executable, "-m", "hubpub", *args], stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True, env=env)
    seen = []
    for line in first.stderr:
        seen.append(line)
        if "micro_1k_224: export" in line:
            break
    for second in (args, _micro_args("build", micro_manifest_path, micro_checkpoints["micro_1k_224"], out)):
        proc = subprocess.run([sys.executable, "-m", "hubpub", *second], capture_output=True, text=True, env=env,
                              timeout=120)
        assert proc.returncode == 1, proc.stderr
        assert proc.stderr.splitlines() == [f"error: {out.resolve()} is in use by another hubpub build (pid "
                                            f"{first.pid} on {os.uname().nodename}); wait for it to finish, or "
                                            "give another folder"], proc.stderr
    rest = first.communicate(timeout=300)[1]
    assert first.returncode == 0, "".join(seen) + rest
    assert _artifact_bytes(out) == _uninterrupted(micro_pair)


# --------------------------------------------------------------------------- a full disk during a build


@pytest.fixture
def small_disk(tmp_path):
    """A 2 MiB tmpfs: the micro build (about 4 MiB) runs out of space mid-way."""
    folder = tmp_path / "small"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(folder)], capture_output=True,
                             text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs to fill, so no full disk to test (needs root, or a container "
                    f"that allows mount): {mounted.stderr.strip()}")
    yield folder
    subprocess.run(["umount", "-l", str(folder)], check=True)


@pytest.mark.parametrize("command", ["build-all", "build"])
def test_a_full_disk_during_a_build_is_one_line_naming_the_place(micro_manifest_path, micro_checkpoints, small_disk,
                                                                 command):
    out = small_disk / "dist"
    args = _micro_args(command, micro_manifest_path, micro_checkpoints["micro_1k_224"], out)
    proc = subprocess.run([sys.executable, "-m", "hubpub", "-q", *args], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr, proc.stderr
    full = [line for line in proc.stderr.splitlines() if "no space left on the device" in line]
    assert len(full) == 1 and re.search(rf"{small_disk}\S*: no space left on the device \([\d.]+ MiB free under "
                                        rf"{small_disk}", full[0]), proc.stderr
    if command == "build-all":
        assert proc.stderr.splitlines()[-1] == "error: 1 variant(s) failed: micro_1k_224", proc.stderr
    else:
        assert proc.stderr.splitlines() == full, proc.stderr
    left = [p for p in out.rglob("*") if p.name.startswith(".") and p.name not in (".stages", ".hubpub.lock")]
    assert not left, left  # no temp file; the files finished before the disk filled are kept
    assert not list(out.glob("reports/micro_1k_224*.json"))  # no record of an artifact not all there


# --------------------------------------------------------------------------- the manifest's formats: section


@pytest.mark.parametrize(("section", "said"), [
    ("{onxx: false}", "formats.onxx: unknown format 'onxx'; known: keras, litert, onnx (the SavedModel is always "
                      "built)"),
    ("{onnx: maybe}", "formats.onnx: Input should be a valid boolean (got 'maybe')"),
    ("{onnx: 1}", "formats.onnx: Input should be a valid boolean (got 1)"),
    ("{keras: null}", "formats.keras: Input should be a valid boolean (got None)"),
    ("[onnx]", "formats: Input should be a valid dictionary"),
    ("onnx", "formats: Input should be a valid dictionary (got 'onnx')"),
])
def test_a_bad_formats_section_is_one_line_with_its_place(micro_manifest_path, tmp_path, section, said):
    manifest = tmp_path / "collection.yaml"
    text = micro_manifest_path.read_text()
    assert "\nformats: {onnx: false}\n" in text
    manifest.write_text(text.replace("\nformats: {onnx: false}\n", f"\nformats: {section}\n"))
    line = text.splitlines().index("formats: {onnx: false}") + 1
    for command in ("validate", "build-all"):
        [error] = run(command, "--manifest", manifest, code=1)
        assert error == f"error: {manifest}: line {line}: {said}", error


# --------------------------------------------------------------------------- odd paths

ODD = {"manifest": "-odd ü dir/collection.yaml", "dist": "-dist ü", "out": "-docs ü dir", "dest": "-pub ü dir"}


def _odd(option: str, name: str, spelling: str, root: Path) -> list[str]:
    """One path option, spelled as a user might: absolute, `./-x`, a bare `-x` value, or `--option=-x`."""
    return {"absolute": [option, str(root / name)], "dot-slash": [option, f"./{name}"],
            "bare": [option, name], "equals": [f"{option}={name}"]}[spelling]


@pytest.mark.parametrize("spelling", ["absolute", "dot-slash", "bare", "equals"])
def test_paths_with_spaces_unicode_and_a_leading_dash_are_paths(micro_dist, tmp_path, monkeypatch, spelling):
    """Spaces, a non-ASCII letter and a leading dash in `--manifest`, `--dist`, `--out` and `--dest`, and a
    leading-dash DEST after `--`: each command works and writes where it was told."""
    from tests.conftest import MICRO_MANIFEST

    monkeypatch.chdir(tmp_path)
    manifest = tmp_path / ODD["manifest"]
    manifest.parent.mkdir()
    manifest.write_text(MICRO_MANIFEST.replace("PUBLISH_DIR", str(tmp_path / "unused")), encoding="utf-8")
    copy_built(micro_dist, tmp_path / ODD["dist"], saved_models=False)
    m, d = _odd("--manifest", ODD["manifest"], spelling, tmp_path), _odd("--dist", ODD["dist"], spelling, tmp_path)
    url = ["--public-url", "http://127.0.0.1:9/x"]

    def ok(*args):
        result = CliRunner().invoke(cli, ["-q", *args], prog_name="hubpub")
        assert result.exit_code == 0, (args, result.output, result.exception)
        return result.output

    assert "micro" in ok("validate", *m)
    ok("docs", *m, *d, *_odd("--out", ODD["out"], spelling, tmp_path), *_odd("--dest", ODD["dest"], spelling,
                                                                            tmp_path), *url)
    assert list((tmp_path / ODD["out"]).rglob("*.md")) and not (tmp_path / ODD["dist"] / "docs").exists()
    ok("docs", *m, *d, *_odd("--dest", ODD["dest"], spelling, tmp_path), *url)  # into DIST/docs, for publish
    ok("publish", *m, *d, *_odd("--dest", ODD["dest"], spelling, tmp_path), *url, "--no-verify")
    published = tmp_path / ODD["dest"]
    assert (published / "micro_1k_224" / "1.tar.gz").is_file() and (published / "micro_1k_224" / "1.keras").is_file()
    # Nothing anywhere else (a value split at its space, or its dash taken for an option, would show here).
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted({n.split("/")[0] for n in ODD.values()})
    for audited in (["--", ODD["dest"]], [f"./{ODD['dest']}"]):  # DEST after `--`, or as ./-x: a path
        said = ok("audit", *url, *audited)
        assert said.startswith(f"{ODD['dest']}: ") and "10 artifact files against their .sha256" in said, said


def test_two_publishes_to_one_directory_at_once_leave_what_one_publish_does(micro_manifest_path, micro_dist,
                                                                           tmp_path):
    """Two `hubpub publish` processes started together into one directory: the published files are those one
    publish makes, and a publish that loses the race says why in one `error:` line."""
    dist = _dist_with_docs(micro_manifest_path, micro_dist, tmp_path)

    def publish(dest: Path) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "hubpub", "-q", "publish", "--manifest",
                                 str(micro_manifest_path), "--dist", str(dist), "--dest", str(dest), "--public-url",
                                 "http://127.0.0.1:9/bucket/micro", "--no-verify"], cwd=tmp_path, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                env={**os.environ, "HUBPUB_DISABLE_PROGRESS": "1"})

    def published(dest: Path) -> dict[str, bytes]:
        return {p.relative_to(dest).as_posix(): p.read_bytes() for p in sorted(dest.rglob("*")) if p.is_file()}

    single = publish(tmp_path / "single")
    assert single.wait(timeout=300) == 0, single.communicate()
    racers = [publish(tmp_path / "raced") for _ in range(2)]
    outcomes = [(p.wait(timeout=300), *p.communicate()) for p in racers]
    for code, _, err in outcomes:
        lines = err.strip().splitlines()
        assert code == 0 and lines == [] or code == 1 and len(lines) == 1 and lines[0].startswith("error: "), err
    assert any(code == 0 for code, _, _ in outcomes), outcomes
    assert published(tmp_path / "raced") == published(tmp_path / "single")
