"""ccs-run: turn the sound of videos binaural."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Annotated

import typer

from ccstereo.errors import CCStereoError
from ccstereo.runtime import cli_options as o
from ccstereo.runtime.options import BackendName, LoadOptions, RunOptions
from ccstereo.runtime.ray_executor import ScaleOptions

app = typer.Typer(add_completion=False, help=__doc__)


def _usage_error(message: str) -> typer.Exit:
    typer.echo(f"error: {' '.join(message.split())}", err=True)
    return typer.Exit(2)


@app.command()
def main(
    inputs: Annotated[list[Path], typer.Argument(help="video files or folders")],
    out: o.OutOption = None,
    model: Annotated[Path | None, typer.Option(help="exported folder, .onnx or .plan (default: bundled)")] = None,
    backend: Annotated[BackendName, typer.Option(help="engine (auto: the fastest usable here)")] = o.BACKEND,
    precision: o.PrecisionOption = o.PRECISION,
    batch_size: Annotated[int | None, typer.Option(min=1, help="windows per backend call")] = o.LOAD.batch_size,
    threads: Annotated[int | None, typer.Option(min=1, help="CPU threads (default: all usable CPUs)")] = o.LOAD.threads,
    tune: o.TuneOption = o.LOAD.tune,
    hop_s: Annotated[float | None, typer.Option(help="hop between windows in seconds (default 0.1)")] = None,
    hop_samples: o.HopSamplesOption = o.RUN.hop_samples,
    tta: Annotated[bool, typer.Option("--tta/--no-tta", help="V-TTA five-crop over frames")] = o.RUN.tta,
    mirror: o.MirrorOption = o.RUN.mirror,
    fmt: o.FormatOption = None,
    full_band: o.FullBandOption = o.RUN.full_band,
    clip_mode: o.ClipOption = o.CLIP,
    visual_rate: o.VisualRateOption = o.VISUAL,
    resize: o.ResizeOption = o.RESIZE,
    visual_threshold: o.ThresholdOption = o.RUN.visual_threshold,
    visual_max_stale_s: o.StaleOption = o.RUN.visual_max_stale_s,
    max_apart_s: o.MaxApartOption = o.RUN.max_apart_s,
    live: o.LiveOption = o.RUN.live,
    live_budget_s: o.LiveBudgetOption = o.RUN.live_budget_s,
    overwrite: Annotated[bool, typer.Option(help="replace existing outputs")] = o.RUN.overwrite,
    report: Annotated[Path | None, typer.Option(help="write a JSON report of every file")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress bar")] = False,
    ray: Annotated[bool, typer.Option("--ray", help="spread the files over Ray workers")] = o.SCALE.ray,
    ray_address: o.RayAddressOption = o.SCALE.ray_address,
    workers: o.WorkersOption = o.SCALE.workers,
    cpus_per_worker: o.CpusOption = o.SCALE.cpus_per_worker,
    gpus_per_worker: o.GpusOption = o.SCALE.gpus_per_worker,
    view: Annotated[bool, typer.Option("--view", help="when done, open the listening page of the last output")] = False,
) -> None:
    """Binauralise INPUT... (files, folders, @list.txt of paths or globs) into <stem>.binaural.<ext> beside each
    (or in --out); - reads standard input (give -o), -o - writes standard output (mkv, ts, nut, wav), --live live.

    Exit status: 0 all done (or skipped), 1 a file failed, 2 bad usage or model, 130 / 143 interrupted.
    """
    try:
        load = LoadOptions(backend.value, precision.value, batch_size, threads, tune)
        options = RunOptions(hop_samples, tta, full_band, fmt and fmt.value, overwrite, clip_mode.value)
        visual = {"visual_rate": visual_rate.value, "visual_threshold": visual_threshold, "resize": resize.value}
        pipes = {"max_apart_s": max_apart_s, "live": live, "live_budget_s": live_budget_s, "mirror": mirror}
        options = dataclasses.replace(options, **visual, visual_max_stale_s=visual_max_stale_s, **pipes)
        scale = ScaleOptions(ray, ray_address, workers, cpus_per_worker, gpus_per_worker)
        jobs = _jobs(inputs, out, options, report, (hop_s, hop_samples), ray or bool(ray_address) or view)
    except CCStereoError as exc:
        raise _usage_error(str(exc)) from exc
    results, summary = _guarded(lambda: _run(jobs, (model, load, scale), options, hop_s, quiet), out == "-")
    _finish(results, summary, report, view)


def _finish(results, summary, report: Path | None, view: bool) -> None:
    """Write the report, open --view, exit 1 when a file failed."""
    if report is not None:
        from ccstereo.runtime.jobs import write_report

        write_report(report, results, summary)
    if view:
        _view_last(results)
    if summary.failed:
        raise typer.Exit(1)


def _out_path(text: str | None) -> Path | None:
    """Return -o as a path; one ending in / names a folder, which must exist (Path() would drop the slash)."""
    from ccstereo.runtime.errors import OptionError, printable

    if text is not None and text.endswith(("/", "\\")) and not Path(text).is_dir():
        raise OptionError(f"{printable(text)}: output folder does not exist")
    return None if text is None else Path(text)


def _plan(inputs: list[Path], out: Path | None, fmt: str | None, report: Path | None, hop_s, hop_samples):
    """Return the run's jobs; bad usage (a hop given twice, no input, an -o or --report that cannot be written, an
    -o that names an input) raises before any work."""
    from ccstereo.runtime.errors import OptionError
    from ccstereo.runtime.inputs import check_run_paths

    if hop_s is not None and hop_samples is not None:
        raise OptionError("give --hop-s or --hop-samples, not both")
    if hop_s is not None and not hop_s > 0:
        raise OptionError(f"--hop-s must be positive, got {hop_s}")
    from ccstereo.runtime.jobs import plan_jobs
    from ccstereo.runtime.writers import OutputError

    files = check_run_paths(inputs, out, fmt)
    jobs = plan_jobs(files, out, fmt, report)
    for job in jobs:
        if out is not None and not out.is_dir() and isinstance(job.error, OutputError):
            raise job.error  # the one -o the user gave cannot be written
    return jobs


def _jobs(inputs: list[Path], out: str | None, options: RunOptions, report: Path | None, hops: tuple, elsewhere: bool):
    """Return the run's jobs: a pipe's one (``-`` in or ``-o -``), else every file's (``_plan``)."""
    from ccstereo.runtime.errors import OptionError
    from ccstereo.runtime.writers import PIPE

    if options.live and inputs != [PIPE]:
        raise OptionError("--live reads a stream from standard input: give - as the one input")
    if PIPE in inputs or out == "-":
        return _plan_pipe(inputs, out, options.fmt, report, elsewhere)
    return _plan(inputs, _out_path(out), options.fmt, report, *hops)


