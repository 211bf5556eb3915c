"""ONNX: every artifact also as `<artifact>.onnx`, for onnxruntime and the runtimes that read ONNX.

Converted from the artifact's `.keras` file, the one source every family has (a user's own Keras
model included), with the Hub input convention inside as in the SavedModel (float32 NHWC RGB in
[0, 1], normalised in the graph). A child process loads it on Keras' PyTorch backend and exports it
with `torch.onnx.export(..., dynamo=True)` (torch.export, then onnxscript's translation), with the
batch, height and width left free as in the SavedModel's serving signature. That process imports no
TensorFlow (the SavedModel's outputs it is checked against come from the build) and holds about
one copy of the weights, where TensorFlow's freezing and tf2onnx held dozens. (Keras' own
`model.export(format="onnx")` on PyTorch falls back to TorchScript for dynamic shapes.)

The bytes depend on the graph, torch and onnxscript only (both pinned by the `onnx` extra): the
exporter's per-node metadata (stack traces with install paths, fx names) and its symbolic dimension
names are dropped. A model whose weights pass `EXTERNAL_DATA_BYTES` keeps them in ONNX's external
data, one file beside the graph (`<artifact>-v<version>.onnx_data`, a name unique below the
artifact's folder at a destination), which the graph names by that relative location: the two are
one artifact. Before onnxruntime reads a file, every external location is checked to be a file of
that folder (`check_external_data`). The file is checked in onnxruntime against the SavedModel, at
the native and a non-square size.
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
from typing import IO

import numpy as np

from hubpub import tolerances
from hubpub._files import atomic_path, sha256_file, started_child, temp_prefix, write_sha256
from hubpub.errors import HubpubError
from hubpub.formats.base import Format, FormatError, FormatJob
from hubpub.machine import physical_memory
from hubpub.record import ExternalData, FormatFile

log = logging.getLogger(__name__)

OPSET = 18
DATA_SUFFIX = ".onnx_data"
# Weights above this go to the external data file; one .onnx protobuf holds at most 2 GiB in all.
EXTERNAL_DATA_BYTES = 2**31 - 256 * 2**20
# The conversion process: torch, Keras and onnxruntime imported, the model loaded once, its ONNX graph
# (sharing the weights) and onnxruntime's session on it. Measured: `benchmarks/bench_onnx.py`.
CONVERSION_BYTES_PER_WEIGHT_BYTE = 4
CONVERSION_BASE_BYTES = 2**30


class Onnx(Format):
    name = "onnx"
    title = "ONNX"
    suffix = ".onnx"
    extra = "onnx"
    kaggle_framework = "onnx"  # kagglesdk's ModelFramework.MODEL_FRAMEWORK_ONNX
    runner = "onnxruntime"
    tolerance = tolerances.ONNX
    beside = True  # converted in a child process: the build's main thread goes on meanwhile
    needs = ("keras",)  # converted from the `.keras` file the build made

    def doc_values(self) -> dict:
        return {"opset": OPSET}

    def wanted(self, job: FormatJob) -> str | None:
        weights = job.parameters * 4
        need, have = conversion_bytes(weights), physical_memory()
        if have and need > 0.8 * have:
            return (f"converting it would take about {need / 2**30:.0f} GiB of memory (about "
                    f"{CONVERSION_BYTES_PER_WEIGHT_BYTE} copies of its {weights / 2**30:.2f} GiB of weights); this "
                    f"machine has {have / 2**30:.0f} GiB")
        return None

    def session(self) -> Converter:
        return Converter()

    def run(self, data: bytes, images: np.ndarray) -> np.ndarray:
        try:
            return _run(_session(data), images)
        except Exception as e:  # onnxruntime raises its own types for a bad or truncated model
            raise FormatError(f"onnxruntime could not run it: {_first_line(e)}") from None

    def run_file(self, path: Path, images: np.ndarray) -> np.ndarray:
        check_external_data(path)
        try:
            return _run(_session(str(path)), images)
        except Exception as e:
            raise FormatError(f"onnxruntime could not run it: {_first_line(e)}") from None

    def companions(self, path: Path) -> tuple[str, ...]:
        return tuple(dict.fromkeys(location for _, location, _ in external_tensors(path)))

    def objects(self, artifact, record, dist) -> list[tuple[Path, str]]:
        pairs = super().objects(artifact, record, dist)
        for f in self.entries(record):
            if f.data is not None:  # beside the graph under the name the graph gives it
                name = Path(f.data.path).name
                pairs += [(dist.root / f.data.path, f"{artifact.name}/{name}"),
                          (dist.root / (f.data.path + ".sha256"), f"{artifact.name}/{name}.sha256")]
        return pairs

    def hub_files(self, record, dist) -> list[tuple[str, Path]]:
        return super().hub_files(record, dist) + [(Path(f.data.path).name, dist.root / f.data.path)
                                                  for f in self.entries(record) if f.data is not None]

    def hub_sha256(self, record) -> str | dict:
        entries = self.entries(record)
        if not any(f.data is not None for f in entries):
            return super().hub_sha256(record)
        return {name: digest for f in entries for name, digest in
                ((Path(f.path).name, f.sha256), *(((Path(f.data.path).name, f.data.sha256),) if f.data else ()))}

    def build(self, job: FormatJob) -> tuple[FormatFile]:
        source = next(iter((job.made or {}).get("keras", ())), None)
        if source is None:
            raise FormatError(f"{job.artifact}: the ONNX file is converted from the .keras file, not built here")
        version = job.variant.version if job.variant is not None else 1
        path = self.path(job.dist, job.artifact)
        data_name = f"{job.artifact}-v{version}{DATA_SUFFIX}"
        with tempfile.TemporaryDirectory(prefix=temp_prefix("onnx")) as tmp:
            folder = Path(tmp)
            checks = saved_model_outputs(job.saved_model, (job.inputs, job.expected))
            with contextlib.ExitStack() as own:
                converter = job.session if isinstance(job.session, Converter) else own.enter_context(Converter())
                worst = converter.convert(job.dist.root / source.path, checks, folder, data_name)
            assert worst is not None  # given the inputs to check on, the child measures
            if not worst <= self.tolerance:
                raise FormatError(f"{job.artifact}: the ONNX file differs from the SavedModel by {worst:.2e} "
                                  f"(tolerance {self.tolerance:g})")
            data = None
            if (folder / data_name).is_file():
                final_data = path.with_name(data_name)
                with atomic_path(final_data) as final:
                    shutil.move(folder / data_name, final)
                digest = sha256_file(final_data)
                write_sha256(final_data, digest)
                data = ExternalData(job.dist.relative(final_data), digest, final_data.stat().st_size)
            with atomic_path(path) as final:  # the graph last: a final .onnx always has its data beside it
                shutil.move(folder / "model.onnx", final)
        digest = sha256_file(path)
        write_sha256(path, digest)
        return (FormatFile(self.name, job.dist.relative(path), digest, path.stat().st_size, worst, self.tolerance,
                           data),)


def conversion_bytes(weight_bytes: int) -> int:
    """The conversion process's expected peak memory for a model with this many bytes of weights."""
    return CONVERSION_BASE_BYTES + CONVERSION_BYTES_PER_WEIGHT_BYTE * weight_bytes


