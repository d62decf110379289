"""The jobs layer: files in, one typed result per file out, wherever they ran.

``plan_jobs`` resolves everything about a run's files once, before any work: the inputs, each file's probe and
output path (claimed in the run's ``WritePlan``, so no two files write one output and no output is an input), the
``--report`` path. ``run_files(jobs, options, executor, events)`` hands the jobs to an executor — ``LocalExecutor``
(one loaded engine, this process) or ``ccstereo.runtime.ray_executor.RayExecutor`` — and returns a ``FileResult``
per job, in job order, and the run's ``Summary``. A ``FileResult`` is the only thing that crosses the Ray boundary
and its ``to_dict`` is the only report schema (``write_report``, version ``REPORT_VERSION``); readers take fields
(``engine``, ``precision``, ``status``...), never parse names.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Protocol

from ccstereo.runtime.options import RunOptions
from ccstereo.runtime.report import RunReport
from ccstereo.runtime.write_plan import FileJob, WritePlan

REPORT_VERSION = 1
STATUSES = ("ok", "skipped", "failed")


@dataclass
class FileResult:
    """What became of one file. ``run`` holds the processing details of a file that ran (ok or skipped)."""

    input: str
    status: str  # ok | skipped | failed
    output: str | None = None
    error: str | None = None  # failed: one line naming the file and the cause
    internal: bool = False  # failed by a defect of ours, not of the input
    media_s: float = 0.0  # the input's probed duration (0 when it could not be probed)
    wall_s: float = 0.0
    cpu_s: float = 0.0  # CPU seconds of the process that ran it, while it ran
    engine: str = ""  # the engine that ran it, e.g. openvino-cpu-int8
    precision: str = ""  # fp32 | fp16 | bf16 | int8
    attempts: int = 1  # > 1: a worker died mid-file and it was sent again
    host: str = ""
    pid: int = 0
    worker: str = "local"  # local | ray | driver (while Ray started)
    run: RunReport | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, not {self.status!r}")

    def to_dict(self) -> dict[str, Any]:
        """The report entry: the processing details (when it ran) and this result's fields over them."""
        entry = self.run.to_dict() if self.run is not None else {}
        entry.pop("backend", None)  # named once: ``engine``
        entry.update({f.name: getattr(self, f.name) for f in fields(self) if f.name != "run"})
        return entry


@dataclass(frozen=True)
class Summary:
    """The totals of a run."""

    ok: int
    skipped: int
    failed: int
    retried: int
    media_hours: float  # of the files done (ok)
    wall_s: float
    cpu_s: float

    @property
    def media_hours_per_wall_hour(self) -> float:
        return self.media_hours / (self.wall_s / 3600) if self.wall_s > 0 else 0.0

    @classmethod
    def of(cls, results: list[FileResult], wall_s: float) -> Summary:
        counts = {status: sum(r.status == status for r in results) for status in STATUSES}
        media_h = sum(r.media_s for r in results if r.status == "ok") / 3600
        retried = sum(r.attempts > 1 for r in results)
        cpu_s = round(sum(r.cpu_s for r in results), 3)
        return cls(counts["ok"], counts["skipped"], counts["failed"], retried, media_h, round(wall_s, 3), cpu_s)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "media_hours_per_wall_hour": self.media_hours_per_wall_hour}

    def line(self) -> str:
        return (
            f"files: {self.ok} ok, {self.skipped} skipped, {self.failed} failed ({self.retried} retried); "
            f"{self.media_hours:.3f} media hours in {self.wall_s:.1f} s = {self.media_hours_per_wall_hour:.1f} media "
            "hours per wall hour"
        )


class Events:
    """What a run tells its caller as it goes; the default hears nothing. Called in the driver process."""

    def planned(self, jobs: list[FileJob]) -> None:
        """Every job is known (and probed): before the first file starts."""

    def started(self, job: FileJob) -> None:
        """A file starts here (local runs; Ray workers report only when a file is finished)."""

    def progress(self, done_s: float, wall_s: float) -> None:
        """Media seconds of the current local file done after ``wall_s`` seconds."""

    def finished(self, result: FileResult) -> None:
        """A file is finished (ok, skipped or failed)."""


class Executor(Protocol):
    def run(self, jobs: list[FileJob], options: RunOptions, events: Events) -> list[FileResult]:
        """Run every job; return their results in job order. A failing file is a result, never an exception."""
        ...


