"""What running the classifier notebook costs over a plain script doing the same loads and predictions.

The notebook is executed as `hubpub notebooks --execute` runs it (nbclient, an ipykernel kernel, the
build's files served over loopback HTTP, figures rendered to PNG outputs). The baseline is its own
code cells written out as one Python file and run with `python` (matplotlib's non-interactive
backend), against the same server, in the same run. convnext_tiny (random weights), its classifier.
Target: notebook / script <= 1.5. Each is timed `--repeats` times from a fresh notebook and a fresh
process, with fresh download caches; the fastest of each is compared. Writes
benchmarks/results/notebooks.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _script(notebook: Path, overrides: dict[str, str]) -> str:
    """The notebook's code cells as one script, its parameter cell set to `overrides`."""
    import nbformat

    from hubpub.notebooks import parameter_cell

    nb = nbformat.read(notebook, as_version=4)
    params = parameter_cell(nb)
    cells = []
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        cells.append("\n".join(f"{k} = {v!r}" for k, v in overrides.items()) if cell is params else cell.source)
    return "\n\n".join(cells) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--variant", default="convnext_tiny_1k_224")
    ap.add_argument("--manifest", default=str(ROOT / "collection.yaml"))
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "notebooks.json"))
    args = ap.parse_args()

    from hubpub.convert import save_checkpoint
    from hubpub.layout import Dist
    from hubpub.manifest import load_manifest
    from hubpub.notebooks import render_notebooks
    from hubpub.pipeline import build_variant, execute_notebooks
    from hubpub.verify import serve_directory

    manifest = load_manifest(args.manifest)
    v = manifest.variant(args.variant)
    notebook_seconds, script_seconds = [], []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        ckpt = save_checkpoint(v.family.random_checkpoint(v.architecture, v.num_classes), tmp / "c.safetensors")
        dist = Dist(tmp / "dist")
        build_variant(v, dist.root, checkpoint=str(ckpt), kinds=("classifier",), parity=False)
        for i in range(args.repeats):
            out = tmp / f"notebooks-{i}"
            written = render_notebooks(manifest, dist=dist.root, out=out, only=(v.name,))
            start = time.perf_counter()
            execute_notebooks(dist.root, written)
            notebook_seconds.append(time.perf_counter() - start)

            with serve_directory(dist.root) as base:
                overrides = {"HANDLE": f"{base}/{dist.relative(dist.tarball(v.name))}",
                             "KERAS_URL": f"{base}/{dist.relative(dist.keras(v.name))}"}
                script = tmp / f"classify-{i}.py"
                script.write_text(_script(written[0].path, overrides))
                env = {**os.environ, "MPLBACKEND": "Agg", "TF_CPP_MIN_LOG_LEVEL": "3",
                       "KERAS_HOME": str(tmp / f"keras-{i}"), "TFHUB_CACHE_DIR": str(tmp / f"tfhub-{i}")}
                start = time.perf_counter()
                subprocess.run([sys.executable, str(script)], check=True, capture_output=True, env=env, cwd=tmp)
                script_seconds.append(time.perf_counter() - start)
    ratio = min(notebook_seconds) / min(script_seconds)
    result = {"variant": v.name, "notebook_seconds": notebook_seconds, "script_seconds": script_seconds,
              "ratio": ratio, "target": 1.5}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"{v.name} classifier notebook: {min(notebook_seconds):.1f} s on a Jupyter kernel vs "
          f"{min(script_seconds):.1f} s as a plain script -> ratio {ratio:.2f} (target <= 1.5): "
          f"{'PASS' if ratio <= 1.5 else 'MISS'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