def _first_line(e: Exception) -> str:
    return f"{type(e).__name__}: {(str(e).strip().splitlines() or [''])[0][:300]}"


def external_tensors(path: Path) -> list[tuple[str, str, int]]:
    """(tensor name, external data location, end of its bytes) of each tensor of the ONNX file whose data
    is external, read without following any location; FormatError for a location that is not a plain file
    name of the file's folder (absolute, with a folder in it, `..`): a downloaded file must not name the
    machine's other files."""
    import onnx
    from onnx.external_data_helper import _get_all_tensors

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # protobuf's DecodeError and others
        raise FormatError(f"not an ONNX file: {_first_line(e)}") from None
    found = []
    for tensor in _get_all_tensors(model):
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        info = {entry.key: entry.value for entry in tensor.external_data}
        location = info.get("location", "")
        if not location or location != Path(location).name or location in (".", "..") or "\\" in location:
            raise FormatError(f"tensor {tensor.name!r} reads external data from {location!r}, outside "
                              "the file's folder: refused")
        if location == Path(path).name:
            raise FormatError(f"tensor {tensor.name!r} reads external data from the file itself: refused")
        found.append((tensor.name, location, int(info.get("offset") or 0) + int(info.get("length") or 0)))
    return found


def check_external_data(path: Path) -> None:
    """Refuse an ONNX file any of whose tensors' external data is not a file in its own folder (an
    absolute location, one with a folder in it or `..`, a missing file, a range past its end), before
    onnxruntime follows a location: a downloaded file must not read the machine's other files."""
    for name, location, end in external_tensors(path):
        data = Path(path).parent / location
        if not data.is_file():
            raise FormatError(f"its external data {location} is missing beside it")
        if end > data.stat().st_size:
            raise FormatError(f"tensor {name!r} reads {location} up to byte {end}, past its end "
                              f"({data.stat().st_size} bytes)")


