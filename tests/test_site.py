"""The collection website: rendered from the build, published beside the artifacts, and opened in a
real browser (Debian's Chromium, driven by Selenium through chromedriver)."""

import os
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urldefrag, urlparse

import pytest

from hubpub.destinations import parse as parse_destination
from hubpub.docs import render_docs
from hubpub.publish import publish
from hubpub.site import render_site
from tests.conftest import copy_built

BASE = "http://127.0.0.1:9/bucket/micro"


@pytest.fixture(scope="module")
def published(micro_manifest, micro_dist, tmp_path_factory):
    """micro's two artifacts with docs and site, published to a local destination."""
    root = tmp_path_factory.mktemp("site")
    dist = root / "dist"
    copy_built(micro_dist, dist)
    render_docs(micro_manifest, dist=dist, out=dist / "docs", public_url_base=BASE)
    render_site(micro_manifest, dist=dist, public_url_base=BASE)
    dest = root / "bucket"
    result = publish(micro_manifest, dist, parse_destination(str(dest)), public_url=BASE)
    return dist, dest, result


class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.links, self.images_without_alt, self.headings = [], 0, []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        for key in ("href", "src"):
            if a.get(key):
                self.links.append(a[key])
        if tag == "img" and not a.get("alt"):
            self.images_without_alt += 1
        if re.fullmatch(r"h[1-6]", tag):
            self.headings.append(int(tag[1]))


HOSTS = {"colab.research.google.com", "arxiv.org", "github.com", "127.0.0.1:9", "www.kaggle.com",
         "huggingface.co", "dl.fbaipublicfiles.com", "localhost:8000"}  # the hosts the docs link to


def dead_links(site: Path) -> list:
    """Every problem of a published site: a relative link (page, asset, download beside the site)
    that resolves to nothing, an external link to another host, an image without alt text, a
    skipped heading level."""
    problems = []
    for page in sorted(site.rglob("*.html")):
        parser = _Links()
        parser.feed(page.read_text())
        if parser.images_without_alt:
            problems.append((page, "image without alt text"))
        steps = zip(parser.headings, parser.headings[1:], strict=False)
        if parser.headings[:1] != [1] or any(b - a > 1 for a, b in steps):
            problems.append((page, f"heading levels {parser.headings}"))
        for link in parser.links:
            url = urlparse(link)
            if url.scheme in ("http", "https"):
                if url.netloc not in HOSTS:
                    problems.append((page, link))
            elif not (page.parent / urldefrag(link).url).resolve().exists():
                problems.append((page, link))
    return problems


def test_every_internal_link_resolves_and_external_ones_go_to_known_hosts(published):
    _, dest, _ = published
    site = dest / "site"
    pages = sorted(site.rglob("*.html"))
    assert [p.relative_to(site).as_posix() for p in pages] == [
        "index.html", "models/micro_1k_224.html", "models/micro_1k_224_fe.html"]
    assert dead_links(site) == []
    page = (site / "models" / "micro_1k_224.html").read_text()
    assert "LiteRT int8 (.tflite)" in page and "../../micro_1k_224/1.int8.tflite" in page
    text = (site / "index.html").read_text()
    assert "fonts.googleapis" not in text and "cdn" not in text.lower()


def test_the_site_in_the_build_folder_downloads_the_builds_own_files(published):
    """`hubpub site` says to open DIST/site: its downloads are the files in dist/, not the published
    layout (which is the copy publish uploads)."""
    dist, _, _ = published
    assert dead_links(dist / "site") == []
    page = (dist / "site" / "models" / "micro_1k_224.html").read_text()
    assert 'href="../../tars/micro_1k_224.tar.gz"' in page and 'href="../../litert/micro_1k_224.int8.tflite"' in page
    upload = (dist / "site-upload" / "models" / "micro_1k_224.html").read_text()
    assert 'href="../../micro_1k_224/1.tar.gz"' in upload


