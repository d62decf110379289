"""Backend selection: which model file and which engine run a given ``--model`` on this machine.

Order for ``--backend auto``: a TensorRT engine built for this GPU; else onnxruntime CUDA with the FP16 graph;
on a CPU with ``--precision auto``, the engine measured fastest among those that reproduce the folder's shipped
fp32 outputs on this CPU (``tuning``; measured once per machine and cached). Without tuning (``--no-tune``, or no
verification file): OpenVINO at a reduced precision when this CPU has the unit for it and its accuracy passes
(``precision_policy``; checked on this CPU when the folder ships verification windows, else as measured at
export); else onnxruntime fp32.
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path

from ccstereo.runtime import verification
from ccstereo.runtime.backends.precision_policy import MIN_OFFERED_SNR_DB, auto_may_pick, describe, offered
from ccstereo.runtime.backends.protocol import Backend
from ccstereo.runtime.errors import BackendUnavailableError, ModelMetadataError
from ccstereo.runtime.model_info import ModelInfo, read_onnx_info
from ccstereo.runtime.options import LoadOptions

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


def load_backend(model: Path | None, options: LoadOptions | None = None) -> tuple[Backend, str]:
    """Return (backend, why it was chosen) for ``model`` (folder, .onnx, .plan or checkpoint for torch)."""
    options = options or LoadOptions()
    model = default_model_path() if model is None else Path(model)
    if not model.exists():
        raise ModelMetadataError(f"{model}: no such model")
    if options.backend == "torch":
        from ccstereo.runtime.backends.torch import TorchBackend

        batch = options.batch_size or DEFAULT_CPU_BATCH
        return TorchBackend.from_checkpoint(model, batch), "PyTorch reference (requested)"
    chosen = _tensorrt_choice(model, options.backend)
    if chosen is not None:
        return chosen
    gpu = _cuda_provider_available()
    folder = _exported_folder(model)
    if options.backend == options.precision == "auto" and not gpu and options.tune is not False and folder:
        tuned = _tuned(folder, options)
        if tuned is not None:
            return tuned
    if options.backend == "openvino" or (options.backend == "auto" and not gpu and options.precision != "fp32"):
        chosen = _openvino(model, options)
        if chosen is not None:
            return chosen
    if options.precision in ("bf16", "int8") and options.backend != "openvino":
        raise BackendUnavailableError(
            f"{options.precision} runs on the CPU through OpenVINO: install '.[cpu]' (bf16 needs a BF16 CPU)"
        )
    return _onnxruntime(model, gpu, options)


def _exported_folder(model: Path) -> Path | None:
    """Return the exported folder ``model`` is (or whose model.onnx it names), or None for a lone graph file."""
    if model.is_dir():
        return model
    return model.parent if model.name == "model.onnx" else None


def _tuned(folder: Path, options: LoadOptions) -> tuple[Backend, str] | None:
    """Return the measured choice (cached or measured now), or None when the folder cannot be measured."""
    from ccstereo.runtime.backends.tuning import tune

    if not (folder / verification.FILE_NAME).is_file():
        return None
    tuned = tune(folder, options.batch_size, options.threads, remeasure=options.tune is True)
    return tuned.backend, tuned.reason


def _checked_here(backend: Backend, model: Path, asked: bool) -> tuple[bool, str]:
    """Return (whether ``backend`` may run, the figures in words) from its run of the verification windows
    shipped beside ``model`` on this CPU; (True, '') when none are shipped (the export's figure stands).

    Asked for by name, a precision must reach the floor (30 dB); chosen by auto, the auto gate."""
    folder = model if model.is_dir() else model.parent
    path = folder / verification.FILE_NAME
    if not path.is_file():
        return True, ""
    shipped = verification.load(path, backend.info.config)
    accuracy, _ = verification.check(backend.run, shipped, backend.max_batch)
    ok = offered(accuracy.snr_db) if asked else auto_may_pick(accuracy.snr_db, accuracy.worst_metric_change)
    return ok, f"{accuracy.words()} vs the shipped fp32 outputs on this CPU"


def _asked(backend: Backend, path: Path, info: ModelInfo, precision: str) -> tuple[Backend, str]:
    """A reduced precision asked for by name: run it if it reaches the floor on this CPU, else refuse saying why."""
    ok, here = _checked_here(backend, path, asked=True)
    if not ok:
        raise BackendUnavailableError(f"{path}: {precision} on this CPU: {here} (< {MIN_OFFERED_SNR_DB:g} dB): refused")
    return backend, f"OpenVINO {precision} (requested; {here or _measured(info, precision)[1]})"


def _auto_pick(make, path: Path, info: ModelInfo, precision: str) -> tuple[Backend, str] | None:
    """A reduced precision auto may use: measured accurate enough at export and again on this CPU, or None."""
    ok, words = _measured(info, precision)
    if not ok:
        return None
    backend = make()
    ok, here = _checked_here(backend, path, asked=False)
    return (backend, here or f"{words}, at export") if ok else None


def _tensorrt_choice(model: Path, backend: str) -> tuple[Backend, str] | None:
    """Return a TensorRT engine for this machine when one is given or built (auto / tensorrt), else None."""
    if model.suffix == ".plan":
        return _tensorrt(model), "TensorRT engine given"
    if backend not in ("auto", "tensorrt"):
        return None
    if not model.is_dir():
        if backend == "tensorrt":
            raise BackendUnavailableError(f"{model}: --backend tensorrt needs an exported folder or a .plan")
        return None
    errors = []
    for plan in sorted(model.glob("model.*.plan")):
        try:
            return _tensorrt(plan), f"TensorRT engine {plan.name} matches this machine"
        except Exception as exc:  # noqa: BLE001 - a mismatched or unusable engine: try the next, report below
            errors.append(str(exc))
    if backend == "tensorrt":
        raise BackendUnavailableError(f"{model}: no usable TensorRT engine ({'; '.join(errors) or 'none built'})")
    return None


def _tensorrt(plan: Path) -> Backend:
    try:
        import tensorrt  # noqa: F401
    except ImportError as exc:
        raise BackendUnavailableError("tensorrt is not installed (pip install '.[gpu]')") from exc
    from ccstereo.runtime.backends.tensorrt import TensorRTBackend

    return TensorRTBackend(plan)


def _onnxruntime(model: Path, gpu: bool, options: LoadOptions) -> tuple[Backend, str]:
    from ccstereo.runtime.backends.onnxruntime import OnnxRuntimeBackend

    if model.is_dir():
        name = "model.fp16.onnx" if gpu and (model / "model.fp16.onnx").is_file() else "model.onnx"
        onnx_path = model / name
    else:
        onnx_path = model
    batch = options.batch_size or DEFAULT_CPU_BATCH
    chosen = OnnxRuntimeBackend(onnx_path, "cuda" if gpu else "cpu", batch, options.threads)
    return chosen, "onnxruntime CUDA" if gpu else "onnxruntime CPU (no GPU provider here)"


def _int8_graph(model: Path) -> tuple[Path, ModelInfo] | None:
    """Return the int8 graph that belongs to ``model`` (the file itself, or model.int8.onnx beside it) and its
    metadata, or None."""
    if model.is_file():
        info = read_onnx_info(model)
        if info.precision == "int8":
            return model, info
    candidate = (model if model.is_dir() else model.parent) / "model.int8.onnx"
    return (candidate, read_onnx_info(candidate)) if candidate.is_file() and candidate != model else None


def _measured(info: ModelInfo, precision: str) -> tuple[bool, str]:
    """Return (whether auto may pick ``precision`` for this model file, the measured figures in words)."""
    snr = info.measured_snr_db.get(precision)
    worst = info.measured_worst_metric_change.get(precision)
    return auto_may_pick(snr, worst), describe(snr, worst, precision)


def _openvino(model: Path, options: LoadOptions) -> tuple[Backend, str] | None:
    """Return (OpenVINO backend, reason), or None when auto should fall back to onnxruntime.

    Precision auto (with --backend auto or openvino): int8 (model.int8.onnx) where the CPU has an int8
    dot-product unit and the export measured it accurate enough, else bf16 where the CPU has native BF16 and it
    measured accurate enough; else onnxruntime (auto) or OpenVINO fp32 (--backend openvino).
    """
    from ccstereo.runtime.backends.openvino import OpenVINOBackend
    from ccstereo.runtime.cpu_features import int8_dot_product, native_bf16

    try:
        import openvino  # noqa: F401
    except ImportError as exc:
        if options.backend == "auto" and options.precision == "auto":
            return None
        raise BackendUnavailableError("openvino is not installed (pip install '.[cpu]')") from exc
    precision, cpu_onnx = options.precision, model / "model.onnx" if model.is_dir() else model

    def build(path: Path, hint: str, info: ModelInfo | None = None) -> OpenVINOBackend:
        return OpenVINOBackend(path, hint, options.batch_size or DEFAULT_CPU_BATCH, options.threads, info)

    dot = int8_dot_product()
    # An int8 graph is looked for when asked, when auto could pick it, or to see whether the given file is one.
    look_for_int8 = precision == "int8" or (precision == "auto" and (dot is not None or model.is_file()))
    int8 = _int8_graph(model) if look_for_int8 else None
    if precision == "int8":
        if int8 is None:
            raise BackendUnavailableError(
                f"{model}: no model.int8.onnx beside it; export with ccs-export --int8 on (and --calibrate VIDEO)"
            )
        return _asked(build(int8[0], "int8", int8[1]), int8[0], int8[1], "int8")
    if int8 is not None and int8[0] == cpu_onnx:
        return build(int8[0], "int8", int8[1]), "OpenVINO int8 (an int8 graph was given)"
    if precision == "bf16":
        info = read_onnx_info(cpu_onnx)
        return _asked(build(cpu_onnx, "bf16", info), cpu_onnx, info, "bf16")
    if precision == "fp32":
        return build(cpu_onnx, "fp32"), "OpenVINO fp32 (requested)"
    if int8 is not None and dot is not None:
        found = _auto_pick(lambda: build(int8[0], "int8", int8[1]), int8[0], int8[1], "int8")
        if found is not None:
            return found[0], f"OpenVINO int8 on this CPU's {dot.upper()} ({found[1]})"
    if native_bf16():
        info = read_onnx_info(cpu_onnx)
        found = _auto_pick(lambda: build(cpu_onnx, "bf16", info), cpu_onnx, info, "bf16")
        if found is not None:
            return found[0], f"OpenVINO bf16 on this CPU's native BF16 ({found[1]})"
    if options.backend == "auto":
        return None
    return build(cpu_onnx, "fp32"), "OpenVINO fp32 (no reduced precision measured accurate enough for auto on this CPU)"
