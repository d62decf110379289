"""The one CPU engine chooser: the candidates a model can run as, the evidence for each, the rule, the builder.

- ``cpu_candidates(model)``: onnxruntime fp32 first (the baseline), then with OpenVINO installed OpenVINO int8
  (where an int8 graph is given or lies beside), bf16 and fp32. Every one runs on any x86 CPU (OpenVINO emulates a
  missing unit), so each can be asked for by name; ``auto`` takes a reduced one only where the CPU has its unit.
- ``Evidence``: a candidate's accuracy vs the fp32 graph — measured on THIS CPU against the shipped verification
  outputs (``evidence_here``), else as the export measured it (``evidence_at_export``) — and, when the tuner
  timed it, its ms per window.
- ``choose(policy, candidates, evidence)``: the rule. A precision asked for by name runs if its evidence reaches
  the floor (30 dB), else it is refused with the figure. ``auto`` takes the fastest timed candidate that passes the
  auto gate (>= 35 dB, paper metrics within 2 %); untimed, it prefers int8 where the CPU has an int8 dot-product
  unit, then bf16 on native BF16, then fp32 — each only if its evidence passes the gate.
- ``build(folder, candidate, batch, threads)``: the engine, exactly as given. Engines do no gating of their own;
  the exporter measures the reduced precisions through this same builder.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from ccstereo.runtime.backends.precision_policy import MIN_OFFERED_SNR_DB, auto_may_pick, describe, offered
from ccstereo.runtime.backends.protocol import DEFAULT_BATCH, Backend
from ccstereo.runtime.errors import BackendUnavailableError, ModelMetadataError
from ccstereo.runtime.model_info import read_onnx_info

INT8_FILE = "model.int8.onnx"


@dataclass(frozen=True)
class Candidate:
    backend: str  # onnxruntime | openvino
    precision: str  # fp32 | bf16 | int8 (bf16 and int8: OpenVINO)
    file: str  # the graph it runs, relative to the model's folder

    @property
    def label(self) -> str:
        return f"{'OpenVINO' if self.backend == 'openvino' else 'onnxruntime'} {self.precision}"

    @property
    def reduced(self) -> bool:
        return self.precision in ("bf16", "int8")


@dataclass(frozen=True)
class Evidence:
    """What is known of a candidate: accuracy vs fp32 (``where``: 'on this CPU' or 'at export') and speed."""

    snr_db: float | None
    worst_metric_change: float | None
    where: str
    ms_per_window: float | None = None
    words: str = ""  # the accuracy in words, when measured here

    def passes_auto(self) -> bool:
        return auto_may_pick(self.snr_db, self.worst_metric_change)

    def offered(self) -> bool:
        return offered(self.snr_db)

    def describe(self, precision: str) -> str:
        if self.words:
            return f"{self.words} vs the shipped fp32 outputs {self.where}"
        return describe(self.snr_db, self.worst_metric_change, precision) + (
            f", {self.where}" if self.snr_db is not None else ""
        )


@dataclass(frozen=True)
class Choice:
    candidate: Candidate
    reason: str


def folder_of(model: Path) -> Path:
    return model if model.is_dir() else model.parent


def graph_of(model: Path) -> str:
    """Return the file name of the fp32 (or given) graph of ``model`` inside its folder."""
    return "model.onnx" if model.is_dir() else model.name


def cpu_candidates(model: Path) -> list[Candidate]:
    """Return what ``model`` (an exported folder or one graph file) can run as on this CPU, the baseline first."""
    graph = graph_of(model)
    given_int8 = not model.is_dir() and read_onnx_info(model).precision == "int8"
    found = [Candidate("onnxruntime", "int8" if given_int8 else "fp32", graph)]
    if not openvino_installed():
        return found
    if given_int8:
        return [Candidate("openvino", "int8", graph), *found]
    if (folder_of(model) / INT8_FILE).is_file():
        found.append(Candidate("openvino", "int8", INT8_FILE))
    found.append(Candidate("openvino", "bf16", graph))  # any CPU: OpenVINO emulates a missing BF16 unit
    found.append(Candidate("openvino", "fp32", graph))
    return found


def openvino_installed() -> bool:
    from ccstereo.runtime.openvino_import import installed

    return installed()


def build(
    folder: Path, candidate: Candidate, batch: int | None = None, threads: int | None = None, keep: bool = True
) -> Backend:
    """Return the engine ``candidate`` names, as given: no accuracy gate is applied here. The one place an engine
    class is constructed (CPU engines, and the GPU ones ``select`` asks for: onnxruntime-cuda, tensorrt, torch).

    ``keep``: OpenVINO's compiled graph is kept in the user cache (``tuning_cache.compiled_blob``) and imported
    on the next start instead of compiled (the exporter, measuring graphs it has just written, does not keep)."""
    path, batch = folder / candidate.file, batch or DEFAULT_BATCH
    if candidate.backend in ("onnxruntime", "onnxruntime-cuda"):
        from ccstereo.runtime.backends.onnxruntime import OnnxRuntimeBackend

        return OnnxRuntimeBackend(path, "cuda" if candidate.backend.endswith("cuda") else "cpu", batch, threads)
    if candidate.backend == "openvino":
        from ccstereo.runtime.backends.openvino import OpenVINOBackend
        from ccstereo.runtime.backends.tuning_cache import compiled_blob

        blob = compiled_blob(path, candidate.precision, threads) if keep else None
        return OpenVINOBackend(path, candidate.precision, batch, threads, compiled=blob)
    if candidate.backend == "tensorrt":
        try:
            import tensorrt  # noqa: F401
        except ImportError as exc:
            raise BackendUnavailableError("tensorrt is not installed (pip install '.[gpu]')") from exc
        from ccstereo.runtime.backends.tensorrt import TensorRTBackend

        return TensorRTBackend(path)
    if candidate.backend == "torch":
        from ccstereo.runtime.backends.torch import TorchBackend

        return TorchBackend.from_checkpoint(path, batch)
    raise ValueError(f"no engine {candidate.backend!r}")


def evidence_at_export(folder: Path, candidate: Candidate) -> Evidence:
    """Return the accuracy the export measured for ``candidate`` (fp32 is the reference itself)."""
    if candidate.precision == "fp32" or (candidate.backend == "onnxruntime" and candidate.precision == "int8"):
        return Evidence(float("inf"), 0.0, "at export")
    info = read_onnx_info(folder / candidate.file)
    precision = candidate.precision
    return Evidence(info.measured_snr_db.get(precision), info.measured_worst_metric_change.get(precision), "at export")


def evidence_here(backend: Backend, folder: Path) -> Evidence | None:
    """Return ``backend``'s accuracy on this CPU against the verification outputs shipped in ``folder``, or None
    when none are shipped."""
    from ccstereo.runtime import verification

    path = folder / verification.FILE_NAME
    if not path.is_file():
        return None
    shipped = verification.load(path, backend.info.config)
    accuracy, _ = verification.check(backend.run, shipped, backend.max_batch)
    return Evidence(accuracy.snr_db, accuracy.worst_metric_change, "on this CPU", words=accuracy.words())


class Judge(Protocol):
    """Gives a candidate's evidence. ``timed``: the evidence includes timings (the tuner's), so auto takes the
    fastest candidate that passes; untimed, auto follows the CPU's units."""

    timed: bool

    def __call__(self, candidate: Candidate) -> Evidence: ...


