"""ONNX: every artifact also as `<artifact>.onnx`, for onnxruntime and the runtimes that read ONNX.

Converted from the exported SavedModel with tf2onnx, the one path that works for every family: each
family (a user's own Keras model included) exports a SavedModel with the Hub input convention inside
(float32 NHWC RGB in [0, 1], normalised in the graph), and its serving signature has a dynamic batch,
height and width, which the ONNX file keeps. (`torch.onnx.export` of a PyTorch reference would serve
only the families that have one; Keras' own ONNX export on PyTorch has no dynamic shapes.) TensorFlow
writes exact GELU as `Erfc`, which ONNX lacks: it becomes `1 - Erf(x)`. Node and tensor names are
renamed in graph order, so the bytes depend on the graph only, not on what the process traced before.
tf2onnx's optimisers also walk sets of nodes, ordered by object address and string hashing, and the
graph they leave differs now and then (three nodes more in about one conversion of twelve; known
upstream: onnx/tensorflow-onnx#1789 and onnx/tensorflow-onnx#2006). So the conversion runs in a child
process with its string hashing fixed and tf2onnx's nodes hashed by name: 48 conversions of one model,
48 identical files.
The file is checked in onnxruntime against the SavedModel, at the native and a non-square size.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from hubpub import tolerances
from hubpub._files import atomic_path, sha256_file, write_sha256
from hubpub.formats.base import Format, FormatError, FormatJob
from hubpub.machine import physical_memory
from hubpub.record import FormatFile

log = logging.getLogger(__name__)

OPSET = 17
HASH_SEED = "0"  # the conversion's PYTHONHASHSEED: any fixed value; changing it may change the bytes
# One .onnx file is one protobuf message: at most 2 GiB. Larger models would need ONNX's external data.
MAX_WEIGHT_BYTES = 2**31 - 64 * 2**20
# tf2onnx's path (TensorFlow's freezing, grappler, tf2onnx's graph and optimisers) holds many copies of the
# weights at once: the conversion process of a 114 MB model (ConvNeXt tiny) peaked at 6.2 GB, of
# a 0.79 GB one (ConvNeXt large) it passed 17 GB before tf2onnx had begun. Measured: `benchmarks/bench_onnx.py`.
CONVERSION_BYTES_PER_WEIGHT_BYTE = 50
CONVERSION_BASE_BYTES = 2**30  # TensorFlow and tf2onnx imported


class Onnx(Format):
    name = "onnx"
    title = "ONNX"
    suffix = ".onnx"
    extra = "onnx"
    kaggle_framework = "onnx"  # kagglesdk's ModelFramework.MODEL_FRAMEWORK_ONNX
    runner = "onnxruntime"
    tolerance = tolerances.ONNX
    beside = True  # converted in a child process: the build's main thread goes on meanwhile

    def doc_values(self) -> dict:
        return {"opset": OPSET}

    def wanted(self, job: FormatJob) -> str | None:
        weights = job.parameters * 4
        if weights > MAX_WEIGHT_BYTES:
            return (f"{weights / 2**30:.1f} GiB of weights: over the 2 GiB one ONNX file can hold (a "
                    "protobuf message)")
        need, have = conversion_bytes(weights), physical_memory()
        if have and need > 0.8 * have:
            return (f"converting it would take about {need / 2**30:.0f} GiB of memory (tf2onnx holds about "
                    f"{CONVERSION_BYTES_PER_WEIGHT_BYTE} copies of its {weights / 2**30:.2f} GiB of weights); this "
                    f"machine has {have / 2**30:.0f} GiB")
        return None

    def run(self, data: bytes, images: np.ndarray) -> np.ndarray:
        try:
            return run(data, images)
        except Exception as e:  # onnxruntime raises its own types for a bad or truncated model
            raise FormatError(f"onnxruntime could not run it: {type(e).__name__}: "
                              f"{str(e).splitlines()[0][:300]}") from None

    def build(self, job: FormatJob) -> tuple[FormatFile]:
        # Converted and checked in the child process: the worker never holds onnxruntime's copies of the
        # weights, nor a second load of the SavedModel (a conversion process holds far more anyway).
        with tempfile.TemporaryDirectory(prefix="hubpub-onnx-") as tmp:
            out, worst = _convert_in_child(job.saved_model, Path(tmp), (job.inputs, job.expected))
            if not worst <= self.tolerance:
                raise FormatError(f"{job.artifact}: the ONNX file differs from the SavedModel by {worst:.2e} "
                                  f"(tolerance {self.tolerance:g})")
            path = self.path(job.dist, job.artifact)
            with atomic_path(path) as final:
                shutil.copyfile(out, final)
        digest = sha256_file(path)
        write_sha256(path, digest)
        return (FormatFile(self.name, job.dist.relative(path), digest, path.stat().st_size, worst, self.tolerance),)


def conversion_bytes(weight_bytes: int) -> int:
    """The conversion process's expected peak memory for a model with this many bytes of weights."""
    return CONVERSION_BASE_BYTES + CONVERSION_BYTES_PER_WEIGHT_BYTE * weight_bytes


