"""Backend selection: which model file and which engine run a given ``--model`` on this machine."""

from __future__ import annotations

import importlib.resources
from pathlib import Path

from ccstereo.runtime.backend import Backend
from ccstereo.runtime.errors import BackendUnavailableError, ModelMetadataError

BACKENDS = ("auto", "onnxruntime", "openvino", "tensorrt", "torch")
PRECISIONS = ("auto", "fp32", "bf16")
AUTO_BF16_MIN_SNR_DB = 35.0  # auto picks bf16 only above this measured SNR (users may ask for >= 30 dB)
DEFAULT_CPU_BATCH = 32


def default_model_path() -> Path:
    """Return the bundled default model, or raise ModelMetadataError when this install has none."""
    candidate = Path(str(importlib.resources.files("ccstereo.runtime") / "assets" / "default" / "model.onnx"))
    if not candidate.is_file():
        raise ModelMetadataError(
            "this install has no bundled default model; pass --model (an exported folder, .onnx or .plan)"
        )
    return candidate


def _cuda_provider_available() -> bool:
    import onnxruntime as ort

    return "CUDAExecutionProvider" in ort.get_available_providers()


def _plans(folder: Path) -> list[Path]:
    return sorted(folder.glob("model.*.plan"))


def load_backend(
    model: Path | None,
    backend: str = "auto",
    batch_size: int | None = None,
    threads: int | None = None,
    precision: str = "auto",
) -> tuple[Backend, str]:
    """Return (backend, why it was chosen) for ``model`` (folder, .onnx, .plan or checkpoint for torch)."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    model = default_model_path() if model is None else Path(model)
    if not model.exists():
        raise ModelMetadataError(f"{model}: no such model")
    if backend == "torch":
        from ccstereo.torch_backend import TorchBackend  # outside the runtime package: the one torch path

        return TorchBackend.from_checkpoint(model, batch_size or DEFAULT_CPU_BATCH), "PyTorch reference (requested)"
    if model.suffix == ".plan":
        return _tensorrt(model), "TensorRT engine given"
    if backend in ("auto", "tensorrt") and model.is_dir():
        errors = []
        for plan in _plans(model):
            try:
                return _tensorrt(plan), f"TensorRT engine {plan.name} matches this machine"
            except BackendUnavailableError as exc:
                errors.append(str(exc))
            except Exception as exc:  # noqa: BLE001 - a mismatched engine: try the next, report below
                errors.append(str(exc))
        if backend == "tensorrt":
            raise BackendUnavailableError(f"{model}: no usable TensorRT engine ({'; '.join(errors) or 'none built'})")
    elif backend == "tensorrt":
        raise BackendUnavailableError(f"{model}: --backend tensorrt needs an exported folder or a .plan")
    from ccstereo.runtime.onnxruntime_backend import OnnxRuntimeBackend

    gpu = _cuda_provider_available()
    cpu_onnx = model / "model.onnx" if model.is_dir() else model
    if backend == "openvino" or (backend == "auto" and not gpu and precision != "fp32"):
        chosen_ov = _openvino(cpu_onnx, backend, precision, batch_size, threads)
        if chosen_ov is not None:
            return chosen_ov
    if precision == "bf16" and backend != "openvino":
        raise BackendUnavailableError("bf16 runs on the CPU through OpenVINO: install '.[cpu]' on a BF16 CPU")
    if model.is_dir():
        name = "model.fp16.onnx" if gpu and (model / "model.fp16.onnx").is_file() else "model.onnx"
        onnx_path = model / name
    else:
        onnx_path = model
    provider = "cuda" if gpu else "cpu"
    chosen = OnnxRuntimeBackend(
        onnx_path, provider=provider, max_batch=batch_size or DEFAULT_CPU_BATCH, threads=threads
    )
    why = "onnxruntime CUDA" if gpu else "onnxruntime CPU (no GPU provider here)"
    return chosen, why


def _tensorrt(plan: Path) -> Backend:
    try:
        import tensorrt  # noqa: F401
    except ImportError as exc:
        raise BackendUnavailableError("tensorrt is not installed (pip install '.[gpu]')") from exc
    from ccstereo.runtime.tensorrt_backend import TensorRTBackend

    return TensorRTBackend(plan)


def _openvino(onnx_path: Path, backend: str, precision: str, batch_size: int | None, threads: int | None):
    """Return (OpenVINO backend, reason), or None when auto should fall back to onnxruntime."""
    from ccstereo.runtime.model_info import read_onnx_info
    from ccstereo.runtime.openvino_backend import OpenVINOBackend, openvino_bf16_capable

    capable = openvino_bf16_capable()
    if backend == "auto":
        if not capable:
            return None
        info = read_onnx_info(onnx_path)
        measured = info.measured_snr_db.get("bf16", float("-inf"))
        if measured < AUTO_BF16_MIN_SNR_DB:
            return None
        why = f"OpenVINO bf16 on this CPU's AMX/AVX512-BF16 (measured {measured:.1f} dB vs fp32 at export)"
        return OpenVINOBackend(onnx_path, "bf16", batch_size or DEFAULT_CPU_BATCH, threads, info), why
    wanted = "bf16" if precision == "bf16" or (precision == "auto" and capable) else "f32"
    chosen = OpenVINOBackend(onnx_path, wanted, batch_size or DEFAULT_CPU_BATCH, threads)
    return chosen, f"OpenVINO {wanted} (requested)"
