"""An installed hubpub works away from its source checkout: the wheel carries templates, labels and photos."""

import json
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def wheel(root, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(root), "--no-deps", "--no-build-isolation",
                    "--quiet", "-w", str(out)], check=True, timeout=300, cwd=out)
    [found] = out.glob("hubpub-*.whl")
    return found


def test_wheel_ships_the_package_resources(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for needed in ("hubpub/templates/model.md.j2", "hubpub/templates/collection.md.j2",
                   "hubpub/templates/publisher.md.j2", "hubpub/data/labels/imagenet-1k.txt",
                   "hubpub/data/labels/imagenet-21k.txt", "hubpub/data/vocabularies.yaml",
                   "hubpub/data/photos/astronaut.jpg", "hubpub/data/photos/README.md",
                   "hubpub/py.typed"):  # type checkers read hubpub's annotations (PEP 561)
        assert needed in names, needed


def test_the_version_is_written_once_and_every_reader_agrees(wheel, root):
    """hubpub/__init__.py holds it; the wheel's metadata, the installed metadata and `hubpub --version`
    read it from there, and pyproject.toml names it dynamic."""
    import tomllib
    from importlib.metadata import version

    import hubpub

    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    assert "version" not in project and "version" in project["dynamic"], project
    with zipfile.ZipFile(wheel) as z:
        [metadata] = [n for n in z.namelist() if n.endswith(".dist-info/METADATA")]
        [wheel_version] = [line.removeprefix("Version: ") for line in z.read(metadata).decode().splitlines()
                           if line.startswith("Version: ")]
    said = subprocess.run([sys.executable, "-m", "hubpub", "--version"], capture_output=True, text=True,
                          timeout=120, check=True).stdout.strip()
    assert said == f"hubpub, version {hubpub.__version__}", said
    assert wheel_version == version("hubpub") == hubpub.__version__, (wheel_version, version("hubpub"))


def test_installed_wheel_renders_docs_from_an_empty_directory(wheel, micro_manifest_path, micro_dist, tmp_path):
    """A fresh virtual environment with only the wheel installed; the dependencies are this environment's
    (a path entry, not its .pth files, so this checkout's editable hubpub stays invisible)."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--quiet",
                    str(wheel)], check=True, timeout=300)
    site = Path(subprocess.check_output([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                                        text=True).strip())
    (site / "zz_deps.pth").write_text(sysconfig.get_path("purelib") + "\n")

    work = tmp_path / "empty"
    work.mkdir()
    # every format wanted, as a user's manifest would: the core must say which extras are missing
    (work / "collection.yaml").write_text(micro_manifest_path.read_text().replace("formats: {onnx: false}\n", ""))
    shutil.copytree(micro_dist / "reports", work / "dist" / "reports")

    def hubpub(*args):
        proc = subprocess.run([str(venv / "bin" / "hubpub"), *args], cwd=work, capture_output=True, text=True,
                              timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]
        return proc.stdout

    where = subprocess.check_output([str(python), "-c", "import hubpub, hubpub.resources as r; print(hubpub.__file__); "
                                     "print(r.data_dir() / 'labels/imagenet-21k.txt')"], cwd=work, text=True).split()
    assert all(p.startswith(str(venv)) for p in where), where
    assert "ok: publisher testpub" in hubpub("validate")
    assert "micro_iso_1k_224_fe" in hubpub("list")
    out = hubpub("docs", "--public-url", "https://example.com/micro")
    assert "rendered and validated 8 docs" in out  # 2 models, their 4 LiteRT files, the collection, publisher
    assert "3 pages under dist/site" in hubpub("site", "--public-url", "https://example.com/micro")  # templates ship
    assert (work / "dist/site/assets/site.css").is_file()
    doc = (work / "dist/docs/assets/docs/testpub/models/micro_1k_224/1.md").read_text()
    assert "<!-- asset-path: https://example.com/micro/micro_1k_224/1.tar.gz -->" in doc


CORE_SITE = '''
import sys
for name in {blocked!r}:
    sys.modules[name] = None  # as if not installed: the core install has none of the extras
'''


def test_the_core_alone_builds_documents_and_publishes_to_a_directory(wheel, micro_manifest_path, micro_checkpoints,
                                                                       tmp_path):
    """The wheel's own requirements hold none of the optional stacks, and a fresh virtual environment
    with the wheel and no extra (this environment's packages on its path, every extra's modules made
    unimportable by a sitecustomize) builds, renders docs and publishes to a directory, saying in one line
    each what it leaves out."""
    from email.parser import Parser

    from hubpub.extras import EXTRAS

    with zipfile.ZipFile(wheel) as z:
        meta = Parser().parsestr(z.read(next(n for n in z.namelist() if n.endswith("METADATA"))).decode())
    core = [r.split(";")[0].split("<")[0].split(">")[0].split("=")[0].strip().lower()
            for r in meta.get_all("Requires-Dist") if "extra ==" not in r]
    optional = {"torch", "kagglehub", "kagglesdk", "huggingface-hub", "nbformat", "nbclient", "ipykernel",
                "matplotlib", "scikit-image", "ai-edge-litert", "onnxscript", "onnx-ir", "onnx",
                "onnxruntime"}
    assert "tensorflow" in core and not optional & set(core), core
    assert {"kaggle", "hf", "notebooks", "litert", "onnx", "all", "torch"} <= set(meta.get_all("Provides-Extra"))

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--quiet",
                    str(wheel)], check=True, timeout=300)
    site = Path(subprocess.check_output([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                                        text=True).strip())
    (site / "zz_deps.pth").write_text(sysconfig.get_path("purelib") + "\n")
    (site / "sitecustomize.py").write_text(CORE_SITE.format(blocked=sorted({m for ms in EXTRAS.values() for m in ms})))
    work = tmp_path / "work"
    work.mkdir()
    # every format wanted, as a user's manifest would: the core must say which extras are missing
    (work / "collection.yaml").write_text(micro_manifest_path.read_text().replace("formats: {onnx: false}\n", ""))

    def hubpub(*args):
        proc = subprocess.run([str(venv / "bin" / "hubpub"), *map(str, args)], cwd=work, capture_output=True,
                              text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
        return proc.stderr

    built = hubpub("build", "micro_1k_224", "--checkpoint", micro_checkpoints["micro_1k_224"])
    assert 'no ONNX files: its libraries are not installed (pip install "hubpub[onnx]"' in built
    record = json.loads((work / "dist/reports/micro_1k_224.json").read_text())
    assert record["parity"]["status"] == "skipped (torch not installed)" and record["keras"] is not None
    assert record["formats"] == [] and record["litert"] == []
    hubpub("docs", "--public-url", "http://127.0.0.1:9/micro")
    out = tmp_path / "published"
    hubpub("publish", "--dest", out, "--public-url", "http://127.0.0.1:9/micro")
    assert (out / "micro_1k_224/1.tar.gz").is_file() and (out / "micro_1k_224/1.keras").is_file()
    assert not list(out.rglob("*.onnx")) and not list(out.rglob("*.tflite"))
    proc = subprocess.run([str(venv / "bin" / "hubpub"), "publish", "--dest", "kaggle://testpub/micro-models"],
                          cwd=work, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1 and proc.stderr.splitlines()[-1] == (
        "error: publishing to Kaggle Models needs hubpub's kaggle extra (kagglehub, kagglesdk not installed): "
        'pip install "hubpub[kaggle]"')