@contextlib.contextmanager
def _one_large_conversion_at_a_time(saved_model: Path):
    """A machine-wide lock around a conversion that would take over a quarter of the memory: `wanted`
    sizes one conversion against the machine, and `build-all --jobs N` runs N builds at once."""
    weights = sum(p.stat().st_size for p in (Path(saved_model) / "variables").glob("*") if p.is_file())
    have = physical_memory()
    if not have or conversion_bytes(weights) <= have / 4:
        yield
        return
    import fcntl

    with open(Path(tempfile.gettempdir()) / "hubpub-onnx-conversion.lock", "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("%s: waiting for another ONNX conversion on this machine to finish (memory)", saved_model)
            fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def converted(saved_model) -> bytes:
    """The canonical ONNX file of the SavedModel, converted in a child process made deterministic (see
    `main`); the child reads the SavedModel again."""
    with tempfile.TemporaryDirectory(prefix="hubpub-onnx-") as tmp:
        return _convert_in_child(saved_model, Path(tmp))[0].read_bytes()


def _convert_in_child(saved_model, tmp: Path, check: tuple[np.ndarray, np.ndarray] | None = None):
    """(`tmp/model.onnx`, its max |Δ| from the SavedModel, or None): converted, and with `check` (the
    build's inputs and the SavedModel's outputs on them) run in onnxruntime there and at a non-square size,
    all in the child process (`main`)."""
    out, args = tmp / "model.onnx", [str(saved_model), str(tmp / "model.onnx")]
    if check is not None:
        np.savez(tmp / "check.npz", inputs=check[0], expected=check[1])
        args.append(str(tmp / "check.npz"))
    with _one_large_conversion_at_a_time(saved_model):
        child = subprocess.run(
            [sys.executable, "-c", "from hubpub.formats.onnx import main; main()", *args],
            env={**os.environ, "PYTHONHASHSEED": HASH_SEED, "TF_CPP_MIN_LOG_LEVEL": "2"}, capture_output=True,
            text=True)
    if child.returncode < 0:  # killed: by the kernel when memory ran out, most likely
        signal_name = signal.Signals(-child.returncode).name
        raise FormatError(f"the ONNX conversion process was killed ({signal_name}; out of memory?)")
    if child.returncode != 0:
        lines = child.stderr.strip().splitlines()
        said = [line.removeprefix("error: ") for line in lines if line.startswith("error: ")]
        if said:
            raise FormatError(said[-1])
        crash = [line for line in lines if re.match(r"^\w+(Error|Exception)\b", line)]
        crash = crash or [f"exit status {child.returncode}"]
        raise FormatError(f"the ONNX conversion process failed: {crash[-1]}")
    return out, (json.loads((tmp / "check.json").read_text())["max_abs"] if check is not None else None)


def main() -> None:
    """The child process of `converted`: SAVED_MODEL OUT. Its string hashing is fixed (PYTHONHASHSEED), and
    tf2onnx's graph nodes hash by their names instead of their addresses, so the optimisers' sets of nodes
    are walked in the same order on every run. (Nodes still compare by identity, and keep their names.)"""
    from tf2onnx.graph import Node

    if os.environ.get("PYTHONHASHSEED") != HASH_SEED:
        raise SystemExit(f"error: the ONNX conversion runs with PYTHONHASHSEED={HASH_SEED}")
    Node.__hash__ = lambda node: hash(node.name)  # this process converts one model and exits
    saved_model, out, *check = sys.argv[1:]
    try:
        Path(out).write_bytes(canonical(fused(convert(saved_model))).SerializeToString())
        if check:
            worst = max_difference(saved_model, Path(out).read_bytes(), np.load(check[0]))
            Path(check[0]).with_suffix(".json").write_text(json.dumps({"max_abs": worst}))
    except FormatError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)


def max_difference(saved_model, data: bytes, check) -> float:
    """The ONNX file's max |Δ| from the SavedModel: on the build's inputs (`check`: their outputs as the
    build recorded them) and on an input of another, non-square size."""
    import tensorflow as tf

    loaded = tf.saved_model.load(str(saved_model))  # held: its signature refers to its variables
    serving = loaded.signatures["serving_default"]
    name = next(iter(serving.structured_input_signature[1]))
    resolution = check["inputs"].shape[1]
    other = np.random.default_rng(1).random((1, resolution + 32, resolution + 96, 3), dtype=np.float32)
    checks = [(check["inputs"], check["expected"]),
              (other, next(iter(serving(**{name: tf.constant(other)}).values())).numpy())]
    del loaded, serving
    session = _session(data)
    return max(float(np.abs(_run(session, x) - want).max()) for x, want in checks)