def test_the_link_checker_finds_what_it_looks_for(published, tmp_path):
    _, dest, _ = published
    shutil.copytree(dest, tmp_path / "copy")
    page = tmp_path / "copy" / "site" / "index.html"
    page.write_text(page.read_text().replace("</main>", '<a href="models/gone.html">x</a>'
                                             '<a href="https://cdn.example.com/x.js">y</a><img src="a.png"></main>'))
    found = [str(problem) for _, problem in dead_links(tmp_path / "copy" / "site")]
    assert found == ["image without alt text", "models/gone.html", "https://cdn.example.com/x.js", "a.png"]


def test_publish_sets_content_types_and_says_where_the_site_is(published):
    _, dest, result = published
    site_rows = [o for o in result.outcomes if o.upload.relative.startswith("site/")]
    assert {o.upload.relative for o in site_rows} >= {"site/index.html", "site/assets/site.css", "site/assets/site.js"}
    assert result.site_url == f"{BASE}/site/index.html"
    from hubpub.destinations.gcs import object_headers

    assert object_headers("site/index.html") == ("text/html; charset=utf-8", "public, max-age=300")
    assert object_headers("site/assets/site.css") == ("text/css; charset=utf-8", "public, max-age=300")
    assert object_headers("micro_1k_224/1.tar.gz") == ("application/gzip", "public, max-age=31536000, immutable")


def _chromium():
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not chromium or not driver:
        missing = "Debian's chromium and chromium-driver are not installed (make test installs them)"
        if os.environ.get("CI") == "true":  # CI installs them: a skip there would hide a site nobody opened
            pytest.fail(f"{missing}; under CI=true the browser test must run")
        pytest.skip(missing)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1600",
                "--allow-file-access-from-files"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(driver), options=options)


def test_the_site_in_a_real_browser(published, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    _, dest, _ = published
    shots = Path(__file__).parent / "artifacts"
    shots.mkdir(exist_ok=True)
    browser = _chromium()
    try:
        browser.get((dest / "site" / "index.html").as_uri())
        rows = browser.find_elements(By.CSS_SELECTOR, "#models tbody tr")
        assert [r.find_element(By.TAG_NAME, "a").text for r in rows] == ["micro_1k_224", "micro_1k_224_fe"]
        figures = browser.find_elements(By.CSS_SELECTOR, "svg.figure")  # top-1 against parameters and GMACs
        assert len(figures) == 2 and all(f.find_elements(By.CSS_SELECTOR, "circle.point") for f in figures)
        assert all(f.size["width"] > 300 for f in figures)  # drawn, not collapsed
        browser.save_screenshot(str(shots / "site-collection.png"))
        Select(browser.find_element(By.ID, "filter-kind")).select_by_value("feature-extractor")
        visible = [r for r in rows if r.is_displayed()]
        assert [r.find_element(By.TAG_NAME, "a").text for r in visible] == ["micro_1k_224_fe"]
        assert browser.find_element(By.ID, "shown").text == "1 shown"

        visible[0].find_element(By.TAG_NAME, "a").click()
        assert browser.find_element(By.TAG_NAME, "h1").text == "micro_1k_224_fe"
        button = browser.find_element(By.CSS_SELECTOR, "pre button.copy")
        button.click()
        WebDriverWait(browser, 5).until(lambda _: button.text == "Copied")  # the copy resolves a promise
        assert "hub.KerasLayer" in button.get_attribute("data-copied")
        browser.save_screenshot(str(shots / "site-model.png"))
        errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
        assert not errors, errors
    finally:
        browser.quit()
    from PIL import Image

    for shot in ("site-collection.png", "site-model.png"):  # pictures of the pages, not empty files
        with Image.open(shots / shot) as image:
            colors = image.convert("RGB").getcolors(1 << 16)  # None: more than 65,536 colours
            assert image.format == "PNG" and image.size[0] >= 1000 and (colors is None or len(colors) > 8)
