import dataclasses
import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("HUBPUB_DISABLE_PROGRESS", "1")
# Never let google.auth probe the GCE metadata server (a non-loopback address) from tests.
os.environ["NO_GCE_CHECK"] = "true"
os.environ["GCE_METADATA_HOST"] = "127.0.0.1:9"
os.environ["GCE_METADATA_IP"] = "127.0.0.1:9"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _environment_restored():
    """Each test ends with the environment it began with: an in-process CLI call sets variables for the
    rest of its process (`-q`: HUBPUB_DISABLE_PROGRESS; `-vv`: HUBPUB_NATIVE_LOGS), which would reach
    whichever tests run after it in the same worker."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def manifest_text() -> str:
    return (ROOT / "collection.yaml").read_text()


MICRO_MANIFEST = """\
schema_version: 2
publisher: {handle: testpub, name: Test Publisher, description: Models for the test suite.}
collection: {name: micro, description: Micro ConvNeXt models for tests.}
publish: {destination: PUBLISH_DIR, public_url_base: "http://127.0.0.1:9/bucket/micro"}
# LiteRT off by default for micro builds (they are many); micro_dist opts in for its own build.
litert: {max_parameters: 0, formats: [float32, int8], min_cosine: 0.9}
# ONNX likewise (its conversion is a child process of its own): micro_dist builds every format.
formats: {onnx: false}
eval_presets:
  224: {resize: shorter, crop_pct: 0.875}
  384: {resize: squash, crop_pct: 1.0}
architectures:
  micro: {family: convnext, depths: [1, 1, 2, 1], dims: [8, 16, 32, 64]}
  micro_other: {family: convnext, depths: [1, 1, 3, 1], dims: [8, 16, 32, 64]}
  micro_iso: {family: convnext, style: isotropic, depth: 2, dim: 32, patch_size: 16, layer_scale_init: 0.0}
variants:
  - {name: micro_1k_224, architecture: micro, num_classes: 1000, resolution: 224, top1: 50.0,
     checkpoint: {url: "http://127.0.0.1:9/micro_1k_224.pth"}}
  - {name: micro_21k_224, architecture: micro, pretrain: imagenet-21k, num_classes: 21841, resolution: 224,
     checkpoint: {url: "http://127.0.0.1:9/micro_21k_224.pth"}}
  - {name: micro_iso_1k_224, architecture: micro_iso, num_classes: 1000, resolution: 224,
     checkpoint: {url: "http://127.0.0.1:9/micro_iso_1k_224.pth"}}
"""


@pytest.fixture(scope="session")
def micro_manifest_path(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("micro")
    path = d / "collection.yaml"
    path.write_text(MICRO_MANIFEST.replace("PUBLISH_DIR", str(d / "published")))
    return path


@pytest.fixture(scope="session")
def micro_manifest(micro_manifest_path):
    from hubpub.manifest import load_manifest

    return load_manifest(micro_manifest_path)


@pytest.fixture(scope="session")
def micro_checkpoints(micro_manifest, tmp_path_factory) -> dict[str, Path]:
    """One random official-format checkpoint per micro variant (safetensors: no torch needed)."""
    from hubpub.convert import save_checkpoint

    d = tmp_path_factory.mktemp("ckpt")
    return {v.name: save_checkpoint(v.family.random_checkpoint(v.architecture, v.num_classes, seed=i),
                                    d / f"{v.name}.safetensors")
            for i, v in enumerate(micro_manifest.variants)}


def _shared_folder(tmp_path_factory, worker_id) -> Path:
    """The test run's own temp folder, which every pytest-xdist worker of the run sees."""
    base = tmp_path_factory.getbasetemp()
    return base if worker_id == "master" else base.parent


# build-all over two micro variants, one per ConvNeXt style, both kinds, `--jobs 2`: what a local build
# makes, shared by the tests that check it (incremental reruns) or compare with it (the Dask cluster's).
MICRO_PAIR = ("micro_1k_224", "micro_iso_1k_224")