def convert(saved_model):
    """The SavedModel's serving signature as an ONNX model, its batch, height and width dynamic as there."""
    import tf2onnx
    from tf2onnx import tf_loader

    # tf2onnx copies the whole graph before each of its optimisers to undo a failing one; hubpub checks
    # the result in onnxruntime instead, and the copies were half of the conversion's time.
    before = os.environ.get("TF2ONNX_CATCH_ERRORS")
    os.environ["TF2ONNX_CATCH_ERRORS"] = "FALSE"
    try:
        graph, inputs, outputs, tables, renames = tf_loader.from_saved_model(
            str(saved_model), None, None, tag=["serve"], signatures=["serving_default"],
            return_initialized_tables=True, return_tensors_to_rename=True)
        model, _ = tf2onnx.convert.from_graph_def(graph, input_names=inputs, output_names=outputs, opset=OPSET,
                                                  custom_op_handlers={"Erfc": (_erfc, [])},
                                                  tensors_to_rename=renames)
    except Exception as e:  # tf2onnx raises many types
        raise FormatError(f"ONNX conversion failed: {type(e).__name__}: {str(e).splitlines()[0][:300]}") from None
    finally:
        if before is None:
            os.environ.pop("TF2ONNX_CATCH_ERRORS", None)
        else:
            os.environ["TF2ONNX_CATCH_ERRORS"] = before
    return model


def fused(model):
    """`model` with GELU and layer norm in the forms onnxruntime runs as one kernel (`onnx_fusions`)."""
    import onnx

    from hubpub.formats.onnx_fusions import gelu, layer_norm

    gelu(model)
    model = onnx.shape_inference.infer_shapes(model)  # layer_norm needs each tensor's rank
    layer_norm(model)
    return model


def _erfc(ctx, node, name, args):
    """erfc(x) = 1 - erf(x): TensorFlow's exact GELU, in ops ONNX has."""
    from tf2onnx import utils

    erf = ctx.make_node("Erf", [node.input[0]])
    one = ctx.make_const(utils.make_name("one"), np.array(1, dtype=np.float32))
    node_name, outputs = node.name, node.output
    ctx.remove_node(node_name)
    return ctx.make_node("Sub", [one.output[0], erf.output[0]], outputs=outputs, name=node_name)


def canonical(model):
    """`model` with its nodes in an order the graph alone decides (depth first from the outputs, each node's
    inputs in order), every node and inner tensor renamed in that order, the weights in order of first use,
    and no producer details: the same graph gives the same bytes, whatever order the converter kept (its
    sets follow Python's per-process string hashing)."""
    graph = model.graph
    keep = {v.name for v in graph.input} | {v.name for v in graph.output}
    producer = {out: node for node in graph.node for out in node.output}
    order, seen = [], set()

    def visit(tensor: str) -> None:
        node = producer.get(tensor)
        if node is None or id(node) in seen:
            return
        seen.add(id(node))
        for name in node.input:
            visit(name)
        order.append(node)

    for out in graph.output:
        visit(out.name)
    names: dict[str, str] = {}

    def rename(value: str) -> str:
        if not value or value in keep:
            return value
        return names.setdefault(value, f"t{len(names)}")

    nodes = []
    for i, node in enumerate(order):
        copy = type(node)()
        copy.CopyFrom(node)
        copy.name, copy.doc_string = f"n{i}", ""
        copy.input[:] = [rename(x) for x in node.input]
        copy.output[:] = [rename(x) for x in node.output]
        nodes.append(copy)
    weights = sorted((w for w in graph.initializer if w.name in names), key=lambda w: int(names[w.name][1:]))
    for w in weights:
        w.name = names[w.name]
    del graph.node[:]
    graph.node.extend(nodes)
    kept = [type(w)() for w in weights]
    for new, old in zip(kept, weights, strict=True):
        new.CopyFrom(old)
    del graph.initializer[:]
    graph.initializer.extend(kept)
    del graph.value_info[:]  # shapes onnxruntime infers again; their names and order varied
    for values, dims in ((graph.input, ("batch", "height", "width")), (graph.output, ("batch",))):
        for value in values:  # the converter numbers its unknown dimensions from a process-wide counter
            for i, dim in enumerate(value.type.tensor_type.shape.dim):
                if dim.dim_param:
                    dim.dim_param = dims[i] if i < len(dims) else f"dim{i}"
    graph.name, graph.doc_string = "hubpub", ""
    model.doc_string = ""
    model.producer_name, model.producer_version = "hubpub", ""
    return model


def run(model: bytes, images: np.ndarray) -> np.ndarray:
    """The ONNX model's outputs on `images`, in onnxruntime on the CPU."""
    return _run(_session(model), images)


def _session(model: bytes):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3  # no warnings about unused initializers on the terminal
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def _run(session, images: np.ndarray) -> np.ndarray:
    return session.run(None, {session.get_inputs()[0].name: images.astype(np.float32)})[0]