def plan_jobs(files: list[Path], out: Path | None, fmt: str | None, report: Path | None = None) -> list[FileJob]:
    """Probe every file once and claim its output (and ``report``) in one ``WritePlan``; a file that cannot be
    probed or written carries its error (it fails alone). Raises OutputError when ``report`` cannot be written."""
    from ccstereo.runtime.write_plan import plan_files

    writes = WritePlan(files)
    jobs = plan_files(files, out, fmt, writes)
    if report is not None:
        writes.claim(report, "--report")
    writes.tidy()
    return jobs


def run_job(engine, job: FileJob, options: RunOptions, progress=None, worker: str = "local") -> FileResult:
    """Run one job on a loaded ``Binauralizer``; a failure is a result (one line), never raised."""
    import os
    import socket

    from ccstereo.runtime.errors import failure_line
    from ccstereo.runtime.interrupts import raise_if_signalled

    started, cpu = time.perf_counter(), time.process_time()
    result = FileResult(str(job.path), "failed", host=socket.gethostname(), pid=os.getpid(), worker=worker)
    result.engine, result.precision = engine.backend.name, engine.backend.precision
    result.media_s = job.info.duration_s if job.info is not None else 0.0
    try:
        if job.error is not None:
            raise job.error
        run = engine.process(job.path, job.target, options, progress, job.info)  # probed once, not again
        result.input, result.status, result.output, result.run = run.input, run.status, run.output, run
    except Exception as exc:  # noqa: BLE001 - one failing file never stops the others
        raise_if_signalled()  # an interrupt that a C extension turned into another error still ends the run
        result.error, result.internal = failure_line(job.path, exc)
    result.wall_s, result.cpu_s = _since(started), _cpu(cpu)
    return result


def _since(started: float) -> float:
    return round(time.perf_counter() - started, 3)


def _cpu(started: float) -> float:
    return round(time.process_time() - started, 3)


class LocalExecutor:
    """The files one after another in this process, on one loaded engine."""

    def __init__(self, engine) -> None:
        self.engine = engine

    def run(self, jobs: list[FileJob], options: RunOptions, events: Events) -> list[FileResult]:
        results = []
        for job in jobs:
            events.started(job)
            result = run_job(self.engine, job, options, events.progress)
            events.finished(result)
            results.append(result)
        return results


def run_files(jobs: list[FileJob], options: RunOptions, executor: Executor, events: Events | None = None):
    """Run ``jobs`` on ``executor``; return (a FileResult per job in job order, the run's Summary)."""
    events = events or Events()
    started = time.perf_counter()
    events.planned(jobs)
    results = executor.run(jobs, options, events)
    if len(results) != len(jobs):
        raise RuntimeError(f"the executor returned {len(results)} results for {len(jobs)} files")
    return results, Summary.of(results, time.perf_counter() - started)


def report_document(results: list[FileResult], summary: Summary) -> dict[str, Any]:
    """The report file's content: the one schema, local or Ray."""
    return {
        "schema": "ccstereo-run-report",
        "version": REPORT_VERSION,
        "summary": summary.to_dict(),
        "files": [r.to_dict() for r in results],
    }


def write_report(path: Path, results: list[FileResult], summary: Summary) -> Path:
    from ccstereo.atomic import write_text

    return write_text(path, json.dumps(report_document(results, summary), indent=2))


def read_report(path: Path) -> list[dict[str, Any]]:
    """Return the file entries of a report ``write_report`` wrote; raise ValueError for anything else."""
    data = json.loads(Path(path).read_text())
    if not isinstance(data, dict) or data.get("schema") != "ccstereo-run-report":
        raise ValueError("not a ccs-run report")
    if data.get("version") != REPORT_VERSION:
        raise ValueError(f"report version {data.get('version')!r}; this version reads {REPORT_VERSION}")
    files = data.get("files")
    if not isinstance(files, list) or not all(isinstance(e, dict) for e in files):
        raise ValueError("its 'files' is not a list of entries")
    return files


def with_hop_seconds(options: RunOptions, hop_s: float | None, rate_hz: int) -> RunOptions:
    """Return ``options`` with a hop given in seconds as samples at the model's rate: done once per run, for every
    file and worker."""
    import dataclasses

    return options if hop_s is None else dataclasses.replace(options, hop_samples=round(hop_s * rate_hz))


def model_rate_hz(model: Path | None) -> int:
    """The sample rate of an exported model (its metadata), without loading it: for a run on Ray workers."""
    from ccstereo.runtime.backends.select import default_model_path
    from ccstereo.runtime.model_info import read_onnx_info

    path = default_model_path() if model is None else Path(model)
    return read_onnx_info(path / "model.onnx" if path.is_dir() else path).config.sample_rate_hz
