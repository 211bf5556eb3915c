"""An installed hubpub works away from its source checkout: the wheel carries templates, labels and photos."""

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
                   "hubpub/data/photos/astronaut.jpg", "hubpub/data/photos/README.md"):
        assert needed in names, needed


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
    shutil.copy(micro_manifest_path, work / "collection.yaml")
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
