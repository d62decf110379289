"""ccs-export: build the artifacts the runtime executes from a CCStereo checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ccstereo.export.options import ExportOptions, Switch
from ccstereo.runtime.engine_cache import BatchProfile

app = typer.Typer(add_completion=False, help=__doc__)
# The API's defaults are the CLI's (tests/test_cli_options.py checks every flag against its field).
_OPTS, _PROFILE = ExportOptions(out_dir=Path(".")), BatchProfile()
_ENGINE, _INT8 = Switch(_OPTS.engine), Switch(_OPTS.int8)
_Verify = Annotated[bool, typer.Option("--verify/--no-verify", help="check the graphs against PyTorch")]
_Islands = Annotated[str, typer.Option(help="FP32 islands of the FP16 graph: auto (measured), all, or a comma list")]
_Calibrate = Annotated[
    list[Path] | None,
    typer.Option(help="video whose windows calibrate int8 (repeatable; default: the verification set)"),
]
_Windows = Annotated[int, typer.Option(min=1, help="int8 calibration windows, spread over the videos")]
_Mirror = Annotated[
    bool,
    typer.Option(
        "--mirror-tta/--no-mirror-tta",
        help="record that the checkpoint was trained with mirror augmentation: ccs-run then mirrors every other "
        "picture and swaps its ears back (off: the official output)",
    ),
]


@app.command()
def main(
    checkpoint: Annotated[Path, typer.Argument(help="official best_model.pth or a native .safetensors")],
    out: Annotated[Path, typer.Option("-o", "--out", help="output folder")],
    fp16: Annotated[bool, typer.Option("--fp16/--no-fp16", help="also write model.fp16.onnx")] = _OPTS.fp16,
    engine: Annotated[Switch, typer.Option(help="build a TensorRT engine (auto: when a GPU is present)")] = _ENGINE,
    no_engine: Annotated[bool, typer.Option("--no-engine", help="same as --engine off")] = False,
    min_batch: Annotated[int, typer.Option(help="TensorRT profile: smallest batch")] = _PROFILE.min_batch,
    opt_batch: Annotated[int, typer.Option(help="TensorRT profile: batch to optimise for")] = _PROFILE.opt_batch,
    max_batch: Annotated[int, typer.Option(help="TensorRT profile: largest batch")] = _PROFILE.max_batch,
    opset: Annotated[int, typer.Option(help="ONNX opset")] = _OPTS.opset,
    verify: _Verify = _OPTS.verify,
    fp32_islands: _Islands = "auto",
    verify_clip: Annotated[Path | None, typer.Option(help="16 kHz stereo wav for verification")] = _OPTS.verify_clip,
    verify_frames: Annotated[
        Path | None, typer.Option(help="its 10 fps frames (000001.png ...)")
    ] = _OPTS.verify_frames,
    int8: Annotated[Switch, typer.Option(help="write model.int8.onnx for CPUs (auto: with OpenVINO)")] = _INT8,
    calibrate: _Calibrate = None,
    calibration_windows: _Windows = _OPTS.calibration_windows,
    mirror_tta: _Mirror = _OPTS.mirror_tta,
) -> None:
    """Export CHECKPOINT to OUT/model.onnx, OUT/model.fp16.onnx, OUT/export_report.json (and a .plan on GPU)."""
    from ccstereo.errors import CCStereoError
    from ccstereo.export.pipeline import export_checkpoint

    videos = tuple(calibrate or ())
    for video in videos:
        if not video.is_file():
            raise typer.BadParameter(f"{video}: no such calibration video")
    try:
        profile, switch = BatchProfile(min_batch, opt_batch, max_batch), Switch.off.value if no_engine else engine.value
        verification = {"verify": verify, "verify_clip": verify_clip, "verify_frames": verify_frames}
        options = ExportOptions(
            out, fp16, switch, profile, opset, fp32_islands=_islands(fp32_islands), int8=int8.value, calibrate=videos,
            calibration_windows=calibration_windows, mirror_tta=mirror_tta, **verification,
        )  # fmt: skip
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    try:
        report = export_checkpoint(checkpoint, options, log=typer.echo)
    except (CCStereoError, ValueError, OSError) as exc:  # ValueError: torch/onnx refusing a graph
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    _print_summary(report)


def _islands(spec: str) -> tuple[str, ...] | None:
    """Return the FP32 islands named by --fp32-islands (None: measure them)."""
    from ccstereo.export.fp16 import ISLANDS

    if spec == "auto":
        return None
    if spec == "all":
        return tuple(ISLANDS)
    islands = tuple(s.strip() for s in spec.split(",") if s.strip())
    unknown = [s for s in islands if s not in ISLANDS]
    if unknown:
        raise typer.BadParameter(f"unknown islands {unknown}; known: {', '.join(ISLANDS)}")
    return islands


def _print_summary(report: dict) -> None:
    typer.echo("")
    for key in ("onnx", "fp16"):
        if key not in report:
            continue
        part = report[key]
        counts = ", ".join(f"{op} {n}" for op, n in part["op_counts"].items())
        typer.echo(f"{part['file']}: {sum(part['op_counts'].values())} nodes ({counts})")
    if "fp16" in report:
        typer.echo(f"FP32 islands: {', '.join(report['fp16']['fp32_islands']) or 'none'}")
        if "verify" in report["fp16"]:
            typer.echo(f"FP16 binaural SNR vs FP32: {report['fp16']['verify']['binaural_snr_db']:.1f} dB")
    for name in ("bf16", "int8"):
        part = report.get(name, {})
        if "binaural_snr_db" in part and part.get("built", True):
            worst_case = " (worst of the verification set and held-out videos)" if part.get("held_out_snr_db") else ""
            typer.echo(
                f"{name} on this CPU vs FP32: binaural SNR {part.get('offered_snr_db', part['binaural_snr_db']):.1f} dB"
                f"{worst_case}, worst paper-metric change {part['worst_metric_change']:.2%}"
            )
        elif "reason" in part:
            typer.echo(f"{name}: {part['reason']}")
    engine = report["engine"]
    typer.echo(f"engine: {engine['file'] if engine['built'] else 'not built (' + engine['reason'] + ')'}")
    typer.echo(f"report: export_report.json ({report['seconds']} s)")


if __name__ == "__main__":
    app()
