import re

import pytest
from click.testing import CliRunner

from hubpub.cli import cli
from hubpub.errors import ManifestError
from hubpub.manifest import load_manifest, parse_manifest


def test_real_manifest_loads(root):
    m = load_manifest(root / "collection.yaml")
    assert len(m.variants) == 24
    assert len(m.artifacts()) == 48
    names = {a.name for a in m.artifacts()}
    assert "convnext_tiny_1k_224" in names and "convnext_tiny_1k_224_fe" in names
    tiny = m.variant("convnext_tiny_1k_224")
    assert tiny.checkpoint_url == "https://dl.fbaipublicfiles.com/convnext/convnext_tiny_1k_224_ema.pth"
    assert (tiny.eval.resize, tiny.eval.crop_pct) == ("shorter", 0.875)
    assert m.variant("convnext_base_1k_384").eval.resize == "squash"
    # 28.59M is the published parameter count of ConvNeXt-T.
    assert tiny.parameter_count() == 28_589_128
    assert m.variant("convnext_base_21k_224").num_classes == 21841
    assert [d.key for d in m.variant("convnext_base_21k_1k_224").datasets] == ["imagenet-21k", "imagenet-1k"]
    iso = m.variant("convnext_iso_base_1k_224")
    assert iso.architecture.family == "convnext" and iso.architecture.style == "isotropic"
    assert iso.architecture.layer_scale_init == 0
    assert iso.feature_dim == 768


def _break(text: str, old: str, new: str, count: int = 1) -> str:
    assert old in text, old
    return text.replace(old, new, count)


def _colab(text: str, url: str, keep_notebooks: bool = True) -> str:
    """The manifest with a `docs.colab` link, and without its `notebooks` section unless kept."""
    if not keep_notebooks:
        text = re.sub(r"\nnotebooks:\n(?:  .*\n)+", "\n", text)
    return _break(text, "\ndocs:\n", f"\ndocs:\n  colab: {{classifier: '{url}'}}\n")


