"""The benchmark table, made from `benchmarks/results/*.json` (each written by the bench that measured it):
the documentation's Benchmarks page is built with it (`docs_hooks.py`), and `python benchmarks/report.py`
prints it. Nothing in the table is typed by hand."""

from __future__ import annotations

import json
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def _load(name: str):
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _verdict(ratio: float, target: float, at_least: bool) -> str:
    met = ratio >= target if at_least else ratio <= target
    return f"{'>=' if at_least else '<='} {target:g}: {'met' if met else 'missed'}"


def rows() -> list[tuple[str, str, str, str, str]]:
    """(script, measures, baseline, figure, target and verdict) for every result on file."""
    out = []
    if m := _load("port_memory"):
        out.append(("bench_port_memory.py", f"peak RSS above the TensorFlow-imported baseline while porting "
                    f"{m['variant']} ({m['format']})", "weight bytes", f"{m['ratio']:.2f}",
                    _verdict(m["ratio"], m["target"], False)))
    if b := _load("build"):
        mem, t = b["memory"], b["time"]
        out.append(("bench_build.py", f"worker peak RSS of `build-all --jobs 1` over {', '.join(mem['variants'])}",
                    "largest weight bytes", f"{mem['ratio']:.2f}", _verdict(mem["ratio"], mem["target"], False)))
        out.append(("bench_build.py", f"one classifier build of {t['variant']}: port, export, round trip, "
                    "reproducible tar.gz (median of fresh processes)", "port + `tf.saved_model.save` + plain tar",
                    f"{t['ratio']:.2f}", _verdict(t["ratio"], t["target"], False)))
        if n := b.get("noop"):
            out.append(("bench_build.py", f"a no-op rerun of `build-all` over {n['variants']} up-to-date variants",
                        "`hubpub validate` of the same manifest", f"{n['ratio']:.2f}",
                        _verdict(n["ratio"], n["target"], False)))
    if sm := _load("stage_memory"):
        for v in sm["variants"]:
            largest = sorted(v["rise_mb"].items(), key=lambda kv: -kv[1])[:3]
            top = ", ".join(f"{k} +{mb / 1024:.1f} GiB" for k, mb in largest)
            out.append(("bench_stage_memory.py", f"peak RSS of one build of {v['variant']} (every stage) above the "
                        f"TensorFlow-imported process: set by {v['set_by']}; the largest rises of the peak: {top}",
                        "weight bytes", f"{v['ratio']:.2f}", _verdict(v["ratio"], sm["target"], False)))
        if floor := sm.get("floor"):
            # Its rise as fixed + slope x weights, from the smallest and the largest measured; within the
            # target only where target x weights >= fixed + slope x weights.
            (small, large), mib = sorted(floor, key=lambda f: f["weight_bytes"]), 2**20
            rise = [(f["peak_mb"] - f["baseline_mb"]) * mib for f in (small, large)]
            slope = (rise[1] - rise[0]) / (large["weight_bytes"] - small["weight_bytes"])
            fixed = rise[0] - slope * small["weight_bytes"]
            crossing = fixed / (sm["target"] - slope) / 4 / 1e6 if slope < sm["target"] else float("inf")
            out.append(("bench_stage_memory.py", "the floor: a build of only what every artifact needs (the "
                        "classifier ported, exported, round trip, tarball; no parity, no optional format): "
                        f"{small['variant']} +{rise[0] / mib:.0f} MiB, {large['variant']} +{rise[1] / mib:.0f} MiB "
                        f"({large['ratio']:.2f}x) above the TensorFlow-imported process, about "
                        f"{fixed / mib:.0f} MiB + {slope:.2f}x the weights: a model under about {crossing:.0f}M "
                        f"parameters cannot come within {sm['target']:g}x", "weight bytes", f"{small['ratio']:.2f}",
                        f"<= {sm['target']:g}: out of reach below that size"))
    if i := _load("inference"):
        for run in i["runs"]:
            out.append(("bench_inference.py", f"hub.KerasLayer images/s, {i['variant']}, {i['resolution']} px, "
                        f"batch {run['batch']}, {i['threads']} threads", "PyTorch eager, same weights",
                        f"{run['ratio']:.2f}", "reported"))
    if n := _load("noop"):
        for run in n["runs"]:
            out.append(("bench_noop.py", f"a no-op `build-all` rerun over {run['variants']} up-to-date variants "
                        f"({run['artifacts']} artifacts: records, docs, notebooks, site)",
                        "`hubpub validate` of the same manifest", f"{run['ratio']:.2f}",
                        _verdict(run["ratio"], n["target"], False)))
    if d := _load("demo"):
        phases = sorted(((k, v) for k, v in d["phases"].items() if k != "build"), key=lambda kv: -kv[1])[:3]
        out.append(("bench_demo.py", f"`hubpub demo` from an empty folder: {d['wall_s']:.0f} s (the build "
                    f"{d['phases']['build']:.0f} s; then {', '.join(f'{k} {v:.0f} s' for k, v in phases)}). "
                    f"Its floor: {d['cpu_s']:.0f} CPU-seconds over {d['cores']} cores",
                    f"its floor, {d['floor_s']:.0f} s", f"{d['wall_s'] / d['floor_s']:.2f}", "reported"))
    if w := _load("collection"):
        held = (f"{w['variants']} variants" if w["variants"] == w["variants_selected"]
                else f"{w['variants']} of its {w['variants_selected']} variants")
        if failed := [v for p in w["pairs"] for v in p["failed"]]:
            held += f"; {len(failed)} failed: {', '.join(failed)}"
        slowest = max(w["pairs"], key=lambda p: p["seconds"])
        stages: dict[str, float] = {}
        for a in w["artifacts_stages"].values():
            for stage, seconds in a["stages"].items():
                stages[stage] = stages.get(stage, 0) + seconds
        top = ", ".join(f"{k} {v / 60:.0f} min" for k, v in sorted(stages.items(), key=lambda kv: -kv[1])[:4])
        largest = max(w["pairs"], key=lambda p: p["largest_weight_bytes"])
        # peak above the baseline ~ fixed + slope x weights, least squares over the pairs: the slope is what
        # the weights cost, the fixed part what every build costs (runtimes, activations, converters)
        xs = [p["largest_weight_bytes"] / 2**20 for p in w["pairs"]]
        ys = [p["ratio"] * x for p, x in zip(w["pairs"], xs, strict=True)]
        mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
        slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum((x - mx) ** 2 for x in xs)
        fixed = my - slope * mx
        out.append(("bench_collection.py", f"the whole collection built end to end ({held}, {w['artifacts']} "
                    f"artifacts, every stage, `--jobs 2`): {w['wall_seconds'] / 60:.0f} min; the slowest pair "
                    f"({', '.join(slowest['variants'])}) {slowest['seconds'] / 60:.1f} min; the stages summed over "
                    f"the artifacts: {top}. The worst worker peak RSS above a TensorFlow-imported process "
                    f"({', '.join(max(w['pairs'], key=lambda p: p['ratio'])['variants'])}; the largest pair, "
                    f"{', '.join(largest['variants'])}: {largest['ratio']:.2f}; over the pairs, the peak is about "
                    f"{fixed / 1024:.1f} GiB + {slope:.2f}x the weights)",
                    "the largest weight bytes of its pair",
                    f"{w['worst_ratio']:.2f}", _verdict(w["worst_ratio"], w["target"], False)))
    if r := _load("collection_rerun"):
        failed = [v for p in r["pairs"] for v in p["failed"]]
        out.append(("bench_collection.py", f"the variants that failed in that run, rebuilt after their fixes (the "
                    f"`.keras` check's tolerance follows the outputs' scale; the LiteRT gate is said, not enforced, "
                    f"for random weights): {r['variants'] - len(set(failed))} of {r['variants']} built "
                    f"({r['artifacts']} artifacts) in {r['wall_seconds'] / 60:.0f} min",
                    "the largest weight bytes of its pair", f"{r['worst_ratio']:.2f}",
                    _verdict(r["worst_ratio"], r["target"], False)))
    if c := _load("cluster"):
        names = ", ".join(v.removeprefix("convnextv2_").removesuffix("_1k_224") for v in c["variants"])
        out.append(("bench_cluster.py", f"`build-all --scheduler local:2` (a Dask LocalCluster, 2 single-threaded "
                    f"workers) over ConvNeXt V2 {names}, end to end: throughput ({c['files_compared']} files, "
                    f"{'identical' if c['identical'] else 'different'})", "`build-all --jobs 2` of the same",
                    f"{c['throughput_ratio']:.2f}", _verdict(c["throughput_ratio"], c["target"], True)))
    if u := _load("upload"):
        out.append(("bench_upload.py", f"{u['megabytes']:.0f} MB through hubpub's GCS upload to fake-gcs-server",
                    "one raw request to the emulator", f"{u['ratio_vs_emulator_ceiling']:.2f}",
                    _verdict(u["ratio_vs_emulator_ceiling"], u["target"], True)))
        if "ratio_vs_client_resumable" in u:
            chunks = u.get("transfer_manager_chunks", "measured")
            out.append(("bench_upload.py", f"the same upload (transfer_manager's concurrent chunks: {chunks})",
                        "google-cloud-storage's own resumable upload of the file",
                        f"{u['ratio_vs_client_resumable']:.2f}", "reported"))
        if by := u.get("client_resumable_mb_s_by_chunk_mib"):
            speeds = ", ".join(f"{mib} MiB {mb_s:.0f} MB/s" for mib, mb_s in by.items())
            out.append(("bench_upload.py", f"why the emulator caps it: the client's own resumable upload of the "
                        f"same file by chunk size ({speeds}; the last is one request): fake-gcs-server's cost "
                        "grows with the number of chunks, which real GCS appends", "one raw request to the emulator",
                        f"{max(by.values()) / u['raw_emulator_mb_s']:.2f}", "reported"))
    if h := _load("upload_hubs"):
        for hub, name in (("kaggle", "Kaggle"), ("hf", "HF")):
            out.append(("bench_upload.py --hubs", f"a whole `publish` of {h['variant']}'s classifier to the {name} "
                        "stand-in", "the client's own upload of the same files", f"{h[f'{hub}_ratio']:.2f}",
                        "reported"))
    if lt := _load("litert"):
        for r in lt:
            out.append(("bench_litert.py", f"LiteRT `dynamic_int8` images/s, batch 1, {r['variant']} (cosine "
                        f"{r['dynamic_int8_cosine']:.4f}, size {r['dynamic_int8_size_ratio']:.2f} of float32)",
                        "the float32 SavedModel", f"{r['dynamic_int8_speedup']:.2f}",
                        _verdict(r["dynamic_int8_speedup"], 2.0, True)))
            out.append(("bench_litert.py", f"LiteRT full `int8` and `float16` images/s, {r['variant']}",
                        "the float32 SavedModel", f"{r['int8_speedup']:.2f} / {r['float16_speedup']:.2f}",
                        "reported"))
    if nb := _load("notebooks"):
        out.append(("bench_notebooks.py", f"executing {nb['variant']}'s classifier notebook on a Jupyter kernel",
                    "the same cells as a plain `python` script", f"{nb['ratio']:.2f}",
                    _verdict(nb["ratio"], nb["target"], False)))
    if k := _load("keras_artifact"):
        out.append(("bench_keras_artifact.py", f"`.keras` on TensorFlow, {k['variant']}, batch {k['batch']}",
                    "the SavedModel", f"{k['tensorflow_ratio']:.2f}",
                    _verdict(k["tensorflow_ratio"], k["tensorflow_target"], True)))
        out.append(("bench_keras_artifact.py", f"`.keras` on PyTorch, {k['variant']}, batch {k['batch']}",
                    "the PyTorch reference, eager", f"{k['torch_ratio']:.2f}",
                    _verdict(k["torch_ratio"], k["torch_target"], True)))
    for name in ("demo", "onnx", "cluster", "collection", "signing", "typecheck"):
        if r := _load(name):
            for row in r.get("rows", []):
                out.append((row["script"], row["measures"], row["baseline"], row["figure"], row["target"]))
    return out


def render() -> str:
    lines = ["| script | measures | baseline | ratio | target |", "|---|---|---|---|---|"]
    lines += ["| " + " | ".join(cell.replace("|", "&#124;") for cell in r) + " |" for r in rows()]
    return "\n".join(lines)


def main() -> None:
    print(render())


if __name__ == "__main__":
    main()
