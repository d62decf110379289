"""Backend selection: which model file and which engine run a given ``--model`` on this machine."""

from __future__ import annotations

import importlib.resources
from pathlib import Path

from ccstereo.runtime.backend import Backend
from ccstereo.runtime.errors import BackendUnavailableError, ModelMetadataError, OptionError
from ccstereo.runtime.model_info import ModelInfo, read_onnx_info

BACKENDS = ("auto", "onnxruntime", "openvino", "tensorrt", "torch")
PRECISIONS = ("auto", "fp32", "bf16", "int8")
# auto picks a reduced precision only at or above this measured SNR vs fp32 and with every paper metric within
# AUTO_MAX_METRIC_CHANGE of fp32 on the export's verification set (users may ask for one down to 30 dB)
AUTO_MIN_SNR_DB = 35.0
AUTO_MAX_METRIC_CHANGE = 0.02
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
        raise OptionError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if precision not in PRECISIONS:
        raise OptionError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    if batch_size is not None and batch_size < 1:
        raise OptionError(f"batch size must be at least 1, got {batch_size}")
    if threads is not None and threads < 1:
        raise OptionError(f"threads must be at least 1, got {threads}")
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
        chosen_ov = _openvino(model, cpu_onnx, backend, precision, batch_size, threads)
        if chosen_ov is not None:
            return chosen_ov
    if precision in ("bf16", "int8") and backend != "openvino":
        raise BackendUnavailableError(
            f"{precision} runs on the CPU through OpenVINO: install '.[cpu]' (bf16 needs a BF16 CPU)"
        )
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


def _int8_graph(model: Path) -> tuple[Path, ModelInfo] | None:
    """Return the int8 graph that belongs to ``model`` (the file itself, or model.int8.onnx beside it) and its
    metadata, or None."""
    if model.is_file():
        info = read_onnx_info(model)
        if info.precision == "int8":
            return model, info
    candidate = (model if model.is_dir() else model.parent) / "model.int8.onnx"
    return (candidate, read_onnx_info(candidate)) if candidate.is_file() and candidate != model else None


def _measured(info, precision: str) -> tuple[bool, str]:
    """Return (whether auto may pick ``precision`` for this model file, the measured figures in words)."""
    snr = info.measured_snr_db.get(precision)
    worst = info.measured_worst_metric_change.get(precision)
    if snr is None:
        return False, f"{precision} accuracy not measured at export"
    words = f"measured {snr:.1f} dB vs fp32" + ("" if worst is None else f", paper metrics within {worst:.1%}")
    ok = snr >= AUTO_MIN_SNR_DB and (worst is None or worst <= AUTO_MAX_METRIC_CHANGE)
    return ok, words


def _openvino(model: Path, cpu_onnx: Path, backend: str, precision: str, batch_size: int | None, threads: int | None):
    """Return (OpenVINO backend, reason), or None when auto should fall back to onnxruntime.

    Precision auto (with --backend auto or openvino): int8 (model.int8.onnx) where the CPU has an int8
    dot-product unit and the export measured it accurate enough, else bf16 where the CPU has native BF16 and it
    measured accurate enough; else onnxruntime (auto) or OpenVINO f32 (--backend openvino).
    """
    from ccstereo.runtime.openvino_backend import OpenVINOBackend, cpu_int8_dot_product, openvino_bf16_capable

    try:
        import openvino  # noqa: F401
    except ImportError as exc:
        if backend == "auto" and precision == "auto":
            return None
        raise BackendUnavailableError("openvino is not installed (pip install '.[cpu]')") from exc
    batch = batch_size or DEFAULT_CPU_BATCH
    dot = cpu_int8_dot_product()
    # An int8 graph is looked for when asked, when auto could pick it, or to see whether the given file is one.
    look_for_int8 = precision == "int8" or (precision == "auto" and (dot is not None or model.is_file()))
    int8 = _int8_graph(model) if look_for_int8 else None
    if precision == "int8":
        if int8 is None:
            raise BackendUnavailableError(
                f"{model}: no model.int8.onnx beside it; export with ccs-export --int8 on (and --calibrate VIDEO)"
            )
        _, words = _measured(int8[1], "int8")
        return OpenVINOBackend(int8[0], "int8", batch, threads, int8[1]), f"OpenVINO int8 (requested; {words})"
    if int8 is not None and int8[0] == cpu_onnx:
        return OpenVINOBackend(int8[0], "int8", batch, threads, int8[1]), "OpenVINO int8 (an int8 graph was given)"
    if precision in ("bf16", "fp32"):
        wanted = "bf16" if precision == "bf16" else "f32"
        return OpenVINOBackend(cpu_onnx, wanted, batch, threads), f"OpenVINO {wanted} (requested)"
    if int8 is not None and dot is not None:
        ok, words = _measured(int8[1], "int8")
        if ok:
            why = f"OpenVINO int8 on this CPU's {dot.upper()} ({words}, at export)"
            return OpenVINOBackend(int8[0], "int8", batch, threads, int8[1]), why
    if openvino_bf16_capable():
        info = read_onnx_info(cpu_onnx)
        ok, words = _measured(info, "bf16")
        if ok:
            why = f"OpenVINO bf16 on this CPU's native BF16 ({words}, at export)"
            return OpenVINOBackend(cpu_onnx, "bf16", batch, threads, info), why
    if backend == "auto":
        return None
    chosen = OpenVINOBackend(cpu_onnx, "f32", batch, threads)
    return chosen, "OpenVINO f32 (no reduced precision measured accurate enough for auto on this CPU)"
