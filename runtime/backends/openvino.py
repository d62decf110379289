"""OpenVINO backend for CPUs: the exported FP32 graph run with an inference-precision hint (bf16 on AMX/AVX512-BF16
CPUs, fp32 elsewhere), or the int8 graph (``model.int8.onnx``: QDQ visual convolutions, fused by OpenVINO into
VNNI/AMX int8 kernels). It runs what it is given: whether a reduced precision may run is decided by
``backends.choose`` before it is built.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ccstereo.runtime.backends.openvino_graph import block_overlap_add, relu_before_quantize
from ccstereo.runtime.backends.protocol import DEFAULT_BATCH, as_feeds, fusion_feeds
from ccstereo.runtime.cpu_features import native_bf16, usable_cpus
from ccstereo.runtime.errors import BackendUnavailableError, ModelMetadataError
from ccstereo.runtime.graph_split import split_window_graph
from ccstereo.runtime.interrupts import Waitable
from ccstereo.runtime.model_info import ModelInfo, read_onnx_info

# Engine calls run as this many OpenVINO streams (each with its share of the threads) on the parts of a batch. A
# stream's threads meet at a barrier after every layer: when the decode or encode thread takes a core from one of
# them, the others wait. With one thread per stream (2 cores) nothing waits for a descheduled thread, and the
# result is the same within float32 rounding (to the bit in most processes: tests/test_openvino_streams.py).
STREAMS = 2


class OpenVINOBackend:
    """Run ``model.onnx`` with OpenVINO's CPU plugin at 'bf16' or 'fp32', or ``model.int8.onnx`` as 'int8'."""

    def __init__(
        self,
        model_path: str | Path,
        precision: str = "bf16",
        max_batch: int = DEFAULT_BATCH,
        threads: int | None = None,
        info: ModelInfo | None = None,
        compiled: Path | None = None,
    ) -> None:
        """``precision``: 'bf16' or 'fp32' for an fp32 graph, 'int8' for an int8 graph (``model.int8.onnx``).

        ``info``: the model's metadata when the caller has already read it (saves a second read). ``compiled``:
        where this graph compiled with these settings is kept (read when there, written atomically when not; a
        start-up without compiling), or None."""
        from ccstereo.runtime.openvino_import import core as openvino_core

        try:
            core = openvino_core()
        except ImportError as exc:
            raise BackendUnavailableError("openvino is not installed (pip install '.[cpu]')") from exc
        self.info = info if info is not None else read_onnx_info(model_path)
        if precision not in ("bf16", "fp32", "int8"):
            raise ValueError(f"OpenVINO precision must be bf16, fp32 or int8, not {precision!r}")
        if (precision == "int8") != (self.info.precision == "int8"):
            raise BackendUnavailableError(
                f"{model_path}: a {self.info.precision} graph cannot run as {precision} "
                "(int8 runs model.int8.onnx, bf16/fp32 run model.onnx)"
            )
        # The int8 graph's floating-point part runs as the export measured it: bf16 where the CPU has it.
        hint = {"bf16": "bf16", "fp32": "f32", "int8": "bf16" if native_bf16() else "f32"}[precision]  # OpenVINO's
        count = threads or len(usable_cpus())
        latency = {"INFERENCE_PRECISION_HINT": hint, "PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": count}
        self.streams = min(STREAMS, count)
        streams = {"PERFORMANCE_HINT": "THROUGHPUT", "NUM_STREAMS": self.streams}
        config = latency if self.streams == 1 else {**latency, **streams}
        self.name, self.precision = f"openvino-cpu-{precision}", precision
        self.max_batch = max_batch
        self._opened = (Path(model_path), core, latency)
        self._split: OpenVINOSplit | None = None
        self._ready = _Ready(lambda: _compiled(core, Path(model_path), config, compiled))
        if compiled is None or not compiled.is_file():
            self._ready.wait()  # compiled here and now: a graph OpenVINO refuses fails the load, not the first call

    @property
    def compiled(self):
        return self._ready.wait()

    @property
    def requests(self) -> list:
        return self._ready.requests(self.streams)

    def split(self) -> OpenVINOSplit:
        """Return the visual and fusion halves of this graph, compiled with the same settings (on first use)."""
        if self._split is None:
            self._ready.wait()  # one compile at a time on the shared core
            self._split = OpenVINOSplit(*self._opened)
        return self._split

    def run(self, frames: np.ndarray, mono: np.ndarray, frame_index: np.ndarray) -> np.ndarray:
        """Run a batch: its windows split into one contiguous part per stream, the parts computed at once."""
        parts = list(window_parts(frames, mono, frame_index, self.streams))
        if len(parts) == 1:
            result = self.requests[0].infer(as_feeds(*parts[0]))
            return np.array(result[self.compiled.output(0)], dtype=np.float32, copy=True)
        for request, part in zip(self.requests, parts, strict=False):
            request.start_async(as_feeds(*part))  # the arrays stay referenced by ``parts`` until the wait
        outputs = []
        for request in self.requests[: len(parts)]:
            request.wait()
            outputs.append(np.array(request.get_output_tensor(0).data, dtype=np.float32, copy=True))
        return np.concatenate(outputs)


