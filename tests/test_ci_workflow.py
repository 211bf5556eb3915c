"""The documented CI workflow (deploy/github/build-collection.yml, the README's example), run here.

A small runner plays GitHub Actions: each job (each matrix entry) on a fresh clone of a repository
holding a micro collection, its committed `collection.lock` and a remote to push to; the matrix
entries run at once, as on GitHub. `run:` steps run in bash as written, with only `DEST` and
`MANIFEST` set for this machine; `pip install` steps are skipped (hubpub is installed here);
upload/download-artifact copy folders; checkout, setup-python and auth have nothing to do offline.
The checkpoints are served on loopback. Then the published collection is compared, file by file, with
what one machine publishes from one `build-all` of the same built files.
"""

import itertools
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import MICRO_MANIFEST, ROOT

WORKFLOW = ROOT / "deploy" / "github" / "build-collection.yml"
BASE = "http://127.0.0.1:9/bucket/micro"


def _git(*args, cwd: Path) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout


class Runner:
    """GitHub Actions, as far as this workflow needs it, on this machine."""

    def __init__(self, workflow: Path, remote: Path, work: Path, env: dict[str, str]):
        self.spec = yaml.safe_load(workflow.read_text())
        self.remote, self.work, self.env = remote, work, env
        self.artifacts = work / "artifacts"
        self.ran: list[str] = []

    def run(self) -> None:
        done: set[str] = set()
        jobs = self.spec["jobs"]
        while len(done) < len(jobs):
            ready = [n for n, j in jobs.items() if n not in done and set(_list(j.get("needs"))) <= done]
            assert ready, f"jobs wait on each other: {set(jobs) - done}"
            for name in ready:
                matrix = jobs[name].get("strategy", {}).get("matrix", {})
                keys = list(matrix)
                combos = [dict(zip(keys, values, strict=True)) for values in itertools.product(*matrix.values())]
                procs = [self._start(name, combo) for combo in combos or [{}]]  # matrix entries at once
                for label, proc_steps in procs:
                    self._finish(label, proc_steps)
                done.add(name)

    def _start(self, name: str, matrix: dict):
        label = name + "".join(f"-{v}" for v in matrix.values())
        checkout = self.work / label
        _git("clone", "-q", str(self.remote), str(checkout), cwd=self.work)  # a fresh runner: actions/checkout
        env = {**self.env, **{k: str(v) for k, v in self.spec.get("env", {}).items()}, **self.env}
        script = []
        for step in self.spec["jobs"][name]["steps"]:
            if "uses" in step:
                script.append(self._action(step, matrix, checkout))
            elif "pip install" in step["run"]:
                continue  # installed here already
            else:
                script.append(_expand(step["run"], matrix))
        body = "set -euo pipefail\n" + "\n".join(s for s in script if s)
        proc = subprocess.Popen(["bash", "-c", body], cwd=checkout, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        return label, proc

    def _action(self, step: dict, matrix: dict, checkout: Path) -> str:
        uses, given = step["uses"].split("@")[0], step.get("with", {})
        if uses == "actions/upload-artifact":
            target = self.artifacts / _expand(given["name"], matrix)
            # GitHub's default (if-no-files-found: warn): a missing path uploads nothing and goes on
            return f"if [ -d {given['path']} ]; then mkdir -p {target} && cp -r {given['path']}/. {target}/; fi"
        if uses == "actions/download-artifact":
            pattern = given["pattern"].replace("*", "")
            return (f"mkdir -p {given['path']} && for d in {self.artifacts}/{pattern}*; do cp -r \"$d\"/. "
                    f"{given['path']}/; done")
        assert uses in ("actions/checkout", "actions/setup-python", "google-github-actions/auth"), uses
        return ""

    def _finish(self, label: str, proc) -> None:
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, f"job {label} failed:\n{out[-2000:]}\n{err[-3000:]}"
        self.ran.append(label)


def _list(value) -> list:
    return [] if value is None else [value] if isinstance(value, str) else list(value)


def _expand(text: str, matrix: dict) -> str:
    text = re.sub(r"\$\{\{\s*matrix\.(\w+)\s*\}\}", lambda m: str(matrix[m.group(1)]), text)
    assert "${{" not in text.replace("${{ secrets.GCP_SA_KEY }}", ""), text
    return text


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def repository(tmp_path, micro_checkpoints, file_server):
    """A user's repository: a two-variant micro collection, its committed lock, a bare remote."""
    from hubpub._files import sha256_file as sha256_of_file

    text = MICRO_MANIFEST.replace("PUBLISH_DIR", str(tmp_path / "published")) + (
        "notebooks: {github: testpub/micro-models, branch: main, path: notebooks}\n")
    text = re.sub(r"  - \{name: micro_21k_224,.*?\n(?=  - )", "", text, flags=re.S)  # two variants: quicker
    lock = {}
    for name in ("micro_1k_224", "micro_iso_1k_224"):
        served = file_server.root / f"{name}.safetensors"
        shutil.copy(micro_checkpoints[name], served)
        url = f"{file_server.url}/{name}.safetensors"
        text = text.replace(f"http://127.0.0.1:9/{name}.pth", url)
        lock[name] = {"url": url, "sha256": sha256_of_file(served)}
    source = tmp_path / "source"
    source.mkdir()
    (source / "collection.yaml").write_text(text)
    (source / "collection.lock").write_text(yaml.safe_dump({"checkpoints": lock}))
    _git("init", "-q", "-b", "main", cwd=source)
    _git("add", ".", cwd=source)
    _git("commit", "-qm", "the collection", cwd=source)
    remote = tmp_path / "remote.git"
    _git("clone", "-q", "--bare", str(source), str(remote), cwd=tmp_path)
    return remote


def test_the_documented_workflow_publishes_what_one_machine_does(repository, tmp_path):
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
           "HUBPUB_CACHE": str(tmp_path / "cache"), "HUBPUB_DISABLE_PROGRESS": "1",
           "DEST": str(tmp_path / "published"), "MANIFEST": "collection.yaml",
           "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    runner = Runner(WORKFLOW, repository, tmp_path / "runs", env)
    (tmp_path / "runs").mkdir()
    runner.run()
    assert runner.ran == ["build-1", "build-2", "build-3", "build-4", "collect"]
    published = _tree(tmp_path / "published")
    assert {"micro_1k_224/1.tar.gz", "micro_iso_1k_224_fe/1.keras", "docs/assets/docs/testpub/testpub.md",
            "site/index.html"} <= set(published)
    # the notebooks the docs' Colab links open were committed and pushed
    log = _git("log", "--name-only", "--format=%s", cwd=repository)
    assert "Usage notebooks for" in log and "notebooks/127.0.0.1-9-bucket-micro/micro_1k_224.ipynb" in log

    # One machine, one build-all, to another folder read from the same address: the same files. Its dist/
    # holds what the shards built (each shard's own checkout), as if it had built them all: the builds' bytes
    # do not depend on the process (tests/test_export.py, test_formats.py, test_litert.py), so rebuilding
    # them here would show nothing more; what is compared is how the records are gathered, rendered and
    # published.
    single = tmp_path / "single"
    _git("clone", "-q", str(repository), str(single), cwd=tmp_path)
    for shard in ("build-1", "build-2", "build-3", "build-4"):
        if (tmp_path / "runs" / shard / "dist").is_dir():
            shutil.copytree(tmp_path / "runs" / shard / "dist", single / "dist", dirs_exist_ok=True)
    proc = subprocess.run(["hubpub", "-q", "build-all", "--require-pinned", "--publish", str(tmp_path / "one"),
                           "--public-url", BASE], cwd=single, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("up to date") == 4, proc.stdout  # no artifact built again
    one = _tree(tmp_path / "one")
    assert sorted(one) == sorted(published)
    assert [name for name in one if one[name] != published[name]] == []


def test_an_unpinned_checkpoint_stops_the_workflow_before_any_download(repository, tmp_path, file_server):
    checkout = tmp_path / "checkout"
    _git("clone", "-q", str(repository), str(checkout), cwd=tmp_path)
    (checkout / "collection.lock").unlink()
    env = {**os.environ, "HUBPUB_CACHE": str(tmp_path / "cache")}
    proc = subprocess.run([sys.executable, "-m", "hubpub", "build-all", "--require-pinned", "--shard", "1/2",
                           "--publish", str(tmp_path / "published")], cwd=checkout, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 1
    assert proc.stderr.strip() == ("error: 1 checkpoint(s) not pinned, refused before downloading (require_pinned): "
                                   "micro_1k_224; give checkpoint.sha256 in collection.yaml, or build once where you "
                                   "trust the download and commit collection.lock")
    assert not file_server.requests, "something was downloaded"
