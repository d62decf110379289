"""Reduced CPU precisions, measured at export on this CPU against the fp32 graph: OpenVINO bf16 of
``model.onnx``, and ``model.int8.onnx`` (quantised visual convolutions) built, measured and kept only when it
passes ``precision_policy``'s floor. Each is built as the runtime builds it (``backends.choose``: the same
candidates, the same OpenVINO settings). The figures go into the model files' metadata for the runtime's ``auto``.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ccstereo.config import ModelConfig
from ccstereo.errors import CCStereoError
from ccstereo.export import int8 as int8_mod
from ccstereo.export import onnx_graph, verify
from ccstereo.export.errors import ExportError
from ccstereo.export.options import ExportOptions
from ccstereo.runtime.backends.choose import Candidate, build
from ccstereo.runtime.backends.precision_policy import MIN_OFFERED_SNR_DB
from ccstereo.runtime.cpu_features import native_bf16

HELD_OUT_WINDOWS = 96  # per held-out calibration video


@dataclass(frozen=True)
class Accuracy:
    """A reduced precision's output vs fp32 on the verification set."""

    binaural_snr_db: float
    metrics: dict[str, float]
    metric_rel_change: dict[str, float]
    worst_metric_change: float


@dataclass(frozen=True)
class Bf16Result:
    measured: bool
    reason: str = ""
    runtime: str = ""
    native_bf16: bool = False
    accuracy: Accuracy | None = None

    def to_report(self) -> dict[str, Any]:
        if self.accuracy is None:
            return {"measured": False, "reason": self.reason}
        return {"measured": True, "runtime": self.runtime, "native_bf16": self.native_bf16, **asdict(self.accuracy)}


@dataclass(frozen=True)
class Int8Result:
    built: bool
    reason: str = ""
    quantisation: dict[str, Any] = field(default_factory=dict)  # int8.quantize's summary
    calibration_source: str = ""
    runtime: str = ""
    accuracy: Accuracy | None = None
    held_out_snr_db: dict[str, float] = field(default_factory=dict)
    offered_snr_db: float | None = None  # the worst of the verification set and every held-out video
    file: str = ""
    sha256: str = ""

    def to_report(self) -> dict[str, Any]:
        out: dict[str, Any] = {"built": self.built}
        if self.accuracy is not None:
            out.update(self.quantisation)
            out.update(calibration_source=self.calibration_source, runtime=self.runtime, **asdict(self.accuracy))
            out.update(held_out_snr_db=self.held_out_snr_db, offered_snr_db=self.offered_snr_db)
        if self.built:
            out.update(file=self.file, sha256=self.sha256)
        else:
            out["reason"] = self.reason
        return out


@dataclass(frozen=True)
class CpuPrecisions:
    bf16: Bf16Result
    int8: Int8Result

    def measured(self) -> tuple[dict[str, float], dict[str, float]]:
        """Return (SNR vs fp32, worst paper-metric change) per precision measured, for the fp32 graph's metadata."""
        snr: dict[str, float] = {}
        worst: dict[str, float] = {}
        if self.bf16.accuracy is not None:
            snr["bf16"], worst["bf16"] = self.bf16.accuracy.binaural_snr_db, self.bf16.accuracy.worst_metric_change
        if self.int8.built and self.int8.accuracy is not None and self.int8.offered_snr_db is not None:
            snr["int8"], worst["int8"] = self.int8.offered_snr_db, self.int8.accuracy.worst_metric_change
        return snr, worst


def measure(config: ModelConfig, fp32_path: Path, vset, fp32: np.ndarray, options: ExportOptions, log) -> CpuPrecisions:
    """Measure bf16 and build + measure int8 on this CPU (OpenVINO) against the fp32 windows ``fp32``."""
    try:
        import openvino as ov
    except ImportError:
        reason = "openvino is not installed (pip install '.[cpu]')"
        if options.int8 == "on":
            raise ExportError(f"--int8 on: {reason}") from None
        return CpuPrecisions(Bf16Result(False, reason), Int8Result(False, reason))
    bf16 = _bf16(fp32_path, vset, fp32, f"openvino {ov.__version__} CPU, INFERENCE_PRECISION_HINT=bf16", log)
    if options.int8 == "off":
        return CpuPrecisions(bf16, Int8Result(False, "--int8 off"))
    return CpuPrecisions(bf16, _int8(config, fp32_path, vset, fp32, options, log))


def _bf16(fp32_path: Path, vset, fp32: np.ndarray, runtime: str, log) -> Bf16Result:
    """Measure OpenVINO bf16 of the fp32 graph; one OpenVINO cannot compile or run on this CPU is reported as not
    measured (the export goes on: bf16 is then never offered for it), not an export that fails."""
    try:
        engine, windows = _run_here(fp32_path, "bf16", vset)
    except _NotRunHereError as why:
        log(f"bf16 not measured: {why}")
        return Bf16Result(False, str(why))
    del engine
    accuracy = _accuracy(vset, fp32, windows)
    log(f"bf16 on this CPU (OpenVINO) vs FP32: binaural SNR {accuracy.binaural_snr_db:.1f} dB")
    return Bf16Result(True, runtime=runtime, native_bf16=native_bf16(), accuracy=accuracy)


class _NotRunHereError(ExportError):
    """OpenVINO cannot compile or run a precision on this CPU; the message says so, in OpenVINO's words."""


