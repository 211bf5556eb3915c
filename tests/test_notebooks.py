"""Usage notebooks, rendered from templates and executed on a real Jupyter kernel (ipykernel, nbclient)
against the build's own artifacts served over loopback HTTP."""

import json
import re
import shutil

import nbformat
import pytest

from hubpub.errors import HubpubError
from hubpub.notebooks import NotebookError, render_notebooks
from hubpub.pipeline import execute_notebooks


@pytest.fixture(scope="module")
def executed(micro_manifest, micro_dist, tmp_path_factory):
    dist = tmp_path_factory.mktemp("nb") / "dist"
    for folder in ("saved_models", "tars", "keras", "reports"):
        shutil.copytree(micro_dist / folder, dist / folder)
    written = render_notebooks(micro_manifest, dist=dist, out=dist / "notebooks",
                               public_url_base="https://models.example.com/micro")
    assert [nb.artifact for nb in written] == ["micro_1k_224", "micro_1k_224_fe"]
    return dist, execute_notebooks(dist, written)


def _outputs(nb):
    return [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]


def _text(nb) -> str:
    return "".join(o.get("text", "") for o in _outputs(nb) if o.output_type == "stream")


def test_classifier_notebook_ran_with_figures_and_no_errors(executed):
    dist, notebooks = executed
    nb = nbformat.read(notebooks[0].path, as_version=4)
    outputs = _outputs(nb)
    assert not [o for o in outputs if o.output_type == "error"]
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 1  # the photos with their top-5
    text = _text(nb)
    assert "1000 classes" in text and "top-1 from the files:" in text
    keras_diff = float(re.search(r"largest difference from hub.KerasLayer: (\S+)", text).group(1))
    assert keras_diff <= 1e-4  # the Keras 3 file, loaded in the same notebook
    # what a reader sees: the published handle, not the loopback URL the run used
    params = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    assert params.source.startswith('HANDLE = "https://models.example.com/micro/micro_1k_224/1.tar.gz"')
    assert "127.0.0.1" not in params.source and not params.outputs


def test_fine_tuning_notebook_loss_goes_down(executed):
    _, notebooks = executed
    nb = nbformat.read(notebooks[1].path, as_version=4)
    assert not [o for o in _outputs(nb) if o.output_type == "error"]
    losses = json.loads(re.search(r"loss per epoch: (\[[^\]]*\])", _text(nb)).group(1))
    assert losses[-1] < losses[0], losses
    assert sum("image/png" in o.get("data", {}) for o in _outputs(nb)) == 2  # loss curve, feature projection


def test_executed_notebooks_are_kept_when_nothing_changed(executed, micro_manifest):
    dist, notebooks = executed
    before = {nb.path: nb.path.stat().st_mtime_ns for nb in notebooks}
    again = render_notebooks(micro_manifest, dist=dist, out=dist / "notebooks",
                             public_url_base="https://models.example.com/micro")
    assert all(nb.executed for nb in again)
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


def test_a_failing_cell_names_the_notebook_and_the_cell(micro_manifest, micro_dist, tmp_path):
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "classify.py.j2").write_text('# %% [markdown]\n# Broken\n\n# %% tags=["parameters"]\n'
                                              'HANDLE = "{{ artifact.asset_url }}"\n\n# %%\n'
                                              'raise ValueError("boom in {{ artifact.name }}")\n')
    dist = tmp_path / "dist"
    for folder in ("tars", "keras", "reports"):
        shutil.copytree(micro_dist / folder, dist / folder)
    written = render_notebooks(micro_manifest, dist=dist, out=dist / "notebooks", templates_dir=templates,
                               only=("micro_1k_224",))
    with pytest.raises(NotebookError, match=r"micro_1k_224\.ipynb: cell 3 failed: ValueError: boom in micro_1k_224$"):
        execute_notebooks(dist, written)
    assert issubclass(NotebookError, HubpubError)
