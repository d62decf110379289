"""The export pipeline behind ``ccs-export``: checkpoint -> ONNX -> verified -> FP16 ONNX -> TensorRT engine.

Files are written into a staging folder inside OUTDIR and moved into place only when every step succeeded,
so a failed export leaves nothing half-written.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np

from ccstereo.checkpoint import load_checkpoint
from ccstereo.config import ModelConfig
from ccstereo.errors import CCStereoError
from ccstereo.export import fp16 as fp16_mod
from ccstereo.export import int8 as int8_mod
from ccstereo.export import onnx_graph, verify
from ccstereo.export.options import ExportOptions
from ccstereo.runtime.backends.precision_policy import MIN_OFFERED_SNR_DB
from ccstereo.runtime.model_info import ModelInfo

# Measured on the official fixture (ccs-export --fp32-islands auto, report "island_ablation"): dropping
# each of these costs >= 0.1 dB of binaural SNR; the others cost < 0.05 dB and run in FP16.
DEFAULT_FP32_ISLANDS = ("rms_normalize", "stft", "istft", "mask_and_output", "mask_head", "layernorm")
ISLAND_THRESHOLD_DB = 0.1
FP32_MAX_ERR_RATIO = 1e-4
FP16_MIN_SNR_DB = 40.0
FP16_MAX_METRIC_CHANGE = 0.01
HELD_OUT_WINDOWS = 96  # per held-out calibration video
INT8_MIN_SNR_DB = MIN_OFFERED_SNR_DB  # below this no precision is offered to users (the runtime refuses it too)


class ExportError(CCStereoError, RuntimeError):
    """An export that cannot be completed or fails verification; nothing is left in OUTDIR."""


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


def _verify_fp32(model, path: Path, vset) -> tuple[dict[str, Any], np.ndarray]:
    """Return (figures, onnxruntime windows) of model.onnx against PyTorch; raise when too far."""
    ours = verify.run_onnx(path, vset)
    torch_out = verify.run_torch(model, vset)
    peak = float(np.abs(torch_out).max())
    err = float(np.abs(ours - torch_out).max())
    result = {"max_abs_err": err, "peak": peak, "err_over_peak": err / peak, "windows": len(vset.mono)}
    if err > FP32_MAX_ERR_RATIO * peak:
        raise ExportError(f"model.onnx differs from PyTorch by {err:.3g} (> {FP32_MAX_ERR_RATIO} x peak {peak:.3g})")
    return result, ours


def _verify_fp16(path: Path, vset, fp32_windows: np.ndarray) -> dict[str, Any]:
    half = verify.run_onnx(path, vset)
    ref = vset.overlap_average(fp32_windows)
    snr = verify.snr_db(vset.overlap_average(half), ref)
    m32, m16 = verify.paper_metrics(vset, fp32_windows), verify.paper_metrics(vset, half)
    change = verify.relative_changes(m32, m16)
    result = {
        "binaural_snr_db": snr,
        "metrics_fp32": m32,
        "metrics_fp16": m16,
        "metric_rel_change": change,
        "engine": "onnxruntime CPUExecutionProvider running the FP16 graph",
    }
    worst = max(change.values())
    if snr < FP16_MIN_SNR_DB or worst > FP16_MAX_METRIC_CHANGE:
        raise ExportError(
            f"FP16 graph too far from FP32: SNR {snr:.1f} dB (need >= {FP16_MIN_SNR_DB}), "
            f"worst metric change {worst:.2%} (need <= {FP16_MAX_METRIC_CHANGE:.0%})"
        )
    return result


def _choose_islands(options: ExportOptions, proto, vset, reference, report: dict) -> tuple[str, ...]:
    if options.fp32_islands is not None:
        return options.fp32_islands
    if not options.verify:
        return DEFAULT_FP32_ISLANDS
    ablation = _island_ablation(proto, vset, reference)
    report["island_ablation_db"] = ablation
    return tuple(n for n in fp16_mod.ISLANDS if ablation[n] >= ISLAND_THRESHOLD_DB)


def export_checkpoint(checkpoint: Path, options: ExportOptions, log=print) -> dict[str, Any]:
    """Run the whole export; return the report (also written to OUTDIR/export_report.json)."""
    from ccstereo.export.tensorrt_build import build_engine, gpu_status

    started = time.perf_counter()
    can_build, gpu_reason = gpu_status()
    if options.engine == "on" and not can_build:
        raise ExportError(f"--engine needs an NVIDIA GPU with TensorRT: {gpu_reason}")
    out_dir = Path(options.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".ccs-export-", dir=out_dir))
    try:
        report = _export_into(checkpoint, options, staging, log, can_build, gpu_reason, build_engine)
        report["seconds"] = round(time.perf_counter() - started, 1)
        (staging / "export_report.json").write_text(json.dumps(report, indent=2, default=str))
        for item in staging.iterdir():
            item.replace(out_dir / item.name)
        return report
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _export_into(checkpoint, options, staging, log, can_build, gpu_reason, build_engine) -> dict[str, Any]:
    model = load_checkpoint(checkpoint)
    sha = onnx_graph.sha256_file(checkpoint)
    report: dict[str, Any] = {
        "checkpoint": str(checkpoint),
        "checkpoint_sha256": sha,
        "config": model.config.to_dict(),
        "exporter": onnx_graph.exporter_version(),
        "opset": options.opset,
    }
    log(f"exporting {checkpoint} (sha256 {sha[:12]}) to ONNX opset {options.opset}")
    proto = onnx_graph.torch_to_onnx(model, options.opset)
    onnx_graph.set_metadata(proto, _metadata(model, sha, "fp32", options))
    fp32_path = staging / "model.onnx"
    onnx_graph.save_onnx(proto, fp32_path)
    report["onnx"] = _graph_entry(fp32_path, proto)
    vset, fp32_windows = None, None
    if options.verify:
        vset = _verification_set(model, options)
        report["verification_set"] = vset.name
        report["onnx"]["verify"], fp32_windows = _verify_fp32(model, fp32_path, vset)
        log(
            f"model.onnx vs PyTorch: max abs err {report['onnx']['verify']['max_abs_err']:.3g} "
            f"(peak {report['onnx']['verify']['peak']:.3g})"
        )
    if options.fp16:
        reference = vset.overlap_average(fp32_windows) if vset is not None else None
        islands = _choose_islands(options, proto, vset, reference, report)
        half, summary = fp16_mod.convert_to_fp16(proto, islands)
        onnx_graph.set_metadata(half, _metadata(model, sha, "fp16", options))
        fp16_path = staging / "model.fp16.onnx"
        onnx_graph.save_onnx(half, fp16_path)
        report["fp16"] = {
            **_graph_entry(fp16_path, half),
            "fp32_islands": {
                name: {**summary["islands"][name], "reason": fp16_mod.ISLANDS[name].reason} for name in islands
            },
            "casts_inserted": summary["casts_inserted"],
            "fp16_nodes": summary["fp16_nodes"],
        }
        if vset is not None:
            report["fp16"]["verify"] = _verify_fp16(fp16_path, vset, fp32_windows)
            log(
                f"model.fp16.onnx vs FP32: binaural SNR {report['fp16']['verify']['binaural_snr_db']:.1f} dB; "
                f"FP32 islands: {', '.join(islands)}"
            )
    if vset is not None:
        _measure_cpu_precisions(proto, model.config, fp32_path, vset, fp32_windows, options, report, log)
    elif options.int8 == "on":
        raise ExportError("--int8 on needs verification (its accuracy is measured, never assumed)")
    else:
        report["int8"] = {"built": False, "reason": "--no-verify: reduced precisions are only offered as measured"}
    report["engine"] = _engine_step(options, can_build, gpu_reason, staging, model, report, build_engine, log)
    return report


def _metadata(model, sha: str, precision: str, options: ExportOptions) -> ModelInfo:
    name = {"fp32": "model.onnx", "fp16": "model.fp16.onnx"}[precision]
    return ModelInfo(Path(name), model.config, sha, precision, options.opset, onnx_graph.exporter_version())


def _graph_entry(path: Path, proto) -> dict[str, Any]:
    return {"file": path.name, "sha256": onnx_graph.sha256_file(path), "op_counts": onnx_graph.op_counts(proto)}


def _openvino_cpu(path: Path, hint: str):
    """Return ``path`` compiled by OpenVINO's CPU plugin with the given inference-precision hint."""
    import openvino as ov

    core = ov.Core()
    return core.compile_model(core.read_model(str(path)), "CPU", {"INFERENCE_PRECISION_HINT": hint})


