"""CUDA device queries and memory for the TensorRT backend, through cuda-python or pycuda (chosen lazily).

Errors from either library are turned into exceptions here, in one place.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ccstereo.runtime.errors import BackendUnavailableError


@dataclass(frozen=True)
class DeviceInfo:
    name: str
    compute_capability: str


def _cudart() -> Any:
    try:
        from cuda.bindings import runtime as cudart  # cuda-python >= 12.6
    except ImportError:
        from cuda import cudart  # type: ignore[no-redef]  # older cuda-python layout
    return cudart


def _check(result: tuple) -> Any:
    err, *values = result
    if int(err) != 0:
        raise BackendUnavailableError(f"CUDA error {err}")
    return values[0] if len(values) == 1 else values


def query_device(index: int = 0) -> DeviceInfo:
    """Return the name and compute capability of a CUDA device, or raise BackendUnavailableError."""
    try:
        cudart = _cudart()
    except ImportError:
        try:
            import pycuda.driver as drv  # type: ignore[import-not-found]
        except ImportError as exc:
            raise BackendUnavailableError("neither cuda-python nor pycuda is installed (pip install '.[gpu]')") from exc
        try:
            drv.init()
            dev = drv.Device(index)
            major, minor = dev.compute_capability()
            return DeviceInfo(dev.name(), f"{major}.{minor}")
        except drv.Error as exc:
            raise BackendUnavailableError(f"no usable CUDA device: {exc}") from exc
    try:
        count = _check(cudart.cudaGetDeviceCount())
    except Exception as exc:
        raise BackendUnavailableError(f"no usable CUDA device: {exc}") from exc
    if count <= index:
        raise BackendUnavailableError(f"no CUDA device {index} (found {count})")
    props = _check(cudart.cudaGetDeviceProperties(index))
    name = props.name.decode() if isinstance(props.name, bytes) else str(props.name)
    return DeviceInfo(name.rstrip("\x00"), f"{props.major}.{props.minor}")


class CudaBuffers:
    """Device buffers and a stream via cuda-python: allocate, copy host<->device, synchronise."""

    def __init__(self) -> None:
        self.cudart = _cudart()
        self.stream = _check(self.cudart.cudaStreamCreate())
        self.pointers: list[int] = []

    def alloc(self, nbytes: int) -> int:
        ptr = int(_check(self.cudart.cudaMalloc(nbytes)))
        self.pointers.append(ptr)
        return ptr

    def to_device(self, ptr: int, host: Any) -> None:
        kind = self.cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
        _check(self.cudart.cudaMemcpyAsync(ptr, host.ctypes.data, host.nbytes, kind, self.stream))

    def to_host(self, host: Any, ptr: int) -> None:
        kind = self.cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        _check(self.cudart.cudaMemcpyAsync(host.ctypes.data, ptr, host.nbytes, kind, self.stream))

    def synchronize(self) -> None:
        _check(self.cudart.cudaStreamSynchronize(self.stream))

    @property
    def stream_handle(self) -> int:
        return int(self.stream)

    def close(self) -> None:
        for ptr in self.pointers:
            self.cudart.cudaFree(ptr)
        self.pointers.clear()
        self.cudart.cudaStreamDestroy(self.stream)
