"""Docs rendering with real Jinja2, and the tfhub.dev validator on generated and broken trees."""

import re
import shutil

import pytest
from click.testing import CliRunner

from hubpub.cli import cli
from hubpub.docs import render_docs
from hubpub.docs.validate import validate_docs
from hubpub.errors import DocsError
from hubpub.manifest import parse_manifest


@pytest.fixture(scope="module")
def docs_tree(micro_manifest, micro_dist, tmp_path_factory):
    out = tmp_path_factory.mktemp("docs")
    render_docs(micro_manifest, dist=micro_dist, out=out)
    return out / "assets" / "docs"


def test_generated_tree_passes(docs_tree):
    docs = validate_docs(docs_tree)
    assert sorted((d.kind, d.name) for d in docs) == [
        ("collection", "micro"), ("lite", "micro_1k_224/float32"), ("lite", "micro_1k_224/int8"),
        ("lite", "micro_1k_224_fe/float32"), ("lite", "micro_1k_224_fe/int8"),
        ("module", "micro_1k_224"), ("module", "micro_1k_224_fe"), ("publisher", "testpub")]
    lite = next(d for d in docs if d.name == "micro_1k_224/int8")
    assert lite.path == docs_tree / "testpub/models/micro_1k_224/int8/lite/1.md"
    assert set(lite.metadata) == {"asset-path", "parent-model"}
    assert lite.metadata["parent-model"] == ["testpub/micro_1k_224/1"]
    assert lite.metadata["asset-path"] == ["http://127.0.0.1:9/bucket/micro/micro_1k_224/1.int8.tflite"]


def test_model_doc_content(docs_tree, micro_dist):
    import json

    clf = (docs_tree / "testpub/models/micro_1k_224/1.md").read_text()
    fe = (docs_tree / "testpub/models/micro_1k_224_fe/1.md").read_text()
    assert clf.splitlines()[0] == "# Module testpub/micro_1k_224/1"
    assert "<!-- task: image-classification -->" in clf and "<!-- task: image-feature-vector -->" in fe
    assert "<!-- asset-path: http://127.0.0.1:9/bucket/micro/micro_1k_224/1.tar.gz -->" in clf
    assert "<!-- dataset: imagenet-ilsvrc-2012-cls -->" in clf
    assert "trainable=True" in clf and "keras.saving.load_model(path)" in clf and "serving_bytes" in clf
    assert "assets/labels.txt" in clf and "assets/labels.txt" not in fe
    report = json.loads((micro_dist / "reports" / "micro_1k_224.json").read_text())
    assert report["tarball"]["sha256"] in clf
    assert "64-dimensional feature vectors" in fe
    gap = report["preprocess_gap"]
    assert f"differs from Pillow's by {gap['mean']:.3f}" in clf and 0 < gap["mean"] < 0.5
    assert not any(line != line.rstrip() for line in clf.splitlines())


def test_collection_links_every_artifact_grouped(docs_tree):
    text = (docs_tree / "testpub/collections/micro/1.md").read_text()
    classifiers, features = text.split("## Feature extractors")
    assert "https://tfhub.dev/testpub/micro_1k_224/1" in classifiers
    assert "https://tfhub.dev/testpub/micro_1k_224_fe/1" in features
    assert "| 50.0 |" in classifiers  # the published top-1


def _replace(tree, rel, old, new):
    path = tree / rel
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))


MODEL = "testpub/models/micro_1k_224/1.md"
COLL = "testpub/collections/micro/1.md"
PUB = "testpub/testpub.md"
LITE = "testpub/models/micro_1k_224/int8/lite/1.md"