def _run_compiled(compiled, feeds: dict[str, np.ndarray]) -> np.ndarray:
    return np.asarray(compiled(feeds)[compiled.output(0)], np.float32)


def _vset_feeds(vset) -> dict[str, np.ndarray]:
    return {"frames": vset.crops_u8, "mono": vset.mono, "frame_index": vset.frame_index}


def _accuracy(vset, fp32: np.ndarray, test: np.ndarray) -> dict[str, Any]:
    m32, mt = verify.paper_metrics(vset, fp32), verify.paper_metrics(vset, test)
    change = verify.relative_changes(m32, mt)
    return {
        "binaural_snr_db": verify.snr_db(vset.overlap_average(test), vset.overlap_average(fp32)),
        "metrics": mt,
        "metric_rel_change": change,
        "worst_metric_change": max(change.values()),
    }


def _measure_cpu_precisions(
    proto, config: ModelConfig, fp32_path: Path, vset, fp32: np.ndarray, options: ExportOptions, report, log
) -> None:
    """Measure bf16 and build + measure int8 on this CPU (OpenVINO) against fp32; record it in the metadata."""
    try:
        import openvino as ov
    except ImportError:
        reason = "openvino is not installed (pip install '.[cpu]')"
        report["bf16"] = {"measured": False, "reason": reason}
        report["int8"] = {"built": False, "reason": reason}
        if options.int8 == "on":
            raise ExportError(f"--int8 on: {reason}") from None
        return
    caps = ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    hint = "bf16" if "BF16" in caps else "f32"
    measured: dict[str, float] = {}
    worst: dict[str, float] = {}
    bf16 = _accuracy(vset, fp32, _run_compiled(_openvino_cpu(fp32_path, "bf16"), _vset_feeds(vset)))
    report["bf16"] = {
        "measured": True,
        "runtime": f"openvino {ov.__version__} CPU, INFERENCE_PRECISION_HINT=bf16",
        "native_bf16": "BF16" in caps,
        **bf16,
    }
    measured["bf16"], worst["bf16"] = bf16["binaural_snr_db"], bf16["worst_metric_change"]
    log(f"bf16 on this CPU (OpenVINO) vs FP32: binaural SNR {bf16['binaural_snr_db']:.1f} dB")
    if options.int8 != "off":
        report["int8"] = _int8_step(config, fp32_path, vset, fp32, options, hint, log)
        if report["int8"]["built"]:
            measured["int8"] = report["int8"]["offered_snr_db"]
            worst["int8"] = report["int8"]["worst_metric_change"]
    else:
        report["int8"] = {"built": False, "reason": "--int8 off"}
    info = onnx_graph.get_metadata(proto, fp32_path)
    onnx_graph.set_metadata(proto, replace(info, measured_snr_db=measured, measured_worst_metric_change=worst))
    onnx_graph.save_onnx(proto, fp32_path)
    report["onnx"]["sha256"] = onnx_graph.sha256_file(fp32_path)


