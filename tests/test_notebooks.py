"""Usage notebooks, rendered from templates and executed on a real Jupyter kernel (ipykernel, nbclient)
against the build's own artifacts served over loopback HTTP."""

import json
import re
import shutil

import nbformat
import pytest

from hubpub import tolerances
from hubpub.errors import HubpubError
from hubpub.notebooks import NotebookError, render_notebooks
from hubpub.pipeline import execute_notebooks
from tests.conftest import copy_built


@pytest.fixture(scope="module")
def executed(demo_run):
    """The usage notebooks `hubpub demo` executed (tests/conftest.py: once per test run)."""
    assert demo_run.returncode == 0, demo_run.stderr[-3000:]
    folder = demo_run.dist / "notebooks" / "localhost-8000"
    return demo_run, [folder / f"{demo_run.variant}.ipynb", folder / f"{demo_run.variant}_fe.ipynb"]


def _outputs(nb):
    return [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]


def _text(nb) -> str:
    return "".join(o.get("text", "") for o in _outputs(nb) if o.output_type == "stream")


def test_classifier_notebook_ran_with_figures_and_no_errors(executed):
    demo, notebooks = executed
    nb = nbformat.read(notebooks[0], as_version=4)
    outputs = _outputs(nb)
    assert not [o for o in outputs if o.output_type == "error"]
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 1  # the photos with their top-5
    text = _text(nb)
    assert "1000 classes" in text and "top-1 from the files:" in text
    keras_diff = float(re.search(r"largest difference from hub.KerasLayer: (\S+)", text).group(1))
    assert keras_diff <= tolerances.KERAS_FILE  # the Keras 3 file on TensorFlow, in the same notebook
    # what a reader sees: the published handle, not the loopback URL the run used
    params = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    assert params.source.startswith(f'HANDLE = "http://localhost:8000/{demo.variant}/1.tar.gz"')
    assert "127.0.0.1" not in params.source and not params.outputs


def test_fine_tuning_notebook_loss_goes_down(executed):
    _, notebooks = executed
    nb = nbformat.read(notebooks[1], as_version=4)
    assert not [o for o in _outputs(nb) if o.output_type == "error"]
    losses = json.loads(re.search(r"loss per epoch: (\[[^\]]*\])", _text(nb)).group(1))
    assert losses[-1] < losses[0], losses
    assert sum("image/png" in o.get("data", {}) for o in _outputs(nb)) == 2  # loss curve, feature projection


def test_executed_notebooks_are_kept_when_nothing_changed(executed, tmp_path):
    from hubpub.manifest import load_manifest

    demo, _ = executed
    dist = tmp_path / "dist"
    copy_built(demo.dist, dist)
    shutil.copytree(demo.dist / "notebooks", dist / "notebooks")
    before = {p: p.stat().st_mtime_ns for p in (dist / "notebooks").rglob("*.ipynb")}
    again = render_notebooks(load_manifest(demo.manifest), dist=dist, out=dist / "notebooks",
                             public_url_base="http://localhost:8000")
    assert sorted(nb.path for nb in again) == sorted(before) and all(nb.executed for nb in again)
    execute_notebooks(dist, again)
    assert {nb.path: nb.path.stat().st_mtime_ns for nb in again} == before


def test_random_weights_are_said_in_the_first_cell(micro_manifest, micro_dist, tmp_path):
    dist = tmp_path / "dist"
    shutil.copytree(micro_dist / "reports", dist / "reports")
    report = dist / "reports" / "micro_1k_224.json"
    report.write_text(json.dumps({**json.loads(report.read_text()), "random_weights": True}))
    written = render_notebooks(micro_manifest, dist=dist, out=dist / "notebooks", only=("micro_1k_224",))
    first = nbformat.read(written[0].path, as_version=4).cells[0]
    assert first.cell_type == "markdown" and "random weights" in first.source


def _micro_classify_notebook(template: str, micro_manifest, micro_dist, tmp_path):
    """(dist, the classify notebook of micro_1k_224 rendered from `template`) in a copy of the micro build."""
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "classify.py.j2").write_text(template)
    dist = tmp_path / "dist"
    copy_built(micro_dist, dist, saved_models=False)
    return dist, render_notebooks(micro_manifest, dist=dist, out=dist / "notebooks", templates_dir=templates,
                                  only=("micro_1k_224",))


def test_a_failing_cell_names_the_notebook_and_the_cell(micro_manifest, micro_dist, tmp_path):
    dist, written = _micro_classify_notebook('# %% [markdown]\n# Broken\n\n# %% tags=["parameters"]\n'
                                             'HANDLE = "{{ artifact.asset_url }}"\n\n# %%\n'
                                             'raise ValueError("boom in {{ artifact.name }}")\n',
                                             micro_manifest, micro_dist, tmp_path)
    with pytest.raises(NotebookError, match=r"micro_1k_224\.ipynb: cell 3 failed: ValueError: boom in micro_1k_224$"):
        execute_notebooks(dist, written)
    assert issubclass(NotebookError, HubpubError)