def _run_here(path: Path, precision: str, vset):
    """Return the runtime's OpenVINO engine for ``path`` at ``precision`` and its verification windows, or raise
    _NotRunHereError with OpenVINO's reason (without the temporary file name and OpenVINO's source locations)."""
    try:
        engine = _openvino_cpu(path, precision)
        return engine, engine.run(vset.crops_u8, vset.mono, vset.frame_index)
    except (CCStereoError, RuntimeError) as exc:
        words = " ".join(re.sub(r"Exception from \S+:\d+:", " ", str(exc.__cause__ or exc)).split())[:200]
        raise _NotRunHereError(f"OpenVINO cannot run {precision} on this CPU: {words}") from exc


def _openvino_cpu(path: Path, precision: str):
    """Return the runtime's OpenVINO engine for ``path`` at ``precision`` (bf16 of the fp32 graph, or int8)."""
    return build(path.parent, Candidate("openvino", precision, path.name), keep=False)


def _accuracy(vset, fp32: np.ndarray, test: np.ndarray) -> Accuracy:
    m32, mt = verify.paper_metrics(vset, fp32), verify.paper_metrics(vset, test)
    change = verify.relative_changes(m32, mt)
    snr = verify.snr_db(vset.overlap_average(test), vset.overlap_average(fp32))
    return Accuracy(snr, mt, change, max(change.values()))


def _held_out_snr(fp32_path: Path, int8_engine, videos, config: ModelConfig) -> dict[str, float]:
    """Return per held-out video the windows' binaural SNR of the int8 graph (OpenVINO) vs fp32 (onnxruntime)."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(fp32_path), providers=["CPUExecutionProvider"])
    result = {}
    for video in videos:
        batches = int8_mod.batches_from_videos([video], config, HELD_OUT_WINDOWS)
        ref = np.concatenate([session.run(["binaural"], b.feeds())[0] for b in batches])
        low = np.concatenate([int8_engine.run(b.frames, b.mono, b.frame_index) for b in batches])
        result[Path(video).name] = verify.snr_db(low, ref)
    return result


def _calibration(config: ModelConfig, vset, options: ExportOptions) -> tuple[list, str, tuple[Path, ...]]:
    """Return (calibration batches, where they come from, held-out videos).

    With three or more calibration videos the last third are held out of calibration and measured instead:
    int8's error depends on the scene (measured: 24-52 dB over six synthetic scenes of one model).
    """
    videos = tuple(options.calibrate)
    held = videos[len(videos) - len(videos) // 3 :] if len(videos) >= 3 else ()
    calibration = videos[: len(videos) - len(held)]
    if calibration:
        batches = int8_mod.batches_from_videos(calibration, config, options.calibration_windows)
        return batches, f"{len(calibration)} video(s): " + ", ".join(Path(v).name for v in calibration), held
    batches = int8_mod.batches_from_arrays(vset.crops_u8, vset.mono, vset.frame_index, options.calibration_windows)
    return batches, f"the verification set ({vset.name}); accuracy below is on the calibration data itself", held


def _int8(config: ModelConfig, fp32_path: Path, vset, fp32: np.ndarray, options: ExportOptions, log):
    """Quantise the visual convolutions and measure the result; keep model.int8.onnx only when it is offered.

    The figure recorded for the runtime is the worst of the verification set and every held-out video."""
    batches, source, held = _calibration(config, vset, options)
    path = fp32_path.with_name("model.int8.onnx")
    summary = int8_mod.quantize(fp32_path, batches, path)
    try:
        engine, windows = _run_here(path, "int8", vset)
    except _NotRunHereError as why:
        path.unlink()
        if options.int8 == "on":
            raise ExportError(str(why)) from why
        log(f"model.int8.onnx dropped: {why}")
        return Int8Result(False, str(why), summary, source)
    accuracy = _accuracy(vset, fp32, windows)
    held_out = _held_out_snr(fp32_path, engine, held, config) if held else {}
    del engine  # releases the file before it may be rewritten or removed below
    snr = min([accuracy.binaural_snr_db, *held_out.values()])
    hint = "bf16" if native_bf16() else "f32"  # as the runtime's engine runs the float part (backends.openvino)
    runtime = f"OpenVINO CPU, int8 convolutions, the rest with INFERENCE_PRECISION_HINT={hint}"
    result = Int8Result(True, "", summary, source, runtime, accuracy, held_out, snr)
    log(
        f"int8 (visual convolutions, {summary['calibration_windows']} calibration windows) vs FP32: "
        f"binaural SNR {accuracy.binaural_snr_db:.1f} dB on {vset.name}"
        + "".join(f", {v:.1f} dB on held-out {k}" for k, v in held_out.items())
        + f"; worst paper-metric change {accuracy.worst_metric_change:.2%}"
    )
    if snr < MIN_OFFERED_SNR_DB:
        path.unlink()
        reason = f"int8 measured {snr:.1f} dB SNR vs fp32 (< {MIN_OFFERED_SNR_DB} dB): not offered"
        if options.int8 == "on":
            raise ExportError(reason)
        log(f"model.int8.onnx dropped: {reason}")
        return replace(result, built=False, reason=reason)
    int8_mod.set_measured(path, {"int8": snr}, {"int8": accuracy.worst_metric_change})
    return replace(result, file=path.name, sha256=onnx_graph.sha256_file(path))