@dataclasses.dataclass(frozen=True)
class PairBuild:
    dist: Path  # copy it before changing anything
    summary: dict  # its build-report.json
    events: list  # the progress events, (artifact, stage)


@pytest.fixture(scope="session")
def micro_pair(micro_manifest, micro_checkpoints, tmp_path_factory, worker_id) -> PairBuild:
    from filelock import FileLock

    from hubpub.pipeline import build_all

    shared = _shared_folder(tmp_path_factory, worker_id)
    folder = shared / "micro_pair"
    with FileLock(str(shared / "micro_pair.lock")):
        if not (folder / "events.json").is_file():
            events = []
            build_all(micro_manifest, folder / "dist", only=MICRO_PAIR, jobs=2, lock_path=folder / "collection.lock",
                      checkpoints={n: str(micro_checkpoints[n]) for n in MICRO_PAIR},
                      progress=lambda name, stage: events.append((name, stage)))
            (folder / "events.json").write_text(json.dumps(events))
    return PairBuild(folder / "dist", json.loads((folder / "dist" / "build-report.json").read_text()),
                     [tuple(e) for e in json.loads((folder / "events.json").read_text())])


@pytest.fixture(scope="session")
def micro_dist(micro_manifest, micro_checkpoints, tmp_path_factory, worker_id) -> Path:
    """Both kinds of micro_1k_224 built once per test run, end to end, into a dist/ folder: under
    pytest-xdist the first worker to ask builds it in the run's shared temp folder, the others wait for it
    (the checkpoints are seeded, so every worker's are the same bytes). Tests copy it before changing it."""
    import dataclasses

    from filelock import FileLock

    from hubpub.pipeline import build_variant

    shared = _shared_folder(tmp_path_factory, worker_id)
    out = shared / "micro_dist"
    with FileLock(str(shared / "micro_dist.lock")):
        if not (shared / "micro_dist.done").is_file():
            v = micro_manifest.variant("micro_1k_224")
            v = dataclasses.replace(v, litert_formats=("float32", "int8"), litert_min_cosine=0.9)  # as `litert: true`
            build_variant(v, out, checkpoint=str(micro_checkpoints[v.name]))
            (shared / "micro_dist.done").touch()
    return out


# The demo of the test run: a micro ConvNeXt (0.14 M parameters) with every stage `make demo` has: the four
# LiteRT files, ONNX, notebooks, publish, verify. The demo's time is mostly fixed costs, so a micro model
# keeps every stage for a fraction of it (benchmarks/results/demo.json: the full-size demo's phases). With
# HUBPUB_SLOW, convnext_tiny as `make demo` builds it.
DEMO_SLOW = ("collection.yaml", "convnext_tiny_1k_224")


def demo_manifest(folder: Path) -> tuple[Path, str]:
    """(manifest, variant) of the demo the tests run."""
    if os.environ.get("HUBPUB_SLOW"):
        return ROOT / DEMO_SLOW[0], DEMO_SLOW[1]
    text = (MICRO_MANIFEST.replace("PUBLISH_DIR", str(folder / "unused"))
            .replace("litert: {max_parameters: 0, formats: [float32, int8],",
                     "litert: {max_parameters: 30000000, formats: [float32, float16, dynamic_int8, int8],")
            .replace("formats: {onnx: false}\n", "notebooks: {github: testpub/models, path: notebooks}\n"))
    path = folder / "demo-manifest" / "collection.yaml"
    path.parent.mkdir(parents=True)
    path.write_text(text)
    return path, "micro_1k_224"