def test_one_failing_notebook_leaves_the_others_executed(micro_manifest, micro_dist, tmp_path):
    """The kernels run side by side: the fine-tuning notebook, started first, is stored with its outputs
    although the classifier's fails; the error is the failing notebook's."""
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "classify.py.j2").write_text('# %% tags=["parameters"]\nHANDLE = "{{ artifact.asset_url }}"\n\n'
                                              '# %%\nraise ValueError("boom")\n')
    (templates / "fine_tune.py.j2").write_text('# %% tags=["parameters"]\nHANDLE = "{{ artifact.asset_url }}"\n\n'
                                               '# %%\nprint("tuned", HANDLE.rsplit("/", 1)[-1])\n')
    dist = tmp_path / "dist"
    copy_built(micro_dist, dist, saved_models=False)
    written = render_notebooks(micro_manifest, dist=dist, out=dist / "notebooks", templates_dir=templates)
    started = []
    with pytest.raises(NotebookError, match=r"micro_1k_224\.ipynb: cell 2 failed: ValueError: boom$"):
        execute_notebooks(dist, written, progress=started.append)
    assert started == ["micro_1k_224_fe", "micro_1k_224"]  # the fine-tuning one first
    tuned = nbformat.read(next(nb.path for nb in written if nb.artifact == "micro_1k_224_fe"), as_version=4)
    assert _text(tuned) == "tuned micro_1k_224_fe.tar.gz\n"


def test_kernels_start_side_by_side_as_cpus_and_memory_allow():
    from hubpub.notebooks import can_start

    tiny, xlarge, gib = 114_000_000, 1_400_000_000, 2**30  # ConvNeXt's weight bytes
    assert can_start([], xlarge, cpus=1, memory=4 * gib)  # alone: always
    assert can_start([tiny], tiny, cpus=2, memory=24 * gib)
    assert not can_start([tiny], tiny, cpus=1, memory=24 * gib)  # a CPU each
    assert can_start([tiny, tiny], tiny, cpus=8, memory=24 * gib)
    assert not can_start([xlarge], tiny, cpus=2, memory=24 * gib)  # xlarge's kernel alone needs nearly all of it
    assert not can_start([tiny], tiny, cpus=2, memory=4 * gib)
    assert can_start([tiny], tiny, cpus=2, memory=None)


def test_the_demo_ran_its_two_kernels_side_by_side(executed):
    """Each notebook's cells carry nbclient's timestamps: the two runs overlapped. (Where `can_start` says a
    second kernel must wait, one CPU or too little memory, they run one after the other, as they should.)"""
    from datetime import datetime

    from hubpub.machine import physical_memory, usable_cpus
    from hubpub.notebooks import can_start
    from hubpub.record import read_record

    demo = executed[0]
    weights = [4 * read_record(demo.dist / "reports" / f"{p.stem}.json").parameters for p in executed[1]]
    if not can_start(weights[:1], weights[1], usable_cpus(), physical_memory()):
        pytest.skip(f"this machine ({usable_cpus()} CPU(s), {(physical_memory() or 0) / 2**30:.0f} GiB) runs the "
                    "demo's notebooks one at a time: nothing side by side to check")
    spans = []
    for path in executed[1]:
        stamps = [datetime.fromisoformat(c.metadata.execution[key].replace("Z", "+00:00"))
                  for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"
                  for key in ("iopub.execute_input", "shell.execute_reply")]
        spans.append((min(stamps), max(stamps)))
    (a0, a1), (b0, b1) = spans
    assert a0 < b1 and b0 < a1, spans


def test_a_dead_kernel_is_one_error_with_what_it_said(micro_manifest, micro_dist, tmp_path, capfd):
    """The kernel's native stderr is kept out of the terminal, and shown when the kernel dies."""
    dist, written = _micro_classify_notebook('# %% tags=["parameters"]\nHANDLE = "{{ artifact.asset_url }}"\n\n'
                                             '# %%\nimport os\nos.write(2, b"chatter\\nkernel out of luck\\n")\n'
                                             'import time\ntime.sleep(3)  # the kernel forwards what fd 2 got\n'
                                             'os._exit(3)\n', micro_manifest, micro_dist, tmp_path)
    with pytest.raises(NotebookError, match=r"micro_1k_224\.ipynb: the kernel failed: .*"
                                            r"\(kernel stderr: kernel out of luck\)$"):
        execute_notebooks(dist, written)
    assert "chatter" not in capfd.readouterr().err


# --------------------------------------------------------------------------- Colab links that resolve


@pytest.fixture()
def checkout(micro_dist, tmp_path):
    """A user's git checkout holding the manifest, its `notebooks` in `notebooks/`, and a build in dist/."""
    from tests.conftest import MICRO_MANIFEST

    root = tmp_path / "models-repo"
    (root / ".git").mkdir(parents=True)
    text = MICRO_MANIFEST.replace("PUBLISH_DIR", str(tmp_path / "published")) + (
        "notebooks: {github: testpub/micro-models, branch: main, path: notebooks}\n")
    (root / "collection.yaml").write_text(text)
    dist = root / "dist"
    copy_built(micro_dist, dist)
    return root