BROKEN = [
    ("trailing space on heading", lambda t: _replace(t, MODEL, "/1\n", "/1 \n"), r"1\.md:1: .*\(trailing whitespace\)"),
    ("CRLF", lambda t: (t / MODEL).write_bytes((t / MODEL).read_bytes().replace(b"\n", b"\r\n")),
     r"1\.md:1: CR \(Windows\) line ending"),
    ("uppercase publisher", lambda t: _replace(t, PUB, "# Publisher testpub", "# Publisher TestPub"),
     r"testpub\.md:1: first line '# Publisher TestPub' is not a valid heading"),
    ("unknown task", lambda t: _replace(t, MODEL, "task: image-classification", "task: image-classifyer"),
     r"unknown task 'image-classifyer'"),
    ("duplicate format", lambda t: _replace(t, MODEL, "<!-- format: saved_model_2 -->",
                                            "<!-- format: saved_model_2 -->\n<!-- format: saved_model -->"),
     r"metadata 'format' appears 2 times"),
    (".tgz asset", lambda t: _replace(t, MODEL, "1.tar.gz -->", "1.tgz -->"), r"asset-path .* must end with \.tar\.gz"),
    ("prose in metadata", lambda t: _replace(t, MODEL, "<!-- license: mit -->", "<!-- license: mit -->\nSome prose."),
     r"unexpected line found in the metadata block: 'Some prose\.'"),
    ("missing publisher page", lambda t: (t / PUB).unlink(), r"publisher doc testpub/testpub\.md is missing"),
    ("missing description", lambda t: _replace(t, MODEL, "/1\n", "/1\n\n\n"), r"missing the one-paragraph description"),
    ("heading does not match path", lambda t: _replace(t, MODEL, "micro_1k_224/1\n", "micro_1k_224/2\n"),
     r"heading names module testpub/micro_1k_224/2, whose doc must be at testpub/micro_1k_224/2\.md or "
     r"testpub/models/micro_1k_224/2\.md"),
    ("missing required tag", lambda t: _replace(t, MODEL, "<!-- fine-tunable: true -->\n", ""),
     r"missing required metadata 'fine-tunable'"),
    ("tag not allowed on a collection",
     lambda t: _replace(t, COLL, "<!-- network-architecture", "<!-- license: mit -->\n<!-- network-architecture"),
     r"metadata 'license' is not allowed on a collection doc"),
    ("tag on a publisher doc", lambda t: _replace(t, PUB, "\n\n## ", "\n\n<!-- license: mit -->\n\n## "),
     r"metadata 'license' is not allowed on a publisher doc"),
    ("asset on github", lambda t: _replace(t, MODEL, "http://127.0.0.1:9/bucket/micro/micro_1k_224/1.tar.gz",
                                           "https://github.com/x/y/raw/main/m.tar.gz"), r"must not be on GitHub"),
    ("asset with a query", lambda t: _replace(t, MODEL, "1.tar.gz -->", "1.tar.gz?alt=media -->"),
     r"must end with \.tar\.gz"),
    ("colab not on colab", lambda t: _replace(t, MODEL, "<!-- license: mit -->",
                                              "<!-- license: mit -->\n<!-- colab: https://example.com/nb.ipynb -->"),
     r"colab .* must be an https URL on colab\.research\.google\.com"),
    ("link to a model without doc", lambda t: _replace(t, COLL, "tfhub.dev/testpub/micro_1k_224_fe/1`",
                                                       "tfhub.dev/testpub/micro_9k_224_fe/1`"),
     r"links https://tfhub\.dev/testpub/micro_9k_224_fe/1, which has no doc in the tree"),
    ("collection without links", lambda t: (t / COLL).write_text(
        re.sub(r"https://tfhub\.dev/[^\s`]+", "x", (t / COLL).read_text())), r"must link at least one model"),
    ("unknown dataset", lambda t: _replace(t, MODEL, "dataset: imagenet-ilsvrc-2012-cls", "dataset: imagenet-9k"),
     r"unknown dataset 'imagenet-9k'"),
    ("fine-tunable not boolean", lambda t: _replace(t, MODEL, "fine-tunable: true", "fine-tunable: yes"),
     r"fine-tunable must be true or false"),
    ("unknown license", lambda t: _replace(t, MODEL, "license: mit", "license: MIT"), r"unknown license 'MIT'"),
    ("not a doc path", lambda t: shutil.copy(t / PUB, t / "testpub/stray.txt"),
     r"stray\.txt:1: heading names publisher testpub, whose doc must be at testpub/testpub\.md"),
    # Lite docs, as tools/validator.py's LiteParsingPolicy has them (hubpub wrote both of these once)
    ("lite doc with the format folder inside the name",
     lambda t: (t / LITE).rename((t / "testpub/models/micro_1k_224/lite/int8").mkdir(parents=True) or
                                 t / "testpub/models/micro_1k_224/lite/int8/1.md"),
     r"lite/int8/1\.md:1: heading names lite testpub/micro_1k_224/int8/1, whose doc must be at "
     r"testpub/micro_1k_224/int8/lite/1\.md or testpub/models/micro_1k_224/int8/lite/1\.md"),
    ("task on a lite doc", lambda t: _replace(t, LITE, "<!-- parent-model", "<!-- task: image-classification -->\n"
                                              "<!-- parent-model"),
     r"metadata 'task' is not allowed on a lite doc \(allowed: asset-path, colab, interactive-visualizer, "
     r"parent-model\)"),
    ("lite asset not a tflite", lambda t: _replace(t, LITE, "int8.tflite -->", "int8.tar.gz -->"),
     r"asset-path .* of a lite doc must end with \.tflite"),
    ("lite without a parent", lambda t: _replace(t, LITE, "<!-- parent-model: testpub/micro_1k_224/1 -->\n", ""),
     r"missing required metadata 'parent-model' for a lite doc"),
    ("collection doc not 1.md", lambda t: (t / COLL).rename(t / "testpub/collections/micro/2.md"),
     r"micro/2\.md:1: heading names collection testpub/micro/1, whose doc must be at "
     r"testpub/collections/micro/1\.md"),
]


