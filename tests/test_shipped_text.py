"""What ships speaks to users, not about the project's development: no issue numbers and no dated
narration in hubpub's sources and templates, the README, the documentation or any command's --help.
History belongs in CHANGELOG.md and the commit log. An upstream project's issue (`owner/repo#N`) is a
reference a user can follow, and stays."""

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from hubpub.cli import cli
from tests.conftest import ROOT

SUFFIXES = {".py", ".j2", ".md", ".html", ".js", ".yaml", ".yml", ".toml", ".cfg"}
NARRATION = re.compile(
    r"\bthis round\b|\blast round\b|\bwhat it saved\b|\btoday(?:'s)?\b|\bmeasured again\b|\bwent from\b"
    r"|\bthis session\b|\bissue \d+|\b20[2-9]\d-[01]\d-[0-3]\d\b", re.I)
ISSUE = re.compile(r"#(\d+)\b")
UPSTREAM = re.compile(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")  # owner/repo just before the '#'


def shipped() -> list[Path]:
    files = [p for p in (ROOT / "hubpub").rglob("*") if p.suffix in SUFFIXES and "__pycache__" not in p.parts]
    files += sorted((ROOT / "docs").rglob("*.md")) + [ROOT / "README.md", ROOT / "mkdocs.yml", ROOT / "docs_hooks.py"]
    return sorted(files)


def problems(text: str) -> list[str]:
    found = [m.group(0) for m in NARRATION.finditer(text)]
    for m in ISSUE.finditer(text):
        before = text[: m.start()]
        if before.endswith("&") or UPSTREAM.search(before):  # an HTML entity (&#124;), an upstream issue
            continue
        found.append(m.group(0))
    return found


def test_the_checker_finds_what_it_looks_for():
    assert sorted(problems("within #24's 8 min; measured on 2026-12-02, as today")) == ["#24", "2026-12-02", "today"]
    assert problems("upstream: onnx/tensorflow-onnx#1789; a cell &#124; in a table; version 2000-01-01") == []
    assert problems("known upstream: onnx/tensorflow-onnx#1789, #2006") == ["#2006"]


@pytest.mark.parametrize("path", shipped(), ids=lambda p: str(p.relative_to(ROOT)))
def test_shipped_text_does_not_narrate_development(path):
    lines = [(n, line) for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
             if problems(line)]
    assert not lines, "\n".join(f"{path.relative_to(ROOT)}:{n}: {line.strip()}" for n, line in lines)


def test_no_help_text_narrates_development():
    runner = CliRunner()
    for name in ["", *cli.commands]:
        out = runner.invoke(cli, [*([name] if name else []), "--help"]).output
        assert not problems(out), (name, problems(out))
