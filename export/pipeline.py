"""The export pipeline behind ``ccs-export``: checkpoint -> ONNX -> verified -> FP16 ONNX -> TensorRT engine.

Files are written into a staging folder inside OUTDIR and moved into place only when every step succeeded,
so a failed export leaves nothing half-written.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from ccstereo.atomic import publish
from ccstereo.checkpoint import load_checkpoint
from ccstereo.export import cpu_precisions, onnx_graph, verify
from ccstereo.export import fp16 as fp16_mod
from ccstereo.export.cpu_precisions import Bf16Result, Int8Result
from ccstereo.export.errors import ExportError
from ccstereo.export.options import ExportOptions
from ccstereo.export.results import EngineResult, ExportReport, Fp16Check, Fp16Result, Fp32Check, Fp32Result, GraphFile
from ccstereo.runtime import verification
from ccstereo.runtime.model_info import ModelInfo

# Measured on the official fixture (ccs-export --fp32-islands auto, report "island_ablation"): dropping
# each of these costs >= 0.1 dB of binaural SNR; the others cost < 0.05 dB and run in FP16.
DEFAULT_FP32_ISLANDS = ("rms_normalize", "stft", "istft", "mask_and_output", "mask_head", "layernorm")
ISLAND_THRESHOLD_DB = 0.1
FP32_MAX_ERR_RATIO = 1e-4
FP16_MIN_SNR_DB = 40.0
FP16_MAX_METRIC_CHANGE = 0.01


def _verification_set(model, options: ExportOptions) -> verify.VerificationSet:
    if options.verify_clip is not None:
        if options.verify_frames is None:
            raise ExportError("--verify-clip needs --verify-frames (a folder of 000001.png ... at 10 fps)")
        return verify.from_files(options.verify_clip, options.verify_frames, model.config)
    return verify.generated(model.config)


def _island_ablation(proto, vset, reference: np.ndarray) -> dict[str, float]:
    """Return per candidate island the binaural SNR loss (dB) when only that island runs in FP16."""
    full, _ = fp16_mod.convert_to_fp16(proto, list(fp16_mod.ISLANDS))
    base = verify.snr_db(vset.overlap_average(verify.run_onnx(full.SerializeToString(), vset)), reference)
    losses = {}
    for name in fp16_mod.ISLANDS:
        variant, _ = fp16_mod.convert_to_fp16(proto, [i for i in fp16_mod.ISLANDS if i != name])
        snr = verify.snr_db(vset.overlap_average(verify.run_onnx(variant.SerializeToString(), vset)), reference)
        losses[name] = round(base - snr, 4)
    losses["_all_islands_snr_db"] = round(base, 3)
    return losses


def _verify_fp32(model, path: Path, vset, log) -> tuple[Fp32Check, np.ndarray]:
    """Return (figures, onnxruntime windows) of model.onnx against PyTorch; raise when too far."""
    ours = verify.run_onnx(path, vset)
    torch_out = verify.run_torch(model, vset)
    peak = float(np.abs(torch_out).max())
    err = float(np.abs(ours - torch_out).max())
    if err > FP32_MAX_ERR_RATIO * peak:
        raise ExportError(f"model.onnx differs from PyTorch by {err:.3g} (> {FP32_MAX_ERR_RATIO} x peak {peak:.3g})")
    log(f"model.onnx vs PyTorch: max abs err {err:.3g} (peak {peak:.3g})")
    return Fp32Check(err, peak, err / peak, len(vset.mono)), ours


def _verify_fp16(path: Path, vset, fp32_windows: np.ndarray) -> Fp16Check:
    half = verify.run_onnx(path, vset)
    ref = vset.overlap_average(fp32_windows)
    snr = verify.snr_db(vset.overlap_average(half), ref)
    m32, m16 = verify.paper_metrics(vset, fp32_windows), verify.paper_metrics(vset, half)
    change = verify.relative_changes(m32, m16)
    worst = max(change.values())
    if snr < FP16_MIN_SNR_DB or worst > FP16_MAX_METRIC_CHANGE:
        raise ExportError(
            f"FP16 graph too far from FP32: SNR {snr:.1f} dB (need >= {FP16_MIN_SNR_DB}), "
            f"worst metric change {worst:.2%} (need <= {FP16_MAX_METRIC_CHANGE:.0%})"
        )
    return Fp16Check(snr, m32, m16, change)


def _choose_islands(options: ExportOptions, proto, vset, reference) -> tuple[tuple[str, ...], dict | None]:
    """Return (the FP32 islands, the ablation that chose them when measured)."""
    if options.fp32_islands is not None:
        return options.fp32_islands, None
    if not options.verify:
        return DEFAULT_FP32_ISLANDS, None
    ablation = _island_ablation(proto, vset, reference)
    return tuple(n for n in fp16_mod.ISLANDS if ablation[n] >= ISLAND_THRESHOLD_DB), ablation


def export_checkpoint(checkpoint: Path, options: ExportOptions, log=print) -> dict[str, Any]:
    """Run the whole export; return the report (also written to OUTDIR/export_report.json)."""
    from ccstereo.export.tensorrt_build import build_engine, gpu_status

    started = time.perf_counter()
    can_build, gpu_reason = gpu_status()
    if options.engine == "on" and not can_build:
        raise ExportError(f"--engine needs an NVIDIA GPU with TensorRT: {gpu_reason}")
    out_dir = Path(options.out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ExportError(f"{out_dir}: -o names a file; the export writes a folder")
    made = not out_dir.exists()
    out_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".ccs-export-", dir=out_dir))
    try:
        result = _export_into(checkpoint, options, staging, log, (can_build, gpu_reason, build_engine))
        report = replace(result, seconds=round(time.perf_counter() - started, 1)).to_dict()
        (staging / "export_report.json").write_text(json.dumps(report, indent=2, default=str))
        for item in staging.iterdir():  # each file of the folder appears whole (written in the staging folder)
            publish(item, out_dir / item.name)
        made = False
        return report
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if made:  # a failed export leaves no folder it made (an empty one stays only if it was there before)
            with contextlib.suppress(OSError):
                out_dir.rmdir()


@dataclass(frozen=True)
class _Run:
    """One export in progress: what every step reads."""

    model: Any
    sha: str
    proto: Any
    staging: Path
    vset: Any  # None with --no-verify
    fp32_windows: np.ndarray | None
    options: ExportOptions
    log: Callable[[str], None]


def _export_into(checkpoint: Path, options: ExportOptions, staging: Path, log, gpu) -> ExportReport:
    """Run every step into ``staging``; return what each produced."""
    model = load_checkpoint(checkpoint)
    sha = onnx_graph.sha256_file(checkpoint)
    log(f"exporting {checkpoint} (sha256 {sha[:12]}) to ONNX opset {options.opset}")
    proto = onnx_graph.torch_to_onnx(model, options.opset)
    onnx_graph.set_metadata(proto, _metadata(model, sha, "fp32", options))
    fp32_path = staging / "model.onnx"
    onnx_graph.save_onnx(proto, fp32_path)
    vset = _verification_set(model, options) if options.verify else None
    check, fp32_windows = _verify_fp32(model, fp32_path, vset, log) if vset is not None else (None, None)
    if vset is not None:
        verification.save(staging / verification.FILE_NAME, vset, fp32_windows)
    run = _Run(model, sha, proto, staging, vset, fp32_windows, options, log)
    fp16 = _fp16_step(run) if options.fp16 else None
    bf16, int8 = _cpu_step(run, fp32_path)
    onnx = Fp32Result(_graph_file(fp32_path, proto), check)  # after the CPU step: its metadata is final
    engine = _engine_step(run, gpu, fp16)
    name = None if vset is None else vset.name
    exporter = onnx_graph.exporter_version()
    config = model.config.to_dict()
    return ExportReport(
        str(checkpoint), sha, config, exporter, options.opset, onnx, name, fp16, bf16, int8, engine,
        mirror_tta=options.mirror_tta,
    )  # fmt: skip


def _fp16_step(run: _Run) -> Fp16Result:
    """Write model.fp16.onnx (FP32 islands measured or given) and verify it against the FP32 windows."""
    vset, fp32_windows = run.vset, run.fp32_windows
    reference = vset.overlap_average(fp32_windows) if vset is not None else None
    islands, ablation = _choose_islands(run.options, run.proto, vset, reference)
    half, summary = fp16_mod.convert_to_fp16(run.proto, islands)
    onnx_graph.set_metadata(half, _metadata(run.model, run.sha, "fp16", run.options))
    fp16_path = run.staging / "model.fp16.onnx"
    onnx_graph.save_onnx(half, fp16_path)
    kept = {name: {**summary["islands"][name], "reason": fp16_mod.ISLANDS[name].reason} for name in islands}
    check = None
    if vset is not None:
        check = _verify_fp16(fp16_path, vset, fp32_windows)
        run.log(
            f"model.fp16.onnx vs FP32: binaural SNR {check.binaural_snr_db:.1f} dB; FP32 islands: {', '.join(islands)}"
        )
    graph = _graph_file(fp16_path, half)
    return Fp16Result(graph, kept, summary["casts_inserted"], summary["fp16_nodes"], check, ablation)


def _cpu_step(run: _Run, fp32_path: Path) -> tuple[Bf16Result | None, Int8Result]:
    """Measure bf16 / build and measure int8 on this CPU; record the figures in model.onnx's metadata."""
    if run.vset is None:
        if run.options.int8 == "on":
            raise ExportError("--int8 on needs verification (its accuracy is measured, never assumed)")
        return None, Int8Result(False, "--no-verify: reduced precisions are only offered as measured")
    cpu = cpu_precisions.measure(run.model.config, fp32_path, run.vset, run.fp32_windows, run.options, run.log)
    snr, worst = cpu.measured()
    info = replace(
        onnx_graph.get_metadata(run.proto, fp32_path), measured_snr_db=snr, measured_worst_metric_change=worst
    )
    onnx_graph.set_metadata(run.proto, info)
    onnx_graph.save_onnx(run.proto, fp32_path)
    return cpu.bf16, cpu.int8


