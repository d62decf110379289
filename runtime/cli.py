"""ccs-run: turn the sound of videos binaural."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(add_completion=False, help=__doc__)
MEDIA_SUFFIXES = {".mp4", ".mkv", ".mov", ".webm", ".avi", ".m4v", ".mpg", ".mpeg", ".ts", ".flv", ".wmv"}


def collect_inputs(paths: list[Path]) -> list[Path]:
    """Return media files: files as given, folders searched (non-recursively) for video files."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found.extend(
                sorted(
                    p
                    for p in path.iterdir()
                    if p.suffix.lower() in MEDIA_SUFFIXES and ".binaural." not in p.name and not p.name.startswith(".")
                )
            )
        else:
            found.append(path)
    return found


class _Progress:
    """A one-line progress bar in seconds of media, with the real-time speed."""

    def __init__(self, name: str, total_s: float, quiet: bool) -> None:
        self.name, self.total, self.quiet = name, total_s, quiet or not sys.stderr.isatty()

    def __call__(self, done_s: float, wall_s: float) -> None:
        if self.quiet:
            return
        frac = min(1.0, done_s / self.total) if self.total else 0.0
        bar = "#" * int(frac * 30)
        speed = done_s / wall_s if wall_s else 0.0
        sys.stderr.write(f"\r{self.name[:30]:30} [{bar:30}] {done_s:7.1f}/{self.total:.1f} s  {speed:5.1f}x realtime")
        sys.stderr.flush()

    def close(self) -> None:
        if not self.quiet:
            sys.stderr.write("\n")


@app.command()
def main(
    inputs: Annotated[list[Path], typer.Argument(help="video files or folders")],
    out: Annotated[Path | None, typer.Option("-o", "--out", help="output file, or folder for several")] = None,
    model: Annotated[Path | None, typer.Option(help="exported folder, .onnx or .plan (default: bundled)")] = None,
    backend: Annotated[str, typer.Option(help="auto | onnxruntime | openvino | tensorrt | torch")] = "auto",
    precision: Annotated[
        str, typer.Option(help="CPU precision: auto | fp32 | bf16 | int8 (reduced ones only as measured at export)")
    ] = "auto",
    batch_size: Annotated[int | None, typer.Option(help="windows per backend call")] = None,
    hop_s: Annotated[float | None, typer.Option(help="hop between windows in seconds (default 0.1)")] = None,
    hop_samples: Annotated[int | None, typer.Option(help="hop in samples at 16 kHz (1008 = official test)")] = None,
    tta: Annotated[bool, typer.Option("--tta/--no-tta", help="V-TTA five-crop over frames")] = True,
    fmt: Annotated[str | None, typer.Option("--format", help="mp4 | mkv | mov | wav | flac")] = None,
    full_band: Annotated[bool, typer.Option("--full-band/--model-band", help="keep the input's full band")] = True,
    overwrite: Annotated[bool, typer.Option(help="replace existing outputs")] = False,
    report: Annotated[Path | None, typer.Option(help="write a JSON report of every file")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress bar")] = False,
) -> None:
    """Binauralise INPUT... into <stem>.binaural.<ext> beside each input (or in --out)."""
    from ccstereo.runtime.binauralizer import Binauralizer, RunOptions
    from ccstereo.runtime.errors import CCStereoRuntimeError
    from ccstereo.runtime.media import probe

    if hop_s is not None and hop_samples is not None:
        raise typer.BadParameter("give --hop-s or --hop-samples, not both")
    files = collect_inputs(inputs)
    if not files:
        typer.echo("error: no input media found", err=True)
        raise typer.Exit(2)
    if len(files) > 1 and out is not None and not out.is_dir():
        typer.echo(f"error: {out}: with several inputs --out must be an existing folder", err=True)
        raise typer.Exit(2)
    try:
        engine = Binauralizer.load(model, backend, batch_size, precision=precision)
    except (CCStereoRuntimeError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    if not quiet:
        typer.echo(f"backend: {engine.backend.name} ({engine.reason})", err=True)
    hop = hop_samples if hop_s is None else round(hop_s * engine.config.sample_rate_hz)
    options = RunOptions(hop, tta, full_band, fmt, overwrite)
    reports, failed = [], 0
    for path in files:
        try:
            total = probe(path).duration_s
        except CCStereoRuntimeError:
            total = 0.0
        bar = _Progress(path.name, total, quiet)
        try:
            result = engine.process(path, out, options, bar)
            bar.close()
            if result.status == "skipped":
                typer.echo(f"skipped {path}: {result.output} exists (use --overwrite)", err=True)
            elif not quiet:
                typer.echo(
                    f"{path} -> {result.output} ({result.duration_s:.1f} s in {result.wall_s:.1f} s, "
                    f"{result.realtime_speed:.1f}x realtime)",
                    err=True,
                )
            reports.append(result.to_dict())
        except (CCStereoRuntimeError, OSError, ValueError) as exc:
            bar.close()
            failed += 1
            message = str(exc) if str(path) in str(exc) else f"{path}: {exc}"
            typer.echo(f"error: {message}", err=True)
            reports.append({"input": str(path), "status": "failed", "error": message})
    if report is not None:
        report.write_text(json.dumps(reports, indent=2))
    if failed:
        raise typer.Exit(1)


if __name__ == "__main__":
    app()