def _held_out_snr(fp32_path: Path, int8_compiled, videos, config: ModelConfig) -> dict[str, float]:
    """Return per held-out video the windows' binaural SNR of the int8 graph (OpenVINO) vs fp32 (onnxruntime)."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(fp32_path), providers=["CPUExecutionProvider"])
    result = {}
    for video in videos:
        batches = int8_mod.batches_from_videos([video], config, HELD_OUT_WINDOWS)
        ref = np.concatenate([session.run(["binaural"], b.feeds())[0] for b in batches])
        low = np.concatenate([_run_compiled(int8_compiled, b.feeds()) for b in batches])
        result[Path(video).name] = verify.snr_db(low, ref)
    return result


def _int8_step(
    config: ModelConfig, fp32_path: Path, vset, fp32: np.ndarray, options: ExportOptions, hint: str, log
) -> dict:
    """Quantise the visual convolutions, measure the result; keep model.int8.onnx only when it is offered.

    With three or more calibration videos, the last third are held out of calibration and measured instead:
    int8's error depends on the scene (measured: 24-52 dB over six synthetic scenes of one model), so the
    figure recorded for the runtime is the worst of the verification set and every held-out video.
    """
    videos = tuple(options.calibrate)
    held = videos[len(videos) - len(videos) // 3 :] if len(videos) >= 3 else ()
    calibration = videos[: len(videos) - len(held)]
    if calibration:
        batches = int8_mod.batches_from_videos(calibration, config, options.calibration_windows)
        source = f"{len(calibration)} video(s): " + ", ".join(Path(v).name for v in calibration)
    else:
        batches = int8_mod.batches_from_arrays(vset.crops_u8, vset.mono, vset.frame_index, options.calibration_windows)
        source = f"the verification set ({vset.name}); accuracy below is on the calibration data itself"
    path = fp32_path.with_name("model.int8.onnx")
    summary = int8_mod.quantize(fp32_path, batches, path)
    compiled = _openvino_cpu(path, hint)
    accuracy = _accuracy(vset, fp32, _run_compiled(compiled, _vset_feeds(vset)))
    held_out = _held_out_snr(fp32_path, compiled, held, config) if held else {}
    del compiled  # releases the file before it may be rewritten or removed below
    snr = min([accuracy["binaural_snr_db"], *held_out.values()])
    result = {
        "built": True,
        **summary,
        "calibration_source": source,
        "runtime": f"OpenVINO CPU, int8 convolutions, the rest with INFERENCE_PRECISION_HINT={hint}",
        **accuracy,
        "held_out_snr_db": held_out,
        "offered_snr_db": snr,
    }
    worst = accuracy["worst_metric_change"]
    log(
        f"int8 (visual convolutions, {summary['calibration_windows']} calibration windows) vs FP32: "
        f"binaural SNR {accuracy['binaural_snr_db']:.1f} dB on {vset.name}"
        + "".join(f", {v:.1f} dB on held-out {k}" for k, v in held_out.items())
        + f"; worst paper-metric change {worst:.2%}"
    )
    if snr < INT8_MIN_SNR_DB:
        path.unlink()
        reason = f"int8 measured {snr:.1f} dB SNR vs fp32 (< {INT8_MIN_SNR_DB} dB): not offered"
        if options.int8 == "on":
            raise ExportError(reason)
        log(f"model.int8.onnx dropped: {reason}")
        return {**result, "built": False, "reason": reason}
    int8_mod.set_measured(path, {"int8": snr}, {"int8": worst})
    result.update(file=path.name, sha256=onnx_graph.sha256_file(path))
    return result


def _engine_step(options, can_build, gpu_reason, staging, model, report, build_engine, log) -> dict[str, Any]:
    if options.engine == "off":
        return {"built": False, "reason": "--no-engine"}
    if not options.fp16:
        return {"built": False, "reason": "the TensorRT engine is built from model.fp16.onnx; --no-fp16 given"}
    if not can_build:
        log(f"TensorRT engine skipped: {gpu_reason}")
        return {"built": False, "reason": gpu_reason}
    fp16_path = staging / "model.fp16.onnx"
    metadata = _metadata(model, report["checkpoint_sha256"], "fp16", options).to_props()
    plan = build_engine(
        fp16_path,
        staging,
        options.profile,
        model.config,
        report["fp16"]["sha256"],
        metadata,
        options.out_dir / "timing.cache",
    )
    log(f"TensorRT engine written: {plan.name}")
    return {"built": True, "file": plan.name, "device": gpu_reason, "profile": asdict(options.profile)}