@dataclass
class Known:
    """Evidence already gathered (the tuner's trials), as a judge."""

    evidence: dict[Candidate, Evidence]
    timed: bool = True

    def __call__(self, candidate: Candidate) -> Evidence:
        return self.evidence.get(candidate, Evidence(None, None, "not measured"))


def choose(policy: tuple[str, str], found: list[Candidate], judge: Judge, int8_unit: str | None, model: Path) -> Choice:
    """Return the candidate the policy (``backend``, ``precision`` as asked: a name or 'auto') takes, with the
    reason in words. ``judge`` gives a candidate's evidence (called only for the candidates the rule considers, in
    order); ``int8_unit`` is the CPU's int8 dot-product unit or None. Raises BackendUnavailableError, naming
    ``model``, when what was asked for by name cannot run here."""
    backend, precision = policy
    pool = [c for c in found if backend == "auto" or c.backend == backend]
    if precision in ("bf16", "int8"):
        return _asked(pool, precision, judge, model)
    if precision == "fp32":
        fp32 = [c for c in pool if c.precision == "fp32"]
        if not fp32:
            raise BackendUnavailableError(f"{model}: no {backend} fp32 engine here")
        return Choice(fp32[0], f"{fp32[0].label} (requested)")
    if judge.timed:
        return _fastest([(c, e) for c, e in ((c, judge(c)) for c in pool) if e.ms_per_window is not None], model)
    return _by_rule(pool, judge, int8_unit)


