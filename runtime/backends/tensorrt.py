"""Native TensorRT backend: one execution context, one stream, device buffers sized to the profile maximum.

TensorRT 10/11 API: tensors are bound by name with ``set_tensor_address`` and run with ``execute_async_v3``.
tensorrt and the CUDA library are imported when the backend is created, never at module import.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ccstereo.runtime.backends.cuda_device import CudaBuffers, query_device
from ccstereo.runtime.backends.protocol import as_feeds
from ccstereo.runtime.engine_cache import EngineKey, check_engine, read_sidecar
from ccstereo.runtime.errors import BackendUnavailableError
from ccstereo.runtime.model_info import ModelInfo

_DTYPES = {"frames": np.uint8, "mono": np.float32, "frame_index": np.int64, "binaural": np.float32}


def current_key(built: EngineKey) -> EngineKey:
    """Return this machine's key for an engine with ``built``'s ONNX, precision and profile."""
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise BackendUnavailableError("tensorrt is not installed (pip install '.[gpu]')") from exc
    device = query_device()
    return EngineKey(
        built.onnx_sha256, trt.__version__, device.name, device.compute_capability, built.precision, built.profile
    )


class TensorRTBackend:
    """Run a ``.plan`` built by ``ccs-export --engine`` after checking it was built for this machine."""

    def __init__(self, plan: str | Path) -> None:
        import tensorrt as trt

        self.plan = Path(plan)
        built, metadata = read_sidecar(self.plan)
        check_engine(self.plan, current_key(built))
        self.info = ModelInfo.from_props(self.plan, metadata)
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.engine = trt.Runtime(self.logger).deserialize_cuda_engine(self.plan.read_bytes())
        if self.engine is None:
            raise BackendUnavailableError(f"{self.plan}: TensorRT could not deserialise the engine")
        self.context = self.engine.create_execution_context()
        self.max_batch = built.profile.max_batch
        self.precision = built.precision
        self.name = f"tensorrt-{built.precision}"
        self.cuda = CudaBuffers()
        n = self.info.config.window_samples
        max_shapes = {name: shapes[2] for name, shapes in built.profile.shapes(self.info.config).items()}
        max_shapes["binaural"] = (self.max_batch, 2, n)
        self.device_ptr = {
            name: self.cuda.alloc(int(np.prod(shape)) * np.dtype(_DTYPES[name]).itemsize)
            for name, shape in max_shapes.items()
        }
        for name, ptr in self.device_ptr.items():
            self.context.set_tensor_address(name, ptr)

    def run(self, frames: np.ndarray, mono: np.ndarray, frame_index: np.ndarray) -> np.ndarray:
        if len(mono) > self.max_batch or len(frames) > self.max_batch:
            raise ValueError(
                f"batch of {len(mono)} windows / {len(frames)} frames exceeds the engine's "
                f"profile maximum {self.max_batch}"
            )
        inputs = as_feeds(frames, mono, frame_index)
        for name, host in inputs.items():
            self.context.set_input_shape(name, host.shape)
            self.cuda.to_device(self.device_ptr[name], host)
        out = np.empty((len(mono), 2, self.info.config.window_samples), np.float32)
        if not self.context.execute_async_v3(self.cuda.stream_handle):
            raise RuntimeError(f"{self.plan}: TensorRT execution failed")
        self.cuda.to_host(out, self.device_ptr["binaural"])
        self.cuda.synchronize()
        return out

    def split(self):
        """An engine is built for the whole window graph; there are no halves to run apart."""
        raise BackendUnavailableError("a TensorRT engine runs the whole window graph; use --visual-rate exact")

    def close(self) -> None:
        self.cuda.close()
