"""ccs-run: turn the sound of videos binaural."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from ccstereo.runtime.distributed import ScaleOptions
from ccstereo.runtime.options import (
    BackendName,
    ClipMode,
    LoadOptions,
    OutputFormat,
    Precision,
    RunOptions,
    VisualRate,
)

app = typer.Typer(add_completion=False, help=__doc__)


class _Progress:
    """Progress of a run in seconds of media, per file and over all files, with speed and time left (rich);
    off with --quiet or when stderr is not a terminal."""

    def __init__(self, files: int, quiet: bool) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        console = Console(stderr=True)
        self.bar = Progress(
            TextColumn("{task.description:30.30}"),
            BarColumn(),
            TextColumn("{task.fields[stats]}"),
            TimeRemainingColumn(),
            console=console,
            disable=quiet or not console.is_terminal,
        )
        self.count, self.finished = files, 0
        self.files = self.bar.add_task("all files", total=files, stats=f"0/{files} files")
        self.task: Any = None

    def __enter__(self) -> _Progress:
        self.bar.start()
        return self

    def __exit__(self, *exc) -> None:
        self.bar.stop()

    def start(self, name: str, total_s: float) -> None:
        self.total_s = total_s
        self.task = self.bar.add_task(name, total=total_s or None, stats="")

    def __call__(self, done_s: float, wall_s: float) -> None:
        speed = done_s / wall_s if wall_s else 0.0
        stats = f"{done_s:7.1f}/{self.total_s:.1f} s {speed:5.1f}x realtime"
        self.bar.update(self.task, completed=done_s, stats=stats)

    def plan_media(self, total_s: float) -> None:
        """A row of media seconds over all files (--ray: files finish whole, on other machines)."""
        self.media = self.bar.add_task("media seconds", total=total_s or None, stats=f"0/{total_s:.0f} s")
        self.media_total_s, self.media_done_s, self.t0 = total_s, 0.0, time.perf_counter()

    def media_finished(self, seconds: float) -> None:
        self.media_done_s += seconds
        speed = self.media_done_s / max(1e-9, time.perf_counter() - self.t0)
        stats = f"{self.media_done_s:.0f}/{self.media_total_s:.0f} s {speed:5.1f}x realtime"
        self.bar.update(self.media, completed=self.media_done_s, stats=stats)

    def done(self) -> None:
        if self.task is not None:
            self.bar.remove_task(self.task)
            self.task = None
        self.finished += 1
        self.bar.update(self.files, completed=self.finished, stats=f"{self.finished}/{self.count} files")


def _usage_error(message: str) -> typer.Exit:
    typer.echo(f"error: {' '.join(message.split())}", err=True)
    return typer.Exit(2)


# The API's defaults are the CLI's (tests/test_cli_options.py checks every flag against its field).
_LOAD, _RUN = LoadOptions(), RunOptions()
_BACKEND, _PRECISION, _CLIP = BackendName(_LOAD.backend), Precision(_LOAD.precision), ClipMode(_RUN.clip_mode)
_VISUAL = VisualRate(_RUN.visual_rate)
_SCALE = ScaleOptions()
_RayAddressOption = Annotated[
    str | None, typer.Option(help="join this Ray cluster (host:port) instead of starting one here; implies --ray")
]
_WorkersOption = Annotated[
    int | None, typer.Option(min=1, help="Ray workers (default: cluster CPUs / cpus-per-worker)")
]
_CpusOption = Annotated[float, typer.Option(min=0.01, help="CPUs each Ray worker reserves (and its threads)")]
_GpusOption = Annotated[float, typer.Option(min=0, help="GPUs each Ray worker reserves")]
_VisualRateOption = Annotated[
    VisualRate, typer.Option(help="exact: visual network on every distinct crop | adaptive: only where it changed")
]
_ThresholdOption = Annotated[
    float, typer.Option(min=0, help="adaptive: largest change (grey levels per 56 px tile) that reuses features")
]
_TuneOption = Annotated[
    bool | None,
    typer.Option(
        "--tune/--no-tune",
        help="auto on a CPU: measure the engines again (--tune) or pick by CPU flags (--no-tune); default: the "
        "engine measured fastest and accurate here, measured once per model and machine",
    ),
]
_OutOption = Annotated[
    str | None, typer.Option("-o", "--out", help="output file, or folder (an existing one, or ending in /)")
]
_StaleOption = Annotated[float, typer.Option(min=0, help="adaptive: oldest features reused, in seconds")]


@app.command()
def main(
    inputs: Annotated[list[Path], typer.Argument(help="video files or folders")],
    out: _OutOption = None,
    model: Annotated[Path | None, typer.Option(help="exported folder, .onnx or .plan (default: bundled)")] = None,
    backend: Annotated[BackendName, typer.Option(help="engine (auto: the fastest usable here)")] = _BACKEND,
    precision: Annotated[
        Precision, typer.Option(help="CPU precision (reduced ones only as measured at export)")
    ] = _PRECISION,
    batch_size: Annotated[int | None, typer.Option(min=1, help="windows per backend call")] = _LOAD.batch_size,
    threads: Annotated[int | None, typer.Option(min=1, help="CPU threads (default: every core)")] = _LOAD.threads,
    tune: _TuneOption = _LOAD.tune,
    hop_s: Annotated[float | None, typer.Option(help="hop between windows in seconds (default 0.1)")] = None,
    hop_samples: Annotated[
        int | None, typer.Option(help="hop in samples at 16 kHz (1008 = official test)")
    ] = _RUN.hop_samples,
    tta: Annotated[bool, typer.Option("--tta/--no-tta", help="V-TTA five-crop over frames")] = _RUN.tta,
    fmt: Annotated[
        OutputFormat | None, typer.Option("--format", help="output container (default: one that can copy the video)")
    ] = None,
    full_band: Annotated[
        bool, typer.Option("--full-band/--model-band", help="keep the input's full band")
    ] = _RUN.full_band,
    clip_mode: Annotated[
        ClipMode, typer.Option(help="rescale (whole file, only if it would clip) | clamp | none; always reported")
    ] = _CLIP,
    visual_rate: _VisualRateOption = _VISUAL,
    visual_threshold: _ThresholdOption = _RUN.visual_threshold,
    visual_max_stale_s: _StaleOption = _RUN.visual_max_stale_s,
    overwrite: Annotated[bool, typer.Option(help="replace existing outputs")] = _RUN.overwrite,
    report: Annotated[Path | None, typer.Option(help="write a JSON report of every file")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress bar")] = False,
    ray: Annotated[bool, typer.Option("--ray", help="spread the files over Ray workers")] = _SCALE.ray,
    ray_address: _RayAddressOption = _SCALE.ray_address,
    workers: _WorkersOption = _SCALE.workers,
    cpus_per_worker: _CpusOption = _SCALE.cpus_per_worker,
    gpus_per_worker: _GpusOption = _SCALE.gpus_per_worker,
    view: Annotated[bool, typer.Option("--view", help="when done, open the listening page of the last output")] = False,
) -> None:
    """Binauralise INPUT... into <stem>.binaural.<ext> beside each input (or in --out); INPUT may be a file, a
    folder or @list.txt (one path or glob per line).

    Exit status: 0 all done (or skipped), 1 a file failed, 2 bad usage or model, 130 / 143 interrupted.
    """
    from ccstereo.errors import CCStereoError

    _check_hop(hop_s, hop_samples)
    out_path = _out_path(out)
    try:
        load = LoadOptions(backend.value, precision.value, batch_size, threads, tune)
        fmt_name = None if fmt is None else fmt.value
        options = RunOptions(hop_samples, tta, full_band, fmt_name, overwrite, clip_mode.value)
        options = _with_visual_rate(options, visual_rate, visual_threshold, visual_max_stale_s)
        scale = ScaleOptions(ray, ray_address, workers, cpus_per_worker, gpus_per_worker)
    except CCStereoError as exc:
        raise _usage_error(str(exc)) from exc
    entries = _guarded(lambda: _dispatch(inputs, out_path, model, load, options, hop_s, report, quiet, scale))
    if view:
        _view_last(entries)
    if any(entry["status"] == "failed" for entry in entries):
        raise typer.Exit(1)


def _out_path(text: str | None) -> Path | None:
    """Return -o as a path; one ending in / names a folder, which must exist (Path() would drop the slash)."""
    if text is None:
        return None
    if text.endswith(("/", "\\")) and not Path(text).is_dir():
        raise _usage_error(f"{_shown(text)}: output folder does not exist")
    return Path(text)


def _shown(text: object) -> str:
    """Return a path or message as one printable line (a newline in a file name must not split it)."""
    from ccstereo.runtime.errors import printable

    return printable(text)


def _view_last(entries: list[dict]) -> None:
    """ccs-run --view: the listening page of the last output written (or found done), until Ctrl-C."""
    from ccstereo.errors import CCStereoError
    from ccstereo.runtime.view.cli import serve
    from ccstereo.runtime.view.page import build_view

    done = [e for e in entries if e["status"] in ("ok", "skipped") and e.get("output")]
    if not done:
        typer.echo("--view: no output to show", err=True)
        return
    last = done[-1]
    try:
        serve(build_view(Path(last["output"]), Path(last["input"]), None, last if last["status"] == "ok" else None))
    except CCStereoError as exc:
        typer.echo(f"error: --view: {' '.join(str(exc).split())}", err=True)


def _dispatch(inputs, out, model, load, options, hop_s, report, quiet, scale) -> list[dict]:
    """Run the files here, or on Ray with --ray / --ray-address; return the report entry of every file."""
    from ccstereo.runtime.binauralizer import Binauralizer

    if scale.ray or scale.ray_address:
        return _run_on_ray(inputs, out, model, load, options, hop_s, report, quiet, scale)
    return _run(inputs, out, lambda: Binauralizer.load(model, load), options, hop_s, report, quiet)


def _guarded(run):
    """Return ``run()``; interrupts become exit 130 / 143 with a line that says nothing partial is left."""
    from ccstereo.runtime.interrupts import Terminated, signals_as_exceptions

    try:
        with signals_as_exceptions():
            return run()
    except KeyboardInterrupt:
        typer.echo("interrupted: no partial output left", err=True)
        raise typer.Exit(130) from None
    except Terminated as ended:
        typer.echo(f"terminated ({ended.name}): no partial output left", err=True)
        raise typer.Exit(128 + ended.signum) from None


def _run_on_ray(inputs, out, model, load, options, hop_s, report, quiet, scale) -> list[dict]:
    """The --ray path: files to Ray workers; one line per file and a summary; the aggregated report."""
    import dataclasses

    from ccstereo.errors import CCStereoError
    from ccstereo.runtime.distributed import run_files

    files = _checked_inputs(inputs, out, options.fmt)
    _planned(files, out, options.fmt, report)  # every path it writes, checked before any work
    try:
        if hop_s is not None:
            options = dataclasses.replace(options, hop_samples=round(hop_s * _model_rate(model)))

        def line(entry: dict) -> None:
            if entry["status"] == "failed":
                typer.echo(f"error: {entry['error']}", err=True)
            elif not quiet:
                again = f", attempt {entry['attempts']}" if entry.get("attempts", 1) > 1 else ""
                where = f"{entry.get('host')}/{entry.get('backend')}{again}"
                typer.echo(f"{entry['input']}: {entry['status']} ({where})", err=True)

        with _Progress(len(files), quiet) as bar:  # rows of files and of media seconds, a step per finished file

            def finished(entry: dict) -> None:
                bar.done()
                bar.media_finished(entry.get("media_s", 0.0))
                line(entry)

            entries, totals = run_files(files, out, model, load, options, scale, finished, bar.plan_media)
    except CCStereoError as exc:
        raise _usage_error(str(exc)) from exc
    typer.echo(
        f"files: {totals['ok']} ok, {totals['skipped']} skipped, {totals['failed']} failed ({totals['retried']} "
        f"retried); {totals['media_hours']:.3f} media hours in {totals['wall_s']:.1f} s = "
        f"{totals['media_hours_per_wall_hour']:.1f} media hours per wall hour",
        err=True,
    )
    if report is not None:
        from ccstereo.runtime.writers import atomic_write_text

        atomic_write_text(report, json.dumps({"summary": totals, "files": entries}, indent=2))
    return entries


def _model_rate(model: Path | None) -> int:
    from ccstereo.runtime.backends.select import default_model_path
    from ccstereo.runtime.model_info import read_onnx_info

    path = default_model_path() if model is None else model
    return read_onnx_info(path / "model.onnx" if path.is_dir() else path).config.sample_rate_hz


def _check_hop(hop_s: float | None, hop_samples: int | None) -> None:
    if hop_s is not None and hop_samples is not None:
        raise _usage_error("give --hop-s or --hop-samples, not both")
    if hop_s is not None and not hop_s > 0:
        raise _usage_error(f"--hop-s must be positive, got {hop_s}")


def _with_visual_rate(options: RunOptions, rate: VisualRate, threshold: float, stale_s: float) -> RunOptions:
    import dataclasses

    return dataclasses.replace(options, visual_rate=rate.value, visual_threshold=threshold, visual_max_stale_s=stale_s)


def _run(inputs, out, load, options, hop_s, report, quiet) -> list[dict]:
    """Process every input; return their report entries (usage errors raise typer.Exit(2)).

    Every path the run writes is planned and checked before any work (``write_plan``)."""
    files = _checked_inputs(inputs, out, options.fmt)
    planned, writes = _planned(files, out, options.fmt, report)
    engine, options = _load_engine(load, options, hop_s)
    if not quiet:
        typer.echo(f"backend: {engine.backend.name} ({engine.reason})", err=True)
    with _Progress(len(files), quiet) as bar:
        reports = [_process_one(engine, item, out, options, quiet, bar) for item in planned]
    if report is not None:
        _write_report(report, reports)
    return reports


def _planned(files: list[Path], out: Path | None, fmt: str | None, report: Path | None):
    """Return (every file probed with its output claimed, the run's WritePlan); a report or an -o file that
    cannot be written, or names an input or an output, is bad usage: nothing has been done yet."""
    from ccstereo.runtime.write_plan import WritePlan, plan_files
    from ccstereo.runtime.writers import OutputError

    writes = WritePlan(files)
    planned = plan_files(files, out, fmt, writes)
    single = out is not None and not out.is_dir()
    for item in planned:
        if single and isinstance(item.error, OutputError):  # the -o the user gave cannot be written
            raise _usage_error(_shown(item.error))
    if report is not None:
        try:
            writes.claim(report, "--report")
        except OutputError as exc:
            raise _usage_error(_shown(exc)) from exc
    writes.tidy()
    return planned, writes


def _checked_inputs(inputs: list[Path], out: Path | None, fmt: str | None = None) -> list[Path]:
    """Return the media files to process; raise typer.Exit(2) for what cannot be a valid run."""
    from ccstereo.runtime.binauralizer import output_format
    from ccstereo.runtime.errors import OptionError
    from ccstereo.runtime.inputs import collect_inputs
    from ccstereo.runtime.writers import OutputError, same_file

    try:
        files = collect_inputs(inputs)
    except OptionError as exc:
        raise _usage_error(str(exc)) from exc
    if not files:
        raise _usage_error("no input media found")
    if len(files) > 1 and out is not None and not out.is_dir():
        raise _usage_error(f"{_shown(out)}: with several inputs --out must be an existing folder")
    try:  # an -o file's extension and --format must agree and name a format we write
        output_format(files[0], fmt, None, out)
    except OutputError as exc:
        raise _usage_error(_shown(exc)) from exc
    for path in files:
        if out is not None and not out.is_dir() and same_file(path, out):
            raise _usage_error(f"{_shown(path)}: -o names the input itself; the output would overwrite it")
    return files


def _load_engine(load, options, hop_s: float | None):
    """Return (Binauralizer, options with the hop in samples); a bad model or option is a usage error."""
    import dataclasses

    from ccstereo.errors import CCStereoError

    try:
        engine = load()
        if hop_s is not None:
            options = dataclasses.replace(options, hop_samples=round(hop_s * engine.config.sample_rate_hz))
        engine.window_plan(options)  # an impossible hop is a usage error before any file is touched
    except CCStereoError as exc:
        raise _usage_error(str(exc)) from exc
    return engine, options


def _process_one(engine, item, out: Path | None, options, quiet: bool, bar) -> dict:
    """Run one planned file and return its report entry; a failure is printed as one line and reported, never
    raised."""
    from ccstereo.runtime.errors import failure_line

    started, path = time.perf_counter(), item.path
    try:
        if item.error is not None:
            raise item.error
        bar.start(path.name, item.info.duration_s)
        result = engine.process(path, item.target, options, bar, item.info)  # planned once, not again
    except Exception as exc:  # noqa: BLE001 - one failing file never stops the others
        bar.done()
        message, internal = failure_line(path, exc)  # one line: white space (a newline in a name too) folded
        typer.echo(f"error: {message}", err=True)
        wall_s = round(time.perf_counter() - started, 3)
        return {"input": str(path), "status": "failed", "error": message, "internal": internal, "wall_s": wall_s}
    bar.done()
    if result.status == "skipped":
        typer.echo(f"skipped {_shown(path)}: {_shown(result.output)} exists (use --overwrite)", err=True)
    elif not quiet:
        speed = f"{result.duration_s:.1f} s in {result.wall_s:.1f} s, {result.realtime_speed:.1f}x realtime"
        saved = result.crops_shared + result.crops_reused
        visual = f"; visual network skipped on {saved} of {result.windows} windows" if saved else ""
        typer.echo(f"{_shown(path)} -> {_shown(result.output)} ({speed}{visual})", err=True)
    if result.visual_rate.startswith("exact ("):  # adaptive asked for, but this engine cannot: always said
        typer.echo(f"{_shown(path)}: visual rate {result.visual_rate}", err=True)
    if result.video_note:
        typer.echo(f"{_shown(path)}: video {result.video_note}", err=True)
    if result.status == "ok" and result.full_band and item.info.audio_rate_hz not in (0, result.output_rate_hz):
        rates = f"{item.info.audio_rate_hz} Hz -> {result.output_rate_hz} Hz"
        typer.echo(f"{_shown(path)}: the output's codec cannot take the input's rate: resampled ({rates})", err=True)
    if result.clip is not None and result.clip.describe():
        typer.echo(f"{_shown(path)}: {result.clip.describe()}", err=True)
    return result.to_dict()


def _write_report(path: Path, reports: list[dict]) -> None:
    from ccstereo.runtime.writers import atomic_write_text

    atomic_write_text(path, json.dumps(reports, indent=2))


if __name__ == "__main__":
    app()
