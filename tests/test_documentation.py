"""The documentation site (docs/, mkdocs.yml): it builds with `mkdocs build --strict`, which refuses a
broken link or anchor and a page left out of the nav; its reference pages say what the code does; and
it renders, with its navigation, in the headless Chromium the site tests drive."""

import html
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from hubpub import errors, tolerances
from hubpub.cli import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_USAGE, cli
from tests.conftest import ROOT
from tests.test_site import _chromium

ENV = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}


def _mkdocs_build(config: Path, site: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(config), "-d", str(site)],
                          capture_output=True, text=True, env=ENV, cwd=ROOT, timeout=300)


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    site = tmp_path_factory.mktemp("docs") / "site"
    done = _mkdocs_build(ROOT / "mkdocs.yml", site)
    assert done.returncode == 0, done.stderr
    return site


def _text(page: Path) -> str:
    return html.unescape(re.sub(r"<[^>]+>", " ", page.read_text()))


def test_the_strict_build_refuses_a_broken_anchor_and_a_page_outside_the_nav(tmp_path):
    docs = tmp_path / "docs"
    subprocess.run(["cp", "-r", str(ROOT / "docs"), str(docs)], check=True)
    page = docs / "guides" / "manifest.md"
    page.write_text(page.read_text() + "\nSee [the formats](formats.md#no-such-section).\n")
    (docs / "stray.md").write_text("# A page nobody links\n")
    config = (ROOT / "mkdocs.yml").read_text().replace("docs_dir: docs", f"docs_dir: {docs}")
    config = config.replace("  - docs_hooks.py", f"  - {ROOT / 'docs_hooks.py'}")
    (tmp_path / "mkdocs.yml").write_text(config)
    done = _mkdocs_build(tmp_path / "mkdocs.yml", tmp_path / "site")
    assert done.returncode != 0
    assert "does not contain an anchor '#no-such-section'" in done.stderr
    assert "stray.md" in done.stderr and "not included in the \"nav\"" in done.stderr


def test_the_commands_page_names_every_command_and_option(site):
    page = (site / "reference" / "commands.html").read_text()
    missing = {}
    for name, command in cli.commands.items():
        assert f'id="hubpub-{name}"' in page, f"no section for hubpub {name}"
        section = page[page.index(f'id="hubpub-{name}"'):]
        section = section[: section.find("<h3", 1) if "<h3" in section[1:] else None]
        options = [o for p in command.params for o in p.opts if o.startswith("--")]
        absent = [o for o in options if o not in html.unescape(section)]
        if absent:
            missing[name] = absent
    assert not missing, f"options the commands page does not name: {missing}"


def test_the_tolerances_page_is_the_code(site):
    rows = re.findall(r"<td><code>([A-Z0-9_]+)</code></td>\s*<td>([0-9.e-]+)</td>",
                      (site / "reference" / "tolerances.html").read_text())
    defined = {name: value for name, value in vars(tolerances).items() if name.isupper()}
    assert {name: float(value) for name, value in rows} == defined


def test_the_errors_page_names_the_exit_codes_and_every_error(site):
    text = _text(site / "reference" / "errors.html")
    codes = {int(c) for c in re.findall(r"^\s*(\d+)\s*$", text, flags=re.M)}
    assert {0, EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPTED} <= codes
    classes = [n for n, v in vars(errors).items() if isinstance(v, type) and issubclass(v, errors.HubpubError)]
    assert len(classes) > 5 and all(name in text for name in classes if name != "HubpubError")


def test_the_manifest_page_lists_every_field(site):
    from hubpub.manifest.schema import ManifestModel, VariantSpec

    text = _text(site / "reference" / "manifest-schema.html")
    for model in (ManifestModel, VariantSpec):
        assert all(field in text for field in model.model_fields)
    assert "feature_width" in text and "layer_scale_init" in text  # the families' settings


def test_the_benchmarks_page_is_what_the_benches_wrote(site):
    spec = importlib.util.spec_from_file_location("report", ROOT / "benchmarks" / "report.py")
    report = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(report)
    rows = report.rows()
    text = re.sub(r"\s+", "", _text(site / "benchmarks.html"))
    assert len(rows) >= 10
    for script, measures, _, figure, target in rows:
        assert re.sub(r"[\s`]+", "", f"{script}{measures}")[:60] in text, measures
        assert re.sub(r"\s+", "", figure) in text and re.sub(r"\s+", "", target) in text


def test_a_page_renders_with_its_navigation_in_a_browser(site):
    from selenium.webdriver.common.by import By

    shots = Path(__file__).parent / "artifacts"
    shots.mkdir(exist_ok=True)
    browser = _chromium()
    try:
        browser.get((site / "guides" / "manifest.html").as_uri())
        assert browser.find_element(By.TAG_NAME, "h1").text == "The manifest"
        nav = browser.find_element(By.CSS_SELECTOR, "nav.md-nav--primary")
        titles = [a.get_attribute("textContent").strip() for a in nav.find_elements(By.CSS_SELECTOR, "a.md-nav__link")]
        for title in ("Commands", "Manifest schema", "Tolerances", "Benchmarks", "Adding a family"):
            assert title in titles, titles
        assert browser.find_elements(By.CSS_SELECTOR, ".md-content pre code")  # its code blocks, rendered
        browser.save_screenshot(str(shots / "docs-manifest.png"))
        link = nav.find_element(By.XPATH, ".//a[normalize-space()='Tolerances']")
        browser.get(link.get_attribute("href"))  # the nav's link leads to the page
        assert browser.find_element(By.TAG_NAME, "h1").text.startswith("Tolerances")
        assert "PARITY" in browser.find_element(By.CSS_SELECTOR, ".md-content").text
    finally:
        browser.quit()