# (description, edit, expected fragment of the message: the location and the reason)
BROKEN = [
    ("unknown top-level key", lambda t: t + "\nextra_stuff: 1\n", r"line \d+: extra_stuff: unknown key"),
    ("unknown variant key", lambda t: _break(t, "top1: 82.1,", "top1: 82.1, colour: red,"),
     r"variants\[0\]\.colour: unknown key"),
    ("wrong type", lambda t: _break(t, "top1: 83.1", "top1: high"), r"variants\[1\]\.top1: .*number"),
    ("missing required field", lambda t: _break(t, "num_classes: 1000, resolution: 224, top1: 83.8,",
                                                "resolution: 224, top1: 83.8,"),
     r"variants\[2\]\.num_classes: required field is missing"),
    ("duplicate variant", lambda t: _break(t, "name: convnext_small_1k_224,", "name: convnext_tiny_1k_224,"),
     r"variants\[1\]\.name: duplicate variant name 'convnext_tiny_1k_224' \(first at variants\[0\]\)"),
    ("unknown architecture", lambda t: _break(t, "architecture: small, num", "architecture: smal, num"),
     r"variants\[1\]\.architecture: unknown architecture 'smal'"),
    ("malformed url", lambda t: _break(t, "url: convnext_base_1k_384.pth", 'url: "ht tp://x y"'),
     r"variants\[3\]\.checkpoint\.url: not a valid"),
    ("non-positive resolution", lambda t: _break(t, "resolution: 384, top1: 85.1", "resolution: 0, top1: 85.1"),
     r"variants\[3\]\.resolution: .*greater than 0"),
    ("21841 classes on a 1k variant", lambda t: _break(t, "num_classes: 1000, resolution: 224, top1: 84.3",
                                                       "num_classes: 21841, resolution: 224, top1: 84.3"),
     r"variants\[4\]\.num_classes: 21841 classes on a imagenet-1k head"),
    ("uppercase publisher", lambda t: _break(t, "handle: hubpub", "handle: HubPub"),
     r"line 6: publisher\.handle: 'HubPub' must be lowercase"),
    ("bad sha256", lambda t: _break(t, "url: convnext_large_1k_384.pth}",
                                    "url: convnext_large_1k_384.pth, sha256: abc}"),
     r"variants\[5\]\.checkpoint\.sha256: 'abc' is not a 64-character"),
    ("newline in a single-line field", lambda t: _break(t, "  name: hubpub\n", '  name: "hub\\npub"\n'),
     r"publisher\.name: must be a single non-empty line"),
    ("bad architecture depths", lambda t: _break(t, "depths: [3, 3, 9, 3]", "depths: [3, 3, 9]"),
     r"architectures\.tiny\.depths: .*at least 4"),
    ("unknown family", lambda t: _break(t, "tiny:   {family: convnext", "tiny:   {family: pyramid"),
     r"line 48: architectures\.tiny\.family: unknown family 'pyramid'; known: convnext, convnext_v2, keras, vit"),
    ("a family's own setting", lambda t: _break(t, "iso_small: {family: convnext, style: isotropic, depth: 18",
                                                "iso_small: {family: convnext, style: isotropic, depth: -1"),
     r"line 53: architectures\.iso_small\.depth: .*greater than 0"),
    ("unknown key in a family's settings", lambda t: _break(t, "tiny:   {family: convnext,",
                                                            "tiny:   {family: convnext, colour: red,"),
     r"architectures\.tiny\.colour: unknown key"),
    ("schema 1", lambda t: _break(t, "schema_version: 2", "schema_version: 1"),
     r"line 3: schema_version 1 is no longer read: .*names its model family \(convnext, convnext_v2, keras, vit\)"),
    ("unknown dataset", lambda t: _break(t, "architecture: base, pretrain: imagenet-21k,",
                                         "architecture: base, pretrain: imagenet-22k,"),
     r"variants\[\d+\]\.pretrain: unknown dataset 'imagenet-22k'; known: imagenet-1k, imagenet-21k, imagenet-21k-goog"),
    ("no eval preset for a resolution",
     lambda t: _break(t, "resolution: 384, top1: 85.1", "resolution: 512, top1: 85.1"),
     r"variants\[3\]\.eval: no eval preprocessing for resolution 512"),
    ("invalid yaml", lambda t: _break(t, "publisher:\n", "publisher: [\n"), r"line \d+: invalid YAML"),
    ("non-https colab", lambda t: _colab(t, "http://colab.research.google.com/x.ipynb", keep_notebooks=False),
     r"docs\.colab: not a valid https URL"),
    ("both notebooks and docs.colab", lambda t: _colab(t, "https://colab.research.google.com/x.ipynb"),
     r"docs\.colab: give either `notebooks` .* or `docs\.colab`"),
    ("notebooks path leaves the repository", lambda t: _break(t, "path: notebooks", "path: ../elsewhere"),
     r"notebooks\.path: .*"),
    ("notebooks repository not OWNER/REPO", lambda t: _break(t, "github: hubpub/hubpub", "github: hubpub"),
     r"notebooks\.github: .*"),
    ("bad destination", lambda t: _break(t, "destination: gs://hubpub-models", "destination: s3://hubpub-models"),
     r"publish\.destination: 's3://hubpub-models/convnext': a destination is gs://BUCKET/PREFIX"),
    ("bucket name", lambda t: _break(t, "destination: gs://hubpub-models", "destination: gs://Bad_Bucket"),
     r"line 36: publish\.destination: .*'Bad_Bucket' is not a valid Cloud Storage bucket name"),
    # a URL that passed once and ended up as code in the notebooks and snippets
    ("code in a URL", lambda t: _break(t, "public_url_base: https://storage.googleapis.com/hubpub-models/convnext",
                                       """public_url_base: 'http://127.0.0.1:9/x"+str(__import__("os").system("id"))'"""),
     r"line 37: publish\.public_url_base: not a valid URL: .* holds '\"', which a URL may not"),
    ("space in a checkpoint URL", lambda t: _break(t, "url: convnext_large_1k_384.pth}", "url: 'convnext large.pth'}"),
     r"variants\[5\]\.checkpoint\.url: not a valid URL: .* holds ' '"),
    ("no host", lambda t: _break(t, "checkpoint_base_url: https://dl.fbaipublicfiles.com/convnext/",
                                 "checkpoint_base_url: 'https://exa mple/'"), r"checkpoint_base_url: not a valid URL"),
    ("missing family", lambda t: _break(t, "tiny:   {family: convnext, ", "tiny:   {"),
     r"line 48: architectures\.tiny\.family: required field is missing; give one of convnext, convnext_v2, keras, vit"),
    ("missing calibration folder", lambda t: t + "litert: {calibration: [no/such/photos]}\n",
     r"litert\.calibration\[0\]: no folder 'no/such/photos' beside the manifest"),
    ("unknown format", lambda t: t + "formats: {onnx: false, tfjs: true}\n",
     r"line \d+: formats\.tfjs: unknown format 'tfjs'; known: keras, litert, onnx"),
    ("format not a yes/no", lambda t: t + "formats: {onnx: sometimes}\n", r"formats\.onnx: .*bool"),
]


