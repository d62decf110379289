"""What ``ccs-run`` shows while it works: a progress bar (rich; off with --quiet or when stderr is not a terminal)
and one line per finished file, the same for a run here and on Ray. It only listens to the run's events."""

from __future__ import annotations

import os
import sys
import time
from typing import Any

from ccstereo.runtime.errors import printable
from ccstereo.runtime.jobs import Events, FileResult
from ccstereo.runtime.write_plan import FileJob


def say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


class ConsoleEvents(Events):
    """Rows: all files, the current file in media seconds (here) or media seconds over all files (Ray)."""

    def __init__(self, quiet: bool, on_ray: bool) -> None:
        self.bar: Any = _NoBar() if quiet or not _maybe_terminal() else _rich_bar()
        self.quiet, self.on_ray = quiet, on_ray
        self.count = self.finished_files = 0
        self.task: Any = None
        self.media_total_s = self.media_done_s = self.total_s = 0.0

    def __enter__(self) -> ConsoleEvents:
        self.bar.start()
        return self

    def __exit__(self, *exc) -> None:
        self.bar.stop()

    def planned(self, jobs: list[FileJob]) -> None:
        self.count = len(jobs)
        self.files = self.bar.add_task("all files", total=self.count, stats=f"0/{self.count} files")
        if self.on_ray:  # files finish whole, on other processes: a row of media seconds over all files
            self.media_total_s = sum(j.info.duration_s for j in jobs if j.info is not None)
            self.media = self.bar.add_task("media seconds", total=self.media_total_s or None, stats="")
            self.t0 = time.perf_counter()

    def started(self, job: FileJob) -> None:
        self.total_s = job.info.duration_s if job.info is not None else 0.0
        self.task = self.bar.add_task(job.path.name, total=self.total_s or None, stats="")

    def progress(self, done_s: float, wall_s: float) -> None:
        speed = done_s / wall_s if wall_s else 0.0
        stats = f"{done_s:7.1f}/{self.total_s:.1f} s {speed:5.1f}x realtime"
        self.bar.update(self.task, completed=done_s, stats=stats)

    def finished(self, result: FileResult) -> None:
        if self.task is not None:
            self.bar.remove_task(self.task)
            self.task = None
        self.finished_files += 1
        self.bar.update(self.files, completed=self.finished_files, stats=f"{self.finished_files}/{self.count} files")
        if self.on_ray:
            self.media_done_s += result.media_s
            speed = self.media_done_s / max(1e-9, time.perf_counter() - self.t0)
            stats = f"{self.media_done_s:.0f}/{self.media_total_s:.0f} s {speed:5.1f}x realtime"
            self.bar.update(self.media, completed=self.media_done_s, stats=stats)
        for line in result_lines(result, self.quiet):
            say(line)


def _maybe_terminal() -> bool:
    """Whether rich may see a terminal on stderr (a tty, or one its environment variables force)."""
    return sys.stderr.isatty() or any(v in os.environ for v in ("FORCE_COLOR", "FORCE_TERMINAL", "TTY_INTERACTIVE"))


def _rich_bar() -> Any:
    """rich's progress display on stderr (disabled when rich finds no terminal there)."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    console = Console(stderr=True)
    columns = (TextColumn("{task.description:30.30}"), BarColumn(), TextColumn("{task.fields[stats]}"))
    return Progress(*columns, TimeRemainingColumn(), console=console, disable=not console.is_terminal)


class _NoBar:
    """No progress display (--quiet, or no terminal): rich is not even imported, ~0.05 s of start-up."""

    def start(self) -> None: ...
    def stop(self) -> None: ...
    def add_task(self, *_args, **_kw) -> int:
        return 0

    def update(self, *_args, **_kw) -> None: ...
    def remove_task(self, *_args) -> None: ...


def result_lines(result: FileResult, quiet: bool) -> list[str]:
    """The terminal lines of one finished file: always its error, skip and anything changed about it; with
    ``quiet`` nothing else."""
    path = printable(result.input)
    if result.status == "failed":
        return [f"error: {result.error}"]
    run = result.run
    lines = []
    if result.status == "skipped":
        lines.append(f"skipped {path}: {printable(result.output)} exists (use --overwrite)")
    elif not quiet and run is not None:
        speed = f"{run.duration_s:.1f} s in {result.wall_s:.1f} s, {run.realtime_speed:.1f}x realtime"
        saved = run.crops_shared + run.crops_reused
        visual = f"; visual network skipped on {saved} of {run.windows} windows" if saved else ""
        where = "" if result.worker == "local" else f" [{result.worker} {result.host} {result.engine}]"
        again = f", attempt {result.attempts}" if result.attempts > 1 else ""
        lines.append(f"{path} -> {printable(result.output)} ({speed}{visual}{again}){where}")
    if run is None:
        return lines
    if run.visual_rate.startswith("exact ("):  # adaptive asked for, but this engine cannot: always said
        lines.append(f"{path}: visual rate {run.visual_rate}")
    if run.video_note:
        lines.append(f"{path}: video {run.video_note}")
    if run.live is not None and (not quiet or run.live["degradations"]):
        from ccstereo.runtime.live import describe

        lines.append(f"{path}: {describe(run.live)}")
    if result.status == "ok" and run.full_band and run.input_rate_hz not in (0, run.output_rate_hz):
        rates = f"{run.input_rate_hz} Hz -> {run.output_rate_hz} Hz"
        lines.append(f"{path}: the output's codec cannot take the input's rate: resampled ({rates})")
    if run.clip is not None and run.clip.describe():
        lines.append(f"{path}: {run.clip.describe()}")
    return lines