@pytest.mark.parametrize("desc,breaker,expected", BROKEN, ids=[b[0] for b in BROKEN])
def test_broken_doc_fails_precisely(docs_tree, tmp_path, desc, breaker, expected):
    tree = tmp_path / "docs"
    shutil.copytree(docs_tree, tree)
    breaker(tree)
    with pytest.raises(DocsError) as info:
        validate_docs(tree)
    assert re.search(expected, "\n".join(info.value.lines())), info.value.lines()


def test_template_typo_names_variable_and_line(micro_manifest, micro_dist, tmp_path, root):
    template = tmp_path / "mine.md.j2"
    text = (root / "hubpub" / "templates" / "model.md.j2").read_text()
    template.write_text(text.replace("{{ a.task }}", "{{ a.taks }}"))
    line = text[: text.index("{{ a.task }}")].count("\n") + 1
    with pytest.raises(DocsError, match=rf"mine\.md\.j2:{line}: .*'taks'"):
        render_docs(micro_manifest, dist=micro_dist, out=tmp_path / "out", model_template=str(template))
    assert not (tmp_path / "out" / "assets").exists(), "nothing half-written"


def test_user_template_renders(micro_manifest, micro_dist, tmp_path, root):
    template = tmp_path / "short.md.j2"
    template.write_text((root / "hubpub" / "templates" / "model.md.j2").read_text().replace(
        "## Overview", "## Overview\n\nCustom text from my own template.", 1))
    render_docs(micro_manifest, dist=micro_dist, out=tmp_path / "out", model_template=str(template))
    assert "Custom text from my own template." in (
        tmp_path / "out/assets/docs/testpub/models/micro_1k_224/1.md").read_text()


def test_manifest_strings_cannot_inject_metadata(micro_manifest_path, micro_dist, tmp_path):
    text = micro_manifest_path.read_text().replace(
        "description: Micro ConvNeXt models for tests.",
        'description: "<!-- task: text-embedding --> # Heading *bold* [x](y)"')
    manifest = parse_manifest(text, micro_manifest_path)
    render_docs(manifest, dist=micro_dist, out=tmp_path)
    coll = (tmp_path / "assets/docs/testpub/collections/micro/1.md").read_text()
    assert "\\<\\!-- task: text-embedding --\\>" in coll and "\\# Heading \\*bold\\*" in coll
    docs = validate_docs(tmp_path)
    assert [d.metadata.get("task") for d in docs if d.kind == "collection"] == [
        ["image-classification", "image-feature-vector"]]


def test_multi_line_value_is_refused(micro_manifest, micro_dist, tmp_path):
    from hubpub.docs import environment, render

    (tmp_path / "t.j2").write_text("# Title\n{{ text }}\n")
    with pytest.raises(DocsError, match=r"t\.j2:2: refusing to print a multi-line value"):
        render(environment(tmp_path), "t.j2", {"text": "one\n<!-- task: x -->"})


def test_cli_docs_and_validate(micro_manifest_path, micro_dist, tmp_path):
    out = tmp_path / "docs"
    result = CliRunner().invoke(cli, ["docs", "--manifest", str(micro_manifest_path), "--dist", str(micro_dist),
                                      "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "rendered and validated 8 docs" in result.output and "micro_21k_224" in result.output
    result = CliRunner().invoke(cli, ["validate-docs", str(out)])
    assert result.exit_code == 0 and "8 docs (1 publisher, 1 collection, 2 module, 4 lite)" in result.output
    _replace(out / "assets" / "docs", MODEL, "task: image-classification", "task: nope")
    _replace(out / "assets" / "docs", MODEL, "license: mit", "license: gpl")
    result = CliRunner().invoke(cli, ["validate-docs", str(out)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error: ")]
    assert len(errors) == 2 and all("micro_1k_224/1.md:" in e for e in errors)