def _plan_pipe(inputs: list[Path], out: str | None, fmt: str | None, report: Path | None, elsewhere: bool):
    """Return the one job of a run that reads standard input (``-``) or writes standard output (``-o -``)."""
    import sys

    from ccstereo.runtime.errors import OptionError
    from ccstereo.runtime.media import probe
    from ccstereo.runtime.write_plan import FileJob, WritePlan
    from ccstereo.runtime.writers import PIPE, PIPE_FORMATS

    if len(inputs) != 1:
        raise OptionError("- (standard input) and -o - take exactly one input")
    if elsewhere:
        raise OptionError("- and -o - run here: not with --ray or --view")
    if out is None:
        raise OptionError("reading standard input: give -o FILE, or -o - for standard output")
    if out == "-" and fmt is not None and fmt not in PIPE_FORMATS:
        raise OptionError(f"-o -: {fmt} cannot be written to a pipe; choose --format {' / '.join(PIPE_FORMATS)}")
    for name, stream, given in (("input", sys.stdin, inputs[0] == PIPE), ("output", sys.stdout, out == "-")):
        if given and stream.isatty():
            raise OptionError(f"standard {name} is a terminal: connect a pipe or name a file")
    writes = WritePlan([] if inputs[0] == PIPE else inputs)
    if report is not None:
        writes.claim(report, "--report")
    if inputs[0] != PIPE:  # a file to standard output: probed like any file, its output is the pipe
        try:
            return [FileJob(inputs[0], probe(inputs[0]), PIPE)]
        except CCStereoError as exc:
            return [FileJob(inputs[0], error=exc)]
    target = PIPE if out == "-" else writes.claim(Path(out), "output of -")
    return [FileJob(PIPE, None, target)]