def _cli(*args):
    from click.testing import CliRunner

    from hubpub.cli import cli

    return CliRunner().invoke(cli, list(args))


SLUG = "127.0.0.1-9-bucket-micro"  # the manifest's destination, read from http://127.0.0.1:9/bucket/micro


def test_each_doc_links_its_own_notebook(checkout):
    """Notebooks are build output (dist/notebooks/<destination>/) until a publish copies them into the
    checkout; each doc's Colab link names its own, in its destination's folder."""
    manifest = str(checkout / "collection.yaml")
    result = _cli("notebooks", "--manifest", manifest, "--dist", str(checkout / "dist"))
    assert result.exit_code == 0, result.output
    built = checkout / "dist" / "notebooks"
    assert (built / SLUG / "micro_1k_224.ipynb").is_file() and (built / SLUG / "micro_1k_224_fe.ipynb").is_file()
    assert not (checkout / "notebooks").exists()  # nothing in the checkout before a publish
    docs = checkout / "dist" / "docs"
    assert _cli("docs", "--manifest", manifest, "--dist", str(checkout / "dist")).exit_code == 0
    doc = (docs / "assets/docs/testpub/models/micro_1k_224/1.md").read_text()
    url = f"https://colab.research.google.com/github/testpub/micro-models/blob/main/notebooks/{SLUG}/micro_1k_224.ipynb"
    assert f"<!-- colab: {url} -->" in doc and f"[Open the usage notebook in Colab]({url})" in doc

    result = _cli("validate-docs", str(docs), "--manifest", manifest, "--notebooks", str(built))
    assert result.exit_code == 0, result.output
    assert "2 Colab links open a notebook of their artifact" in result.output
    assert "no outputs yet" in result.output  # rendered, not executed: said, not an error

    # Without --notebooks, the checkout is what the links open: nothing there yet.
    result = _cli("validate-docs", str(docs), "--manifest", manifest)
    assert result.exit_code == 1
    assert re.search(rf"^error: .*testpub/models/micro_1k_224/1\.md: Colab link {re.escape(url)} is dead: no notebook "
                     rf"at .*models-repo/notebooks/{SLUG}/micro_1k_224\.ipynb; write the notebooks with "
                     r"`hubpub notebooks --execute`$", result.output, re.M), result.output
    assert "Traceback" not in result.output


def test_a_notebook_of_another_artifact_is_a_dead_link(checkout):
    manifest = str(checkout / "collection.yaml")
    assert _cli("notebooks", "--manifest", manifest, "--dist", str(checkout / "dist")).exit_code == 0
    assert _cli("docs", "--manifest", manifest, "--dist", str(checkout / "dist")).exit_code == 0
    nbs = checkout / "dist" / "notebooks"
    shutil.copy(nbs / SLUG / "micro_1k_224_fe.ipynb", nbs / SLUG / "micro_1k_224.ipynb")  # a copy-paste slip
    result = _cli("validate-docs", str(checkout / "dist" / "docs"), "--manifest", manifest, "--notebooks", str(nbs))
    assert result.exit_code == 1
    assert re.search(r"micro_1k_224\.ipynb does not mention the artifact's handle "
                     r"http://127\.0\.0\.1:9/bucket/micro/micro_1k_224/1\.tar\.gz", result.output), result.output


def test_publish_refuses_a_dead_colab_link_before_uploading(checkout, tmp_path):
    from hubpub.destinations import parse as parse_destination
    from hubpub.manifest import load_manifest
    from hubpub.publish import publish

    manifest = load_manifest(checkout / "collection.yaml")
    assert _cli("docs", "--manifest", str(checkout / "collection.yaml"), "--dist",
                str(checkout / "dist")).exit_code == 0  # docs, but no notebooks yet
    dest = tmp_path / "published"  # the manifest's destination
    with pytest.raises(HubpubError, match=r"Colab link .* is dead: no notebook at"):
        publish(manifest, checkout / "dist", parse_destination(str(dest)))
    assert not dest.exists()  # nothing uploaded, no folder left


def test_own_colab_links_still_work_and_are_said_to_be_unchecked(micro_dist, tmp_path):
    from tests.conftest import MICRO_MANIFEST

    text = MICRO_MANIFEST.replace("PUBLISH_DIR", str(tmp_path / "published")).replace(
        "collection: {", "docs: {colab: {classifier: 'https://colab.research.google.com/drive/1abc'}}\ncollection: {")
    (tmp_path / "collection.yaml").write_text(text)
    dist = tmp_path / "dist"
    shutil.copytree(micro_dist / "reports", dist / "reports")
    assert _cli("docs", "--manifest", str(tmp_path / "collection.yaml"), "--dist", str(dist)).exit_code == 0
    result = _cli("validate-docs", str(dist / "docs"), "--manifest", str(tmp_path / "collection.yaml"))
    assert result.exit_code == 0, result.output
    assert result.output.count("warning: 1 Colab link(s) point outside the manifest's `notebooks` repository "
                               "(e.g. https://colab.research.google.com/drive/1abc); hubpub cannot check them") == 1