def _metadata(model, sha: str, precision: str, options: ExportOptions) -> ModelInfo:
    name = {"fp32": "model.onnx", "fp16": "model.fp16.onnx"}[precision]
    version = onnx_graph.exporter_version()
    return ModelInfo(Path(name), model.config, sha, precision, options.opset, version, mirror_tta=options.mirror_tta)


def _graph_file(path: Path, proto) -> GraphFile:
    return GraphFile(path.name, onnx_graph.sha256_file(path), onnx_graph.op_counts(proto))


def _engine_step(run: _Run, gpu, fp16: Fp16Result | None) -> EngineResult:
    can_build, gpu_reason, build_engine = gpu
    options = run.options
    if options.engine == "off":
        return EngineResult(False, "--no-engine")
    if fp16 is None:
        return EngineResult(False, "the TensorRT engine is built from model.fp16.onnx; --no-fp16 given")
    if not can_build:
        run.log(f"TensorRT engine skipped: {gpu_reason}")
        return EngineResult(False, gpu_reason)
    metadata = _metadata(run.model, run.sha, "fp16", options).to_props()
    onnx, timing_cache = run.staging / "model.fp16.onnx", options.out_dir / "timing.cache"
    plan = build_engine(onnx, run.staging, options.profile, run.model.config, metadata, timing_cache)
    run.log(f"TensorRT engine written: {plan.name}")
    return EngineResult(True, file=plan.name, device=gpu_reason, profile=asdict(options.profile))