def _asked(pool: list[Candidate], precision: str, judge: Judge, model: Path) -> Choice:
    match = [c for c in pool if c.precision == precision and c.backend == "openvino"]
    if not match:
        if precision == "int8" and openvino_installed():
            raise BackendUnavailableError(
                f"{model}: no {INT8_FILE} beside it; export with ccs-export --int8 on (and --calibrate VIDEO)"
            )
        raise BackendUnavailableError(
            f"{precision} runs on the CPU through OpenVINO: install '.[cpu]' (bf16 needs a BF16 CPU)"
        )
    evidence = judge(match[0])
    path = folder_of(model) / match[0].file
    if evidence.snr_db is None:
        raise BackendUnavailableError(
            f"{path}: {precision} accuracy was not measured at export; re-export with openvino installed "
            "(ccs-export) or use --precision fp32"
        )
    if not evidence.offered():
        raise BackendUnavailableError(
            f"{path}: {precision} {evidence.where}: {evidence.snr_db:.1f} dB SNR vs fp32 "
            f"(< {MIN_OFFERED_SNR_DB:g} dB): not offered, refused"
        )
    return Choice(match[0], f"{match[0].label} (requested; {evidence.describe(precision)})")


def _fastest(timed: list[tuple[Candidate, Evidence]], model: Path) -> Choice:
    usable = [(c, e) for c, e in timed if e.passes_auto()]
    if not usable:
        raise BackendUnavailableError(
            f"{model}: no engine reproduces the shipped fp32 outputs on this CPU: "
            + "; ".join(f"{c.label}: {e.describe(c.precision)}" for c, e in timed)
        )
    best = min(usable, key=lambda ce: ce[1].ms_per_window or 0.0)
    return Choice(best[0], f"{best[0].label}: the fastest measured here that passes the auto gate")


def _by_rule(pool: list[Candidate], judge: Judge, int8_unit: str | None) -> Choice:
    from ccstereo.runtime.cpu_features import native_bf16

    if pool and all(c.precision == "int8" for c in pool):  # the graph given is an int8 graph: nothing to choose
        words = "an int8 graph was given" if pool[0].backend == "openvino" else "no GPU provider here"
        return Choice(pool[0], f"{pool[0].label} ({words})")
    for precision, unit in (("int8", int8_unit), ("bf16", "native BF16" if native_bf16() else None)):
        found = next((c for c in pool if c.precision == precision and c.backend == "openvino"), None)
        if found is None or unit is None:
            continue
        evidence = judge(found)
        if evidence.passes_auto():
            where = f"this CPU's {unit.upper() if precision == 'int8' else unit}"
            return Choice(found, f"OpenVINO {precision} on {where} ({evidence.describe(precision)})")
    fp32 = next((c for c in pool if c.precision == "fp32"), None)
    if fp32 is None:
        raise ModelMetadataError("no CPU engine for this model file")
    if fp32.backend == "openvino":
        return Choice(fp32, "OpenVINO fp32 (no reduced precision measured accurate enough for auto on this CPU)")
    return Choice(fp32, "onnxruntime CPU (no GPU provider here)")
