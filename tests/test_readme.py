"""The README is held to the code: its tables of tolerances and commands say what the code does."""

import re

from click.testing import CliRunner

from hubpub import tolerances
from hubpub.cli import cli
from tests.conftest import ROOT

README = (ROOT / "README.md").read_text()


def test_the_tolerances_table_is_the_code():
    rows = re.findall(r"^\| .*? \| `([A-Z0-9_]+)` = ([0-9.e-]+) \|$", README, flags=re.M)
    documented = {name: float(value) for name, value in rows}
    defined = {name: value for name, value in vars(tolerances).items() if name.isupper()}
    assert documented == defined


def _command_rows() -> dict[str, str]:
    table = README[README.index("| command | what it does |"):]
    table = table[: table.index("\n\n")]
    rows = {}
    for line in table.splitlines()[2:]:
        m = re.match(r"\| `hubpub ([a-z-]+)", line)
        assert m, line
        rows[m.group(1)] = line
    return rows


def test_the_command_table_names_every_command_and_option():
    """Each command of `hubpub --help` has its row, and the row names each of its options."""
    rows = _command_rows()
    assert sorted(rows) == sorted(cli.commands), "commands missing from (or extra in) the README's table"
    missing = {}
    for name, command in cli.commands.items():
        options = [opt for p in command.params for opt in p.opts if opt.startswith("--") and opt != "--help"]
        absent = [opt for opt in options if not re.search(rf"{re.escape(opt)}\b", rows[name])]
        if absent:
            missing[name] = absent
    assert not missing, f"options the README's command table does not name: {missing}"
    result = CliRunner().invoke(cli, ["--help"])
    assert all(name in result.output for name in rows)


def test_the_benchmark_table_is_what_the_benches_wrote():
    import importlib.util

    spec = importlib.util.spec_from_file_location("report", ROOT / "benchmarks" / "report.py")
    report = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(report)
    assert report.render() in README, "run `python benchmarks/report.py --write` after a bench"
    assert len(report.rows()) >= 10