@dataclasses.dataclass(frozen=True)
class DemoRun:
    dist: Path
    manifest: Path
    variant: str
    env: dict
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory, worker_id) -> DemoRun:
    """`hubpub demo` run once per test run, as `make demo` runs it (shared by the xdist workers, as
    micro_dist is): the demo's test reads what it printed and wrote, the notebook tests read the notebooks
    it executed. Tests copy its dist/ before changing anything."""
    import subprocess
    import sys

    from filelock import FileLock

    shared = _shared_folder(tmp_path_factory, worker_id)
    folder = shared / "demo_run"
    env = {**os.environ, "HUBPUB_DISABLE_PROGRESS": "1", "HUBPUB_CACHE": str(folder / "cache"),
           "TFHUB_CACHE_DIR": str(folder / "tfhub")}
    with FileLock(str(shared / "demo_run.lock")):
        if not (folder / "run.json").is_file():
            manifest, name = demo_manifest(folder)
            proc = subprocess.run([sys.executable, "-m", "hubpub", "demo", "--out", str(folder / "dist"),
                                   "--manifest", str(manifest), "--variant", name], capture_output=True,
                                  text=True, env=env, timeout=900)
            (folder / "run.json").write_text(json.dumps(
                {"manifest": str(manifest), "variant": name, "returncode": proc.returncode,
                 "stdout": proc.stdout, "stderr": proc.stderr}))
    run = json.loads((folder / "run.json").read_text())
    return DemoRun(folder / "dist", Path(run["manifest"]), run["variant"], env, run["returncode"], run["stdout"],
                   run["stderr"])


def copy_built(src: Path, dst: Path, *, saved_models: bool = True) -> Path:
    """A copy of the built files of a dist/ (no docs, notebooks or site): what tests publish from."""
    import shutil

    folders = ["tars", "keras", "litert", "onnx", "reports"] + (["saved_models"] if saved_models else [])
    for folder in folders:
        if (src / folder).is_dir():
            shutil.copytree(src / folder, dst / folder)
    return dst


@pytest.fixture
def file_server(tmp_path):
    from tests.httpserver import FileServer

    with FileServer(tmp_path / "served") as server:
        server.root.mkdir(parents=True, exist_ok=True)
        yield server


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TFHUB_CACHE_DIR", str(tmp_path / "tfhub_cache"))
    return tmp_path / "tfhub_cache"


@pytest.fixture(scope="session")
def gcs_emulator(tmp_path_factory):
    from tests.gcs import Emulator

    emulator = Emulator(tmp_path_factory.mktemp("gcs") / "fake-gcs-server.log")
    yield emulator
    emulator.stop()


# The longest tests start first: under `-n 2`, one started last keeps a worker busy after the other has
# run out of tests (minutes of a 2-core machine). pytest-xdist's worksteal gives each worker a contiguous
# share of the list to start with, so each share begins with its turn of the longest tests. Those that read
# a build the run makes once for all its workers (the demo's, the micro ViT's), other than the long test
# that makes it, go last: a worker that asks for one while the other makes it waits, its core idle.
LONGEST_FIRST = ("test_demo_end_to_end", "test_the_documented_workflow_publishes_what_one_machine_does",
                 "test_both_families_through_build_all_docs_publish_and_verify",
                 "test_every_stage_and_format_of_a_micro_vit",
                 "test_fresh_venv_with_only_keras_jax_and_numpy_loads_it",
                 "test_kill_9_at_each_stage_in_turn_then_rerun_finishes_valid",
                 "test_the_core_alone_builds_documents_and_publishes_to_a_directory")
SHARED_BUILDS = {"demo_run", "vit_build"}


def pytest_collection_modifyitems(config, items):
    workers = max(1, int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))
    longest = sorted((i for i in items if i.originalname in LONGEST_FIRST),
                     key=lambda i: LONGEST_FIRST.index(i.originalname))
    late = [i for i in items if i not in longest and SHARED_BUILDS & set(getattr(i, "fixturenames", ()))]
    rest = [i for i in items if i not in longest and i not in late]
    share = len(items) // workers  # what worksteal hands each worker first, in order
    ordered: list = []
    for k in range(workers):
        starts = longest[k::workers]
        ordered += starts + rest[:max(0, share - len(starts))]
        rest = rest[max(0, share - len(starts)):]
    items[:] = ordered + rest + late
