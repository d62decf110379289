"""Backend selection: which model file and which engine run a given ``--model`` on this machine.

Order for ``--backend auto``: a TensorRT engine built for this GPU; else onnxruntime CUDA with the FP16 graph;
else the CPU, where ``choose`` is the one rule: with ``--precision auto`` the engine measured fastest among those
that reproduce the folder's shipped fp32 outputs on this CPU (``tuning``: evidence measured once per machine and
cached); without tuning (``--no-tune``, or no verification file) OpenVINO at a reduced precision when this CPU has
the unit for it and its evidence passes (checked on this CPU when the folder ships verification windows, else as
measured at export), else onnxruntime fp32. Whatever is chosen is built once, by ``choose.build``.
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path
from typing import NamedTuple

from ccstereo.runtime import verification
from ccstereo.runtime.backends.choose import (
    Candidate,
    Evidence,
    build,
    choose,
    cpu_candidates,
    evidence_at_export,
    evidence_here,
    folder_of,
    graph_of,
    openvino_installed,
)
from ccstereo.runtime.backends.protocol import Backend
from ccstereo.runtime.errors import BackendUnavailableError, ModelMetadataError
from ccstereo.runtime.options import LoadOptions


def default_model_path() -> Path:
    """Return the bundled default model, or raise ModelMetadataError when this install has none."""
    candidate = Path(str(importlib.resources.files("ccstereo.runtime") / "assets" / "default" / "model.onnx"))
    if not candidate.is_file():
        raise ModelMetadataError(
            "this install has no bundled default model; pass --model (an exported folder, .onnx or .plan)"
        )
    return candidate


def _cuda_provider_available() -> bool:
    """Whether onnxruntime can run on CUDA here: only a GPU build can (the CPU wheel is not even imported for it)."""
    from ccstereo.runtime.backends.tuning_cache import installed_version

    if installed_version("onnxruntime-gpu") == "absent":
        return False
    import onnxruntime as ort

    return "CUDAExecutionProvider" in ort.get_available_providers()


class Chosen(NamedTuple):
    backend: Backend
    reason: str  # why, in words
    alone_ms_per_window: float | None = None  # the tuner's time for it alone at its batch and threads (tuned only)


def load_backend(model: Path | None, options: LoadOptions | None = None) -> Chosen:
    """Return the engine for ``model`` (folder, .onnx, .plan or checkpoint for torch), why, and (when the tuner
    measured it) its time per window alone."""
    options = options or LoadOptions()
    model = default_model_path() if model is None else Path(model)
    if not model.exists():
        raise ModelMetadataError(f"{model}: no such model")
    if options.backend == "torch":
        torch_candidate = Candidate("torch", "fp32", model.name)
        return Chosen(build(model.parent, torch_candidate, options.batch_size), "PyTorch reference (requested)")
    chosen = _tensorrt_choice(model, options.backend)
    if chosen is not None:
        return chosen
    if options.backend == "openvino" or not _cuda_provider_available():
        return _cpu(model, options)
    if options.precision in ("bf16", "int8"):
        raise BackendUnavailableError(f"{options.precision} runs on the CPU through OpenVINO: use --backend openvino")
    return _onnxruntime_cuda(model, options)


def _cpu(model: Path, options: LoadOptions) -> Chosen:
    """The CPU engine ``choose`` takes for ``model`` under ``options``, built once."""
    if options.backend == "openvino" and not openvino_installed():
        raise BackendUnavailableError("openvino is not installed (pip install '.[cpu]')")
    folder = _exported_folder(model)
    measurable = folder is not None and (folder / verification.FILE_NAME).is_file()
    if options.backend == options.precision == "auto" and options.tune is not False and folder and measurable:
        from ccstereo.runtime.backends.tuning import tune

        tuned = tune(folder, options.batch_size, options.threads, remeasure=options.tune is True)
        engine = build(folder, tuned.candidate, tuned.batch, tuned.threads)
        return Chosen(engine, tuned.reason, tuned.kept.ms_per_window)
    from ccstereo.runtime.cpu_features import int8_dot_product

    judge = _Here(model, options)
    policy = (options.backend, options.precision)
    choice = choose(policy, cpu_candidates(model), judge, int8_dot_product(), model)
    return Chosen(judge.engine(choice.candidate), choice.reason)


class _Here:
    """Evidence without timings: a reduced precision as the export measured it and, where the folder ships
    verification windows, as it computes on this CPU (the engine built for that check is the one that runs)."""

    timed = False

    def __init__(self, model: Path, options: LoadOptions) -> None:
        self.folder, self.options = folder_of(model), options
        self.engines: dict[Candidate, Backend] = {}

    def engine(self, candidate: Candidate) -> Backend:
        if candidate not in self.engines:
            self.engines[candidate] = build(self.folder, candidate, self.options.batch_size, self.options.threads)
        return self.engines[candidate]

    def __call__(self, candidate: Candidate) -> Evidence:
        exported = evidence_at_export(self.folder, candidate)
        if not candidate.reduced:
            return exported
        if self.options.precision == "auto" and not exported.passes_auto():
            return exported  # auto needs the export's figure AND this CPU's: no engine is built for a failed one
        if not (self.folder / verification.FILE_NAME).is_file():
            return exported  # nothing to check it against here: no engine is built for it
        try:  # a kept compiled graph loads at once and is compiled again on first use: the check's run
            return evidence_here(self.engine(candidate), self.folder) or exported
        except (ModelMetadataError, RuntimeError):
            if self.options.precision != "auto":
                raise  # asked for by name: OpenVINO's reason is the answer
            return Evidence(None, None, "not compiled by OpenVINO on this CPU")  # auto goes on to the next


def _exported_folder(model: Path) -> Path | None:
    """Return the exported folder ``model`` is (or whose model.onnx it names), or None for a lone graph file."""
    if model.is_dir():
        return model
    return model.parent if model.name == "model.onnx" else None


def _tensorrt_choice(model: Path, backend: str) -> Chosen | None:
    """Return a TensorRT engine for this machine when one is given or built (auto / tensorrt), else None."""
    if model.suffix == ".plan":
        return Chosen(_tensorrt(model), "TensorRT engine given")
    if backend not in ("auto", "tensorrt"):
        return None
    if not model.is_dir():
        if backend == "tensorrt":
            raise BackendUnavailableError(f"{model}: --backend tensorrt needs an exported folder or a .plan")
        return None
    errors = []
    for plan in sorted(model.glob("model.*.plan")):
        try:
            return Chosen(_tensorrt(plan), f"TensorRT engine {plan.name} matches this machine")
        except Exception as exc:  # noqa: BLE001 - a mismatched or unusable engine: try the next, report below
            errors.append(str(exc))
    if backend == "tensorrt":
        raise BackendUnavailableError(f"{model}: no usable TensorRT engine ({'; '.join(errors) or 'none built'})")
    return None


def _tensorrt(plan: Path) -> Backend:
    # ccs-export builds FP16 plans; the engine reads its own sidecar and reports what it was built as (.precision)
    return build(plan.parent, Candidate("tensorrt", "fp16", plan.name))


def _onnxruntime_cuda(model: Path, options: LoadOptions) -> Chosen:
    fp16 = model.is_dir() and (model / "model.fp16.onnx").is_file()
    graph = "model.fp16.onnx" if fp16 else graph_of(model)
    candidate = Candidate("onnxruntime-cuda", "fp16" if fp16 else "fp32", graph)
    return Chosen(build(folder_of(model), candidate, options.batch_size, options.threads), "onnxruntime CUDA")