class _Ready:
    """The compiled graph, made on a thread of its own from the start (importing a kept graph takes ~0.1 s, which
    then overlaps the first file's opening and decoding); ``wait`` returns it, or raises what making it raised."""

    def __init__(self, make) -> None:
        self.result: Any = None
        self.error: BaseException | None = None
        self._requests: list = []
        # Not a daemon: the interpreter waits for it at exit (a process ending while OpenVINO is still importing or
        # compiling on a daemon thread aborts or crashes in OpenVINO's destructors).
        self.thread = Waitable(self._make, (make,), name="ccs-openvino-load", daemon=False)
        self.thread.start()

    def _make(self, make) -> None:
        try:
            self.result = make()
        except BaseException as exc:  # noqa: BLE001 - raised by wait()
            self.error = exc

    def wait(self):
        self.thread.wait()  # not join: a Ctrl-C there would let the exit run OpenVINO's destructors under the compile
        if self.error is not None:
            raise self.error
        return self.result

    def requests(self, n: int) -> list:
        if not self._requests:
            self._requests = [self.wait().create_infer_request() for _ in range(n)]
        return self._requests


def window_parts(
    frames: np.ndarray, mono: np.ndarray, frame_index: np.ndarray, n: int
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Split a batch into at most ``n`` contiguous runs of windows, each with the frames it uses (frames two runs
    share go to both) and its windows' indices into them."""
    bounds = np.linspace(0, len(mono), min(n, len(mono)) + 1).round().astype(int)
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        used, local = np.unique(frame_index[a:b], return_inverse=True)
        contiguous = used[-1] - used[0] + 1 == len(used)  # a range of frames: a view, no copy
        yield (
            frames[used[0] : used[-1] + 1] if contiguous else frames[used],
            mono[a:b],
            local.reshape(-1).astype(np.int64),
        )


def _compiled(core, model_path: Path, config: dict, blob: Path | None):
    """Return ``model_path`` compiled for the CPU: imported from ``blob`` when it is there and loads, else compiled
    and (when ``blob`` is given) exported to it atomically; a cache that cannot be written costs only the time."""
    if blob is not None and blob.is_file():
        try:
            return _imported(core, blob, config)
        except (OSError, RuntimeError, ValueError):
            pass  # unreadable, empty or from another build: compile again and replace it
    try:
        compiled = _compile(core, model_path, config)
    except RuntimeError as exc:  # OpenVINO's errors for a graph it cannot read or compile
        raise ModelMetadataError(f"{model_path}: OpenVINO cannot read or compile it: {str(exc).strip()[:300]}") from exc
    if blob is not None:
        from ccstereo.atomic import write_bytes

        stream = compiled.export_model()
        try:
            blob.parent.mkdir(parents=True, exist_ok=True)
            write_bytes(blob, stream.getvalue() if hasattr(stream, "getvalue") else bytes(stream))
        except OSError:  # WriteError included
            pass
    return compiled


# Kept graphs imported from their file's pages, never unmapped: the compiled model reads its weights there and does not
# keep the mapping alive itself (dropping it segfaults the next inference). Keyed by the file's identity, so a process
# maps each kept graph once; the cache replaces a file by renaming a new one over it, which leaves a mapping intact.
_MAPPED: dict[tuple, Any] = {}


def _imported(core, blob: Path, config: dict):
    """Return the compiled graph kept at ``blob``, imported from its pages in memory (mapped, not read: ~0.09 s
    instead of ~0.16 s for the full-size int8 graph, and its weights not copied into the process's own memory)."""
    from openvino import Tensor

    st = blob.stat()
    key = (str(blob), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
    if key not in _MAPPED:
        try:
            pages = np.memmap(blob, dtype=np.uint8, mode="c")  # copy-on-write: nothing can write the file through it
        except OSError:  # a file system that cannot map files: read it (as before), not compile it again
            return core.import_model(blob.read_bytes(), "CPU", config)
        _MAPPED[key] = (pages, Tensor(pages, shared_memory=True))
    try:
        return core.import_model(_MAPPED[key][1], "CPU", config)
    except BaseException:
        _MAPPED.pop(key, None)  # nothing was made of it
        raise


def _compile(core, source, config: dict):
    """Return the graph at ``source`` (a path, or a serialised ONNX graph) compiled as OpenVINO runs it fastest: its
    inverse STFT in blocks and an int8 graph's ReLUs ahead of their quantisation (``openvino_graph``: the same
    computation, reordered where that is exact)."""
    model = core.read_model(str(source) if isinstance(source, Path) else source)
    block_overlap_add(model)
    relu_before_quantize(model)
    return core.compile_model(model, "CPU", config)


class OpenVINOSplit:
    """The graph cut at its visual features (``runtime.graph_split``), each half compiled like the whole (in one
    stream: the halves are called one batch at a time)."""

    def __init__(self, model_path: Path, core, config: dict) -> None:
        halves = split_window_graph(model_path)
        self.visual = _compile(core, halves.visual, config).create_infer_request()
        self.fusion = _compile(core, halves.fusion, config).create_infer_request()
        self.feature_name = halves.features

    def features(self, frames: np.ndarray) -> np.ndarray:
        result = self.visual.infer({"frames": np.ascontiguousarray(frames, dtype=np.uint8)})
        return np.array(next(iter(result.values())), dtype=np.float32, copy=True)

    def fuse(self, features: np.ndarray, mono: np.ndarray, frame_index: np.ndarray) -> np.ndarray:
        result = self.fusion.infer(fusion_feeds(self.feature_name, features, mono, frame_index))
        return np.array(next(iter(result.values())), dtype=np.float32, copy=True)
