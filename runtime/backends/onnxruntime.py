"""onnxruntime backend: CPU here; CUDA and TensorRT execution providers when present."""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np

from ccstereo.runtime.backends.protocol import DEFAULT_BATCH, as_feeds, fusion_feeds
from ccstereo.runtime.cpu_features import usable_cpus
from ccstereo.runtime.errors import BackendUnavailableError
from ccstereo.runtime.graph_split import split_window_graph
from ccstereo.runtime.model_info import ModelInfo, info_from_session, open_onnx_session, read_onnx_info

PROVIDERS = ("tensorrt", "cuda", "cpu")


def provider_options(kind: str, cache_dir: Path | None, fp16: bool) -> tuple[str, dict[str, str]]:
    """Return (provider name, options) for one of ``PROVIDERS``."""
    if kind == "tensorrt":
        opts = {"trt_fp16_enable": "True" if fp16 else "False"}
        if cache_dir is not None:
            opts.update(
                trt_engine_cache_enable="True",
                trt_engine_cache_path=str(cache_dir),
                trt_timing_cache_enable="True",
                trt_timing_cache_path=str(cache_dir),
            )
        return "TensorrtExecutionProvider", opts
    if kind == "cuda":
        return "CUDAExecutionProvider", {"cudnn_conv_algo_search": "EXHAUSTIVE"}
    if kind == "cpu":
        return "CPUExecutionProvider", {}
    raise ValueError(f"unknown provider kind {kind!r}; expected one of {PROVIDERS}")


_SPINNING = True  # the default for sessions opened from now on in this process (see sleeping_threads)


@contextlib.contextmanager
def sleeping_threads():
    """Sessions opened inside this block let their thread pools sleep between calls instead of spinning: for a
    process that shares its cores with others, as the ``--ray`` driver's own work does while Ray starts beside it
    (measured: 0.4-1.0 s less of a 36 s run on 2 cores; a spinning pool takes CPU from Ray's starting processes)."""
    global _SPINNING
    before, _SPINNING = _SPINNING, False
    try:
        yield
    finally:
        _SPINNING = before


def _session_options(threads: int | None, spinning: bool = True):
    """Return the session options every CPU session of a model uses."""
    import onnxruntime as ort

    # Errors only: onnxruntime's warnings (its telemetry id not saved under a read-only HOME, unused initialisers)
    # say nothing a user can act on, and must not reach a --quiet run's terminal.
    ort.set_default_logger_severity(3)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads or len(usable_cpus())
    # The CPU arena stays on: without it every call maps and unmaps its activations afresh (measured on a
    # 60 s input: 25.1 s without vs 15.4 s with, peak RSS 588 vs 731 MiB; the arena's peak is reached in
    # the first batches and stays flat in the input's length).
    options.enable_cpu_mem_arena = True
    # A memory pattern pre-allocates the whole planned peak of a repeated shape at once (+120 MB at batch
    # 32, measured); without it, buffers are freed as soon as their last consumer has run.
    options.enable_mem_pattern = False
    if not (spinning and _SPINNING):
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


class OnnxRuntimeBackend:
    """Run an exported ``model.onnx`` / ``model.fp16.onnx`` with onnxruntime."""

    def __init__(
        self,
        model_path: str | Path,
        provider: str = "cpu",
        max_batch: int = DEFAULT_BATCH,
        threads: int | None = None,
        cache_dir: Path | None = None,
    ) -> None:
        import onnxruntime as ort

        # Only the TensorRT provider's options depend on the graph's precision; otherwise the metadata is read
        # from the one session that runs the model (loading the weights once).
        fp16 = provider == "tensorrt" and read_onnx_info(model_path).precision == "fp16"
        name, options = provider_options(provider, cache_dir, fp16)
        available = ort.get_available_providers()
        if name not in available:
            raise BackendUnavailableError(f"onnxruntime provider {name} is not available here (have {available})")
        session_options = _session_options(threads)
        providers: list = [(name, options)]
        if name != "CPUExecutionProvider":
            providers.append("CPUExecutionProvider")  # for the few ops a GPU provider leaves to the host
        self.session = open_onnx_session(model_path, session_options, providers)
        self.info: ModelInfo = info_from_session(model_path, self.session)
        self.precision = self.info.precision
        self.name = f"onnxruntime-{provider}-{self.info.precision}"
        self.max_batch = max_batch
        self._opened = (Path(model_path), threads, providers)
        self._split: OnnxRuntimeSplit | None = None

    def split(self) -> OnnxRuntimeSplit:
        """Return the visual and fusion halves of this graph (cut on first use, kept for later runs)."""
        if self._split is None:
            self._split = OnnxRuntimeSplit(*self._opened)
        return self._split

    def run(self, frames: np.ndarray, mono: np.ndarray, frame_index: np.ndarray) -> np.ndarray:
        feeds = as_feeds(frames, mono, frame_index)
        return self.session.run(["binaural"], feeds)[0]


class OnnxRuntimeSplit:
    """The exported graph cut at its visual features (``runtime.graph_split``), one session per half, opened
    with the whole graph's session options and providers."""

    def __init__(self, model_path: Path, threads: int | None, providers: list) -> None:
        import onnxruntime as ort

        halves = split_window_graph(model_path)
        # The halves run one after the other: a thread pool that spins after its call would take the cores
        # from the other half (measured: +15-30 % wall time on 2 cores).
        options = _session_options(threads, spinning=False)
        self.visual = ort.InferenceSession(halves.visual, options, providers=providers)
        self.fusion = ort.InferenceSession(halves.fusion, options, providers=providers)
        self.feature_name = halves.features

    def features(self, frames: np.ndarray) -> np.ndarray:
        return self.visual.run(None, {"frames": np.ascontiguousarray(frames, dtype=np.uint8)})[0]

    def fuse(self, features: np.ndarray, mono: np.ndarray, frame_index: np.ndarray) -> np.ndarray:
        return self.fusion.run(["binaural"], fusion_feeds(self.feature_name, features, mono, frame_index))[0]