@pytest.mark.parametrize("desc,edit,expected", BROKEN, ids=[b[0] for b in BROKEN])
def test_broken_manifest_names_the_place(manifest_text, desc, edit, expected):
    with pytest.raises(ManifestError) as info:
        parse_manifest(edit(manifest_text), "collection.yaml")
    joined = "\n".join(info.value.lines())
    assert re.search(expected, joined), joined


def test_all_problems_reported_in_one_run(manifest_text):
    text = _break(manifest_text, "handle: hubpub", "handle: Hub Pub")
    text = _break(text, "architecture: small, num", "architecture: smal, num")
    text = _break(text, "resolution: 384, top1: 85.1", "resolution: -1, top1: 85.1")
    with pytest.raises(ManifestError) as info:
        parse_manifest(text, "m.yaml")
    lines = info.value.lines()
    assert len(lines) == 3, lines
    assert all(line.startswith("m.yaml: line ") for line in lines)


def test_cli_validate_ok(root):
    result = CliRunner().invoke(cli, ["validate", "--manifest", str(root / "collection.yaml")])
    assert result.exit_code == 0, result.output
    assert "24 variants, 48 artifacts" in result.output


def test_cli_validate_reports_every_problem_without_traceback(tmp_path, manifest_text):
    bad = tmp_path / "bad.yaml"
    text = _break(manifest_text, "handle: hubpub", "handle: HUB")
    bad.write_text(_break(text, "top1: 83.1", "top1: high"))
    result = CliRunner().invoke(cli, ["validate", "--manifest", str(bad)])
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error: ")]
    assert len(errors) == 2, result.output
    assert "publisher.handle" in errors[0] and "variants[1].top1" in errors[1]


def test_cli_missing_manifest(tmp_path):
    result = CliRunner().invoke(cli, ["validate", "--manifest", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 1
    assert "cannot read the manifest" in result.output


def test_cli_list(root):
    result = CliRunner().invoke(cli, ["list", "--manifest", str(root / "collection.yaml"),
                                      "--only", "convnext_tiny_1k_*"])
    assert result.exit_code == 0, result.output
    rows = [r.split() for r in result.output.splitlines()[2:]]
    assert [r[0] for r in rows] == ["convnext_tiny_1k_224", "convnext_tiny_1k_224_fe"]
    assert rows[0][-1] == "28.59M" and rows[1][5] == "(768-d)"


def test_every_command_has_help():
    for name in cli.commands:
        result = CliRunner().invoke(cli, [name, "--help"])
        assert result.exit_code == 0 and "Usage:" in result.output


def test_ctrl_c_is_a_message_not_a_traceback(monkeypatch, root):
    calls = []

    def interrupted(*args, **kwargs):
        calls.append(args)
        raise KeyboardInterrupt

    # A mock, because Ctrl-C cannot be typed into an in-process test (the subprocess tests send SIGINT).
    monkeypatch.setattr("hubpub.cli.build.load_manifest", interrupted)  # where `validate` finds it
    result = CliRunner().invoke(cli, ["validate", "--manifest", str(root / "collection.yaml")])
    assert calls, "the interrupt never happened: the test would pass for any exit"
    assert result.exit_code == 130 and "Traceback" not in result.output
    assert result.output.strip() == "error: interrupted; finished files are kept, rerun the command to go on"