def _run(jobs, where: tuple, options, hop_s, quiet: bool):
    """Run the planned jobs here or on Ray (``where``: model, LoadOptions, ScaleOptions), showing them; return
    (results, summary)."""
    from ccstereo.runtime.console import ConsoleEvents, say
    from ccstereo.runtime.jobs import LocalExecutor, model_rate_hz, run_files, with_hop_seconds

    model, load, scale = where
    on_ray = bool(scale.ray or scale.ray_address)
    try:
        if on_ray:
            from ccstereo.runtime.ray_executor import RayExecutor

            executor = RayExecutor(model, load, scale)
            options = with_hop_seconds(options, hop_s, model_rate_hz(model) if hop_s is not None else 0)
        else:
            from ccstereo.runtime.binauralizer import Binauralizer

            if not quiet:
                _say_as_it_comes("ccstereo.runtime.tuning", logging.INFO)  # a first run's engine timing
            engine = Binauralizer.load(model, load)
            _say_as_it_comes("ccstereo.runtime.live", logging.WARNING)
            options = with_hop_seconds(options, hop_s, engine.config.sample_rate_hz)
            engine.window_plan(options)  # an impossible hop is a usage error before any file is touched
            if not quiet:
                say(f"backend: {engine.backend.name} ({engine.reason})")
            executor = LocalExecutor(engine)
    except CCStereoError as exc:
        raise _usage_error(str(exc)) from exc
    with ConsoleEvents(quiet, on_ray) as events:
        results, summary = run_files(jobs, options, executor, events)
    if on_ray or (len(results) > 1 and not quiet):
        say(summary.line())
    return results, summary


def _say_as_it_comes(name: str, level: int) -> None:
    """Each record of the logger ``name`` at ``level`` or above is a line on standard error as it happens (--live:
    each change of degradation level; a first run: the engine timing's steps)."""
    import sys

    logger = logging.getLogger(name)
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        logger.propagate = False
    logger.setLevel(min(level, logger.getEffectiveLevel()))


def _guarded(run, to_pipe: bool = False):
    """Return ``run()``; interrupts become exit 130 / 143 with a line that says nothing partial is left (or, on
    standard output, that what was sent is a finished container)."""
    from ccstereo.runtime.interrupts import Terminated, signals_as_exceptions

    left = "the output sent so far is complete" if to_pipe else "no partial output left"
    try:
        with signals_as_exceptions():
            return run()
    except KeyboardInterrupt:
        typer.echo(f"interrupted: {left}", err=True)
        raise typer.Exit(130) from None
    except Terminated as ended:
        typer.echo(f"terminated ({ended.name}): {left}", err=True)
        raise typer.Exit(128 + ended.signum) from None


def _view_last(results) -> None:
    """ccs-run --view: the listening page of the last output written (or found done), until Ctrl-C."""
    from ccstereo.runtime.view.cli import serve
    from ccstereo.runtime.view.page import build_view

    done = [r for r in results if r.status in ("ok", "skipped") and r.output]
    if not done:
        typer.echo("--view: no output to show", err=True)
        return
    last = done[-1]
    try:
        serve(build_view(Path(last.output), Path(last.input), None, last.to_dict() if last.status == "ok" else None))
    except CCStereoError as exc:
        typer.echo(f"error: --view: {' '.join(str(exc).split())}", err=True)


if __name__ == "__main__":
    app()
