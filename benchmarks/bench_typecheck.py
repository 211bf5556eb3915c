"""The type check `make test` runs (mypy over hubpub/, pyproject's [tool.mypy]) from a cold cache, as on a
clean clone, against the same check following torch's typed tree instead of treating torch as untyped.

Each run is a fresh process with an empty cache folder; `--repeats` runs of each, alternated, and the
medians compared. Both must find no error. Target: the configured check at most 0.6 of the time of the one
that follows torch (why [tool.mypy] treats torch as untyped). Writes benchmarks/results/typecheck.json.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET = 0.6


def _ini(config: dict, *, follow_torch: bool) -> str:
    """[tool.mypy] as a mypy.ini, with or without its torch override."""
    def value(v) -> str:
        return ",".join(v) if isinstance(v, list) else str(v)

    lines = ["[mypy]"] + [f"{k} = {value(v)}" for k, v in config.items() if k != "overrides"]
    for override in config.get("overrides", []):
        modules = override["module"] if isinstance(override["module"], list) else [override["module"]]
        if follow_torch and modules == ["torch.*"]:
            continue
        lines += [f"[mypy-{','.join(modules)}]"] + [f"{k} = {value(v)}" for k, v in override.items() if k != "module"]
    return "\n".join(lines) + "\n"


def _timed(config_file: Path | None, work: Path) -> tuple[float, float]:
    """(wall, CPU) seconds of one cold mypy run; it must find nothing."""
    with tempfile.TemporaryDirectory(dir=work) as cache:
        args = [sys.executable, "-m", "mypy", "--cache-dir", cache]
        args += ["--config-file", str(config_file)] if config_file else []
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        proc = subprocess.run(args, cwd=ROOT, capture_output=True, text=True)
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"mypy found errors:\n{proc.stdout[-3000:]}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "typecheck.json"))
    args = ap.parse_args()
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mypy"]
    with tempfile.TemporaryDirectory(prefix="hubpub-bench-typecheck-") as tmp:
        work = Path(tmp)
        following = work / "follow_torch.ini"
        following.write_text(_ini(config, follow_torch=True))
        runs: dict[str, list[tuple[float, float]]] = {"configured": [], "follow_torch": []}
        for _ in range(args.repeats):
            runs["configured"].append(_timed(None, work))
            runs["follow_torch"].append(_timed(following, work))
    medians = {k: {"wall_s": round(statistics.median(w for w, _ in v), 1),
                   "cpu_s": round(statistics.median(c for _, c in v), 1)} for k, v in runs.items()}
    ratio = round(medians["configured"]["wall_s"] / medians["follow_torch"]["wall_s"], 2)
    met = ratio <= TARGET
    import mypy.version

    result = {"mypy": mypy.version.__version__, "repeats": args.repeats, "target": TARGET, "ratio": ratio,
              **medians, "rows": [{
                  "script": "bench_typecheck.py",
                  "measures": f"`make test`'s type check (mypy {mypy.version.__version__} over hubpub/), cold cache: "
                              f"{medians['configured']['wall_s']:g} s wall, {medians['configured']['cpu_s']:g} s CPU",
                  "baseline": f"the same check following torch's types ({medians['follow_torch']['wall_s']:g} s)",
                  "figure": f"{ratio:.2f}", "target": f"<= {TARGET:g}: {'met' if met else 'missed'}"}]}
    print(json.dumps(medians), f"ratio {ratio} (target <= {TARGET})")
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