@contextlib.contextmanager
def _one_large_conversion_at_a_time(weights: int):
    """A machine-wide lock around a conversion that would take over a quarter of the memory: `wanted`
    sizes one conversion against the machine, and `build-all --jobs N` runs N builds at once."""
    have = physical_memory()
    if not have or conversion_bytes(weights) <= have / 4:
        yield
        return
    import fcntl

    with open(Path(tempfile.gettempdir()) / "hubpub-onnx-conversion.lock", "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("waiting for another ONNX conversion on this machine to finish (memory)")
            fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def converted(keras_file: Path, saved_model: Path, folder: Path, data_name: str = "model" + DATA_SUFFIX) -> Path:
    """`folder/model.onnx` (and its external data `folder/<data_name>` above `EXTERNAL_DATA_BYTES`),
    converted from `keras_file` in a child process, unchecked; `saved_model` names its output."""
    with Converter() as converter:
        converter.convert(keras_file, saved_model_outputs(saved_model, None), Path(folder), data_name)
    return Path(folder) / "model.onnx"


class Converter:
    """The conversion process of a build's artifacts (`Onnx.session`), started at its first conversion and
    kept for the next: torch, Keras and the exporter are imported once, and the exporter's caches are warm
    for the next artifact. It imports no TensorFlow: the SavedModel's side of each check is computed here,
    where TensorFlow already is. One request at a time, as a JSON line (`serve`); its stderr goes to an
    unnamed temp file, read when a request fails."""

    def __init__(self) -> None:
        self._stack = contextlib.ExitStack()
        self._child: subprocess.Popen | None = None
        self._log: IO[str] | None = None

    def __enter__(self) -> Converter:
        return self

    def __exit__(self, *exc) -> None:
        self._stack.__exit__(*exc)

    def convert(self, keras_file: Path, checks: tuple[list, str], tmp: Path, data_name: str) -> float | None:
        """Convert into `tmp`; given checks (`saved_model_outputs`), run it in onnxruntime there on each:
        its max |Δ|. FormatError for a conversion that failed, saying why."""
        inputs, output_name = checks
        args = [str(keras_file), output_name, str(tmp / "model.onnx"), data_name, str(EXTERNAL_DATA_BYTES)]
        if inputs:
            np.savez(tmp / "check.npz", **{f"{kind}{i}": array for i, pair in enumerate(inputs)
                                           for kind, array in zip(("inputs", "expected"), pair, strict=True)})
            args.append(str(tmp / "check.npz"))
        with _one_large_conversion_at_a_time(Path(keras_file).stat().st_size):
            reply = self._request(args)
        if "error" in reply:
            raise FormatError(reply["error"])
        return json.loads((tmp / "check.json").read_text())["max_abs"] if inputs else None

    def _request(self, args: list[str]) -> dict:
        if self._child is None or self._child.poll() is not None:
            self._start()
        assert self._child is not None and self._child.stdin is not None and self._child.stdout is not None
        assert self._log is not None
        said_before = os.fstat(self._log.fileno()).st_size
        try:
            self._child.stdin.write(json.dumps(args) + "\n")
            self._child.stdin.flush()
            line = self._child.stdout.readline()
        except OSError:  # the pipe of a process that died
            line = ""
        if line:
            return json.loads(line)
        code = self._child.wait()
        self._child = None  # a next request starts another process
        self._log.seek(said_before)
        return {"error": _failure(code, self._log.read())}

    def _start(self) -> None:
        import fcntl

        if self._log is None:
            self._log = self._stack.enter_context(tempfile.TemporaryFile("w+", prefix=temp_prefix("onnx")))  # noqa: SIM115
            flags = fcntl.fcntl(self._log.fileno(), fcntl.F_GETFL)  # its writes land at the end, whatever is read
            fcntl.fcntl(self._log.fileno(), fcntl.F_SETFL, flags | os.O_APPEND)
        env = {**os.environ, "KERAS_BACKEND": "torch", "TF_CPP_MIN_LOG_LEVEL": "2"}
        self._child = self._stack.enter_context(started_child(
            [sys.executable, "-c", "from hubpub.formats.onnx import serve; serve()"], env=env, stderr=self._log))


def _failure(code: int, stderr: str) -> str:
    """Why the conversion process ended with `code` (and `stderr`), in a line."""
    if code < 0:  # killed: by the kernel when memory ran out, most likely
        return f"the ONNX conversion process was killed ({signal.Signals(-code).name}; out of memory?)"
    crash = [line for line in stderr.strip().splitlines() if re.match(r"^\w+(Error|Exception)\b", line)]
    return f"the ONNX conversion process failed: {(crash or [f'exit status {code}'])[-1]}"


def serve() -> None:
    """The conversion process: one request per line of stdin, `_convert`'s arguments as JSON; one JSON line
    of reply each (`{}`, or `{"error": ...}` for the model's own problems) on the stdout it was started with,
    where nothing else is written: the libraries' own printing goes to stderr."""
    import gc

    replies = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    for line in sys.stdin:
        try:
            _convert(*json.loads(line))
            reply = {}
        except HubpubError as e:  # the .keras file's own errors among them
            reply = {"error": str(e)}
        gc.collect()  # this model's copy of the weights, before the next
        replies.write(json.dumps(reply) + "\n")
        replies.flush()


def _convert(keras_file: str, output_name: str, out: str, data_name: str, threshold: str, *check: str) -> None:
    """One conversion of `serve`; with CHECK_NPZ, its max |Δ| from the outputs there, into CHECK.json."""
    export(Path(keras_file), Path(out), data_name, int(threshold), output_name)
    if check:
        saved = np.load(check[0])
        checks = [(saved[f"inputs{i}"], saved[f"expected{i}"]) for i in range(len(saved.files) // 2)]
        worst = max_difference(Path(out), checks)
        Path(check[0]).with_suffix(".json").write_text(json.dumps({"max_abs": worst}))


def saved_model_outputs(saved_model: Path, check: tuple[np.ndarray, np.ndarray] | None) -> tuple[list, str]:
    """([(inputs, the SavedModel's outputs)] on the build's inputs, as the build recorded them (`check`),
    and on an input of another, non-square size; its serving signature's output name)."""
    import tensorflow as tf

    loaded = tf.saved_model.load(str(saved_model))  # held: its signature refers to its variables
    serving = loaded.signatures["serving_default"]
    name = next(iter(serving.structured_input_signature[1]))
    output = next(iter(serving.structured_outputs))
    checks = []
    if check is not None:
        resolution = check[0].shape[1]
        other = np.random.default_rng(1).random((1, resolution + 32, resolution + 96, 3), dtype=np.float32)
        checks = [check, (other, serving(**{name: tf.constant(other)})[output].numpy())]
    return checks, output


def export(keras_file: Path, out: Path, data_name: str, threshold: int, output_name: str) -> None:
    """The `.keras` model, loaded on Keras' PyTorch backend, as an ONNX file (see the module's text)."""
    import keras
    import onnx_ir
    import torch

    from hubpub.keras_files import load_keras_file

    if keras.backend.backend() != "torch":
        raise FormatError("the ONNX conversion runs with KERAS_BACKEND=torch")
    model = load_keras_file(keras_file)
    _, height, width, channels = model.inputs[0].shape
    example = torch.zeros((2, height or 224, width or 224, channels or 3), dtype=torch.float32)
    free = torch.export.Dim.DYNAMIC
    dims = {0: free} if height else {0: free, 1: free, 2: free}
    try:
        with torch.no_grad():
            exported = torch.export.export(_serving_module()(model).eval(), (example,), dynamic_shapes=(dims,),
                                           strict=False)
            program = torch.onnx.export(_without_no_op_casts(exported), dynamo=True, opset_version=OPSET,
                                        input_names=["images"], output_names=[output_name], verbose=False)
    except Exception as e:  # torch.export and onnxscript raise many types
        raise FormatError(f"{keras_file}: ONNX export failed: {_first_line(e)}") from None
    assert program is not None  # the dynamo exporter returns its program
    ir = canonical(program.model)
    weights = sum(v.const_value.nbytes for v in ir.graph.initializers.values() if v.const_value is not None)
    del model, program
    onnx_ir.save(ir, out, external_data=data_name if weights > threshold else None)


def _without_no_op_casts(program):
    """`program` (a torch.export program) without the casts to the dtype a tensor already has, and their
    metadata asserts, which Keras' PyTorch backend puts around nearly every op: they are about half the
    graph, and every later pass of the exporter walks each node with symbolic shapes. The ONNX file is the
    same (the translation drops them too); only the time to reach it shrinks."""
    import torch

    graph = program.graph
    casts = (torch.ops.aten.to.dtype_layout, torch.ops.aten.to.dtype)
    for node in list(graph.nodes):
        if node.op != "call_function":
            continue
        if node.target is torch.ops.aten._assert_tensor_metadata.default:
            graph.erase_node(node)
        elif node.target in casts and not node.kwargs.get("copy") and _same_tensor_type(node) \
                and not any(user.op == "output" for user in node.users):  # the signature names the output node
            node.replace_all_uses_with(node.args[0])
            graph.erase_node(node)
    program.graph_module.recompile()
    return program


def _same_tensor_type(node) -> bool:
    source = node.args[0].meta.get("val") if hasattr(node.args[0], "meta") else None
    result = node.meta.get("val")
    return (source is not None and result is not None and source.dtype == result.dtype
            and source.device == result.device and source.layout == result.layout)


def _serving_module():
    import torch

    class Serving(torch.nn.Module):
        """The Keras model as a module whose `forward` is its inference call."""

        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, images):
            return self.model(images, training=False)

    return Serving


def canonical(model):
    """`model` (an `onnx_ir` model) without what varies with the process or the install: the exporter's
    per-node metadata (stack traces with install paths, fx names), its numbered symbolic dimensions
    (named `batch`, `height`, `width` here) and its doc strings."""
    graph = model.graph
    for node in graph.all_nodes() if hasattr(graph, "all_nodes") else graph:
        node.metadata_props.clear()
        node.doc_string = None
        for value in node.outputs:
            value.metadata_props.clear()
    for value in (*graph.inputs, *graph.outputs, *graph.initializers.values()):
        value.metadata_props.clear()
    graph.metadata_props.clear()
    model.metadata_props.clear()
    graph.doc_string = model.doc_string = None
    names = {}
    for value in graph.inputs:  # [batch, height, width, 3]
        for i, dim in enumerate(value.shape):
            if not isinstance(dim, int) and dim is not None:
                names[str(dim)] = ("batch", "height", "width")[i] if i < 3 else f"dim{i}"
    for value in (*graph.inputs, *graph.outputs):
        value.shape = _renamed(value.shape, names)
    for node in graph:
        for value in node.outputs:
            if value.shape is not None:
                value.shape = _renamed(value.shape, names)
    return model


def _renamed(shape, names: dict):
    import onnx_ir

    if shape is None:
        return None
    return onnx_ir.Shape([names.get(str(d), str(d)) if not isinstance(d, int) else d for d in shape])


def max_difference(out: Path, checks: list) -> float:
    """The ONNX file's max |Δ| from the SavedModel's outputs (`saved_model_outputs`), in onnxruntime."""
    check_external_data(out)
    session = _session(str(out))
    return max(float(np.abs(_run(session, x) - want).max()) for x, want in checks)


def run(model: bytes | Path, images: np.ndarray) -> np.ndarray:
    """The ONNX model's outputs on `images`, in onnxruntime on the CPU (a path: its external data checked)."""
    if isinstance(model, Path):
        check_external_data(model)
        return _run(_session(str(model)), images)
    return _run(_session(model), images)


def _session(model: bytes | str):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3  # no warnings about unused initializers on the terminal
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def _run(session, images: np.ndarray) -> np.ndarray:
    return session.run(None, {session.get_inputs()[0].name: images.astype(np.float32)})[0]
