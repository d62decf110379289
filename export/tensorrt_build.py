"""FP16 ONNX -> strongly typed TensorRT engine, in small steps: parse -> config -> build -> save.

Strongly typed networks take every tensor type from the ONNX graph (FP16 with FP32 islands), so no precision
flags are set. The timing cache is loaded, merged with what the build learnt and saved under a file lock.
"""

from __future__ import annotations

import fcntl
import logging
from pathlib import Path

from ccstereo.atomic import write_bytes
from ccstereo.config import ModelConfig
from ccstereo.runtime.backends.cuda_device import query_device
from ccstereo.runtime.engine_cache import BatchProfile, EngineKey, write_sidecar
from ccstereo.runtime.errors import BackendUnavailableError

log = logging.getLogger(__name__)
WORKSPACE_BYTES = 4 << 30


def gpu_status() -> tuple[bool, str]:
    """Return (can build an engine here, reason)."""
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return False, "tensorrt is not installed (pip install '.[gpu]')"
    try:
        device = query_device()
    except BackendUnavailableError as exc:
        return False, str(exc)
    return True, f"{device.name} (compute capability {device.compute_capability})"


def parse_onnx(trt, builder, logger, onnx_path: Path):
    """Return a strongly typed network parsed from ``onnx_path``; parser errors become one exception."""
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"{onnx_path}: TensorRT could not parse the ONNX graph: {errors}")
    for i in range(network.num_inputs):
        t = network.get_input(i)
        log.info("input %s %s %s", t.name, t.dtype, t.shape)
    for i in range(network.num_outputs):
        t = network.get_output(i)
        log.info("output %s %s %s", t.name, t.dtype, t.shape)
    return network, parser


def make_config(trt, builder, profile: BatchProfile, config: ModelConfig, timing_cache: bytes):
    """Return a builder config with one optimisation profile and the loaded timing cache."""
    builder_config = builder.create_builder_config()
    builder_config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE_BYTES)
    opt_profile = builder.create_optimization_profile()
    for name, (lo, opt, hi) in profile.shapes(config).items():
        opt_profile.set_shape(name, lo, opt, hi)
    builder_config.add_optimization_profile(opt_profile)
    cache = builder_config.create_timing_cache(timing_cache)
    builder_config.set_timing_cache(cache, ignore_mismatch=False)
    return builder_config


def _locked_timing_cache(path: Path):
    lock = path.with_name(path.name + ".lock")
    handle = lock.open("w")
    fcntl.flock(handle, fcntl.LOCK_EX)
    return handle


def build_engine(
    onnx_path: Path,
    out_dir: Path,
    profile: BatchProfile,
    config: ModelConfig,
    model_metadata: dict[str, str],
    timing_cache_path: Path | None = None,
) -> Path:
    """Build ``model.<gpu>.<trt>.fp16.plan`` and its sidecar in ``out_dir``; return the plan path. The engine's
    key holds the sha256 of ``onnx_path`` (the graph it was built from)."""
    import tensorrt as trt

    from ccstereo.export.onnx_graph import sha256_file

    device = query_device()
    key = EngineKey(sha256_file(onnx_path), trt.__version__, device.name, device.compute_capability, "fp16", profile)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network, _parser = parse_onnx(trt, builder, logger, onnx_path)
    cache_path = timing_cache_path or out_dir / "timing.cache"
    lock = _locked_timing_cache(cache_path)
    try:
        cached = cache_path.read_bytes() if cache_path.is_file() else b""
        builder_config = make_config(trt, builder, profile, config, cached)
        serialized = builder.build_serialized_network(network, builder_config)
        if serialized is None:
            raise RuntimeError(f"{onnx_path}: TensorRT engine build failed (see the log above)")
        merged = builder_config.create_timing_cache(cached)
        merged.combine(builder_config.get_timing_cache(), False)
        write_bytes(cache_path, bytes(merged.serialize()))
    finally:
        fcntl.flock(lock, fcntl.LOCK_UN)
        lock.close()
    plan = out_dir / key.plan_name()
    write_bytes(plan, bytes(serialized))
    write_sidecar(plan, key, model_metadata)
    return plan
