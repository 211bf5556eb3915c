"""Every code block of the README and docs/ that shows a hubpub command or Python use is checked here,
or is marked, on the line before its fence, as one the suite cannot run:

- `<!-- needs: network -->` or `<!-- needs: credentials -->`: held in the list below, so a new one is a
  decision, not an accident;
- `<!-- run: micro_dist -->`: a Python block run for real against the shared micro build (its
  `artifact = "..."` line pointed at the micro artifact);
- any other block's hubpub commands are parsed by the real command line (every option and value checked,
  as `--help` would), and the cheap ones (`validate`, `list`, `schema`) run for real.
"""

import os
import re
import shlex
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from hubpub.cli import cli
from tests.conftest import ROOT

FENCE = re.compile(r"^(?P<indent> *)```(?P<lang>[\w-]*)\n(?P<body>.*?)^(?P=indent)```", re.M | re.S)
MARK = re.compile(r"<!-- (needs: network|needs: credentials|run: micro_dist) -->\s*$")
SHELL = {"", "sh", "bash", "console", "shell"}
RUN_FOR_REAL = {"validate", "list", "schema"}  # under a second, on the shipped manifests

# (page, mark, the block's first line): the blocks the suite does not parse or run.
UNCHECKED = {
    ("README.md", "needs: network", "hubpub build-all --only 'convnext_tiny_*' --jobs 2"),
    ("README.md", "needs: credentials", "hubpub publish --dest gs://my-bucket/convnext"),
    ("README.md", "needs: network", "import tensorflow_hub as hub"),
    ("docs/guides/manifest.md", "needs: network",
     "hubpub build-all              # downloads every checkpoint once and writes collection.lock"),
    ("docs/guides/destinations.md", "needs: credentials",
     "hubpub docs --dest kaggle://OWNER/MODEL && hubpub publish --dest kaggle://OWNER/MODEL --public"),
    ("docs/guides/destinations.md", "needs: network", "import tensorflow_hub as hub, tf_keras"),
    ("docs/guides/destinations.md", "needs: network",
     "hubpub eval convnext_tiny_1k_224 --data ~/imagenet/val --limit 5000"),
    ("docs/guides/formats.md", "needs: network", "import keras"),
    ("docs/guides/signing-and-audit.md", "needs: credentials",
     "openssl ecparam -name prime256v1 -genkey -noout -out publisher.pem"),
    ("docs/guides/cluster-and-shards.md", "needs: network",
     "dask scheduler --port 8786                                                    # one machine"),
    ("docs/reference/commands.md", "needs: network",
     "hubpub verify-parity convnext_tiny_1k_224 --checkpoint ~/ckpt/convnext_tiny_1k_224_ema.pth --size 256 320"),
}


def pages() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def blocks() -> list[tuple[str, str | None, str, str]]:
    """(page, mark or None, language, body) of every fenced block."""
    out = []
    for page in pages():
        text = page.read_text()
        for m in FENCE.finditer(text):
            before = text[: m.start()].rstrip("\n").rsplit("\n", 1)[-1]
            mark = MARK.search(before)
            body = "\n".join(line.removeprefix(m["indent"]) for line in m["body"].splitlines())
            out.append((str(page.relative_to(ROOT)), mark and mark.group(1), m["lang"], body))
    return out


def commands(body: str) -> list[list[str]]:
    """The hubpub command lines of a shell block, each as its arguments."""
    out = []
    for line in body.splitlines():
        if "hubpub" not in line:
            continue
        words = shlex.split(line, comments=True)
        segment: list[str] = []
        redirected = False
        for word in [*words, "&&"]:
            if word in (">", ">>"):  # the output goes to a file: not an argument
                redirected = True
                continue
            if redirected and word not in ("&&", "||", ";", "|"):
                redirected = False
                continue
            if word in ("&&", "||", ";", "|"):
                if segment[:1] == ["hubpub"]:
                    out.append(segment[1:])
                segment = []
            else:
                segment.append(word)
    return out


def shows_use(lang: str, body: str) -> bool:
    return lang == "python" or (lang in SHELL and bool(commands(body)))


def test_the_unchecked_blocks_are_the_listed_ones():
    marked = {(page, mark, body.splitlines()[0]) for page, mark, lang, body in blocks()
              if mark and mark.startswith("needs") and shows_use(lang, body)}
    assert marked == UNCHECKED


def test_every_python_block_is_run_or_marked():
    unmarked = [(page, body.splitlines()[0]) for page, mark, lang, body in blocks() if lang == "python" and not mark]
    assert not unmarked, f"Python blocks neither run here nor marked: {unmarked}"
    assert sum(mark == "run: micro_dist" for _, mark, _, _ in blocks()) >= 3


def _parse(args: list[str]) -> None:
    """Parse a command line as hubpub would, without running the command: options, arguments, values."""
    at = next((i for i, a in enumerate(args) if a in cli.commands), None)
    if at is None:
        raise click.UsageError(f"no hubpub command in {args}")
    with cli.make_context("hubpub", list(args[: at + 1])) as ctx:
        cli.commands[args[at]].make_context(args[at], list(args[at + 1:]), parent=ctx).close()


def test_every_unmarked_command_parses_and_the_cheap_ones_run(monkeypatch):
    monkeypatch.chdir(ROOT)
    seen, ran = 0, 0
    for page, mark, lang, body in blocks():
        if mark or lang not in SHELL:
            continue
        for args in commands(body):
            seen += 1
            try:
                _parse(args)
            except click.ClickException as e:
                pytest.fail(f"{page}: hubpub {shlex.join(args)}: {e.format_message()}")
            if args[0] in RUN_FOR_REAL:
                result = CliRunner().invoke(cli, args)
                assert result.exit_code == 0, (page, args, result.output)
                ran += 1
    assert seen >= 8 and ran >= 3


def test_a_wrong_option_in_a_block_would_fail():
    with pytest.raises(click.UsageError):
        _parse(["build-all", "--jobz", "2"])
    with pytest.raises(click.BadParameter):
        _parse(["build-all", "--jobs", "two"])


def test_the_python_blocks_run_on_the_micro_build(micro_dist, tmp_path, monkeypatch):
    (tmp_path / "dist").symlink_to(micro_dist)
    monkeypatch.chdir(tmp_path)
    for page, mark, _, body in blocks():
        if mark != "run: micro_dist":
            continue
        line = 'artifact = "convnext_tiny_1k_224"'
        assert line in body, (page, "a run block names its artifact on one line")
        namespace: dict = {}
        exec(compile(body.replace(line, 'artifact = "micro_1k_224"'), f"{page} block", "exec"), namespace)
        assert namespace["logits"].shape[-1] == 1000, page  # micro_1k_224: an ImageNet-1k head
    assert os.getcwd() == str(tmp_path)
