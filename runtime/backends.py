"""Backend selection: which model file and which engine run a given ``--model`` on this machine."""

from __future__ import annotations

import importlib.resources
from pathlib import Path

from ccstereo.runtime.backend import Backend
from ccstereo.runtime.errors import BackendUnavailableError, ModelMetadataError

BACKENDS = ("auto", "onnxruntime", "tensorrt", "torch")
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
    model: Path | None, backend: str = "auto", batch_size: int | None = None, threads: int | None = None
) -> tuple[Backend, str]:
    """Return (backend, why it was chosen) for ``model`` (folder, .onnx, .plan or checkpoint for torch)."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    model = default_model_path() if model is None else Path(model)
    if not model.exists():
        raise ModelMetadataError(f"{model}: no such model")
    if backend == "torch":
        from ccstereo.torch_backend import TorchBackend  # outside the runtime package: the one torch path

        return TorchBackend(model, batch_size or DEFAULT_CPU_BATCH), "PyTorch reference (requested)"
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
