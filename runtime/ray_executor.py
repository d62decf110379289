"""``RayExecutor``: the jobs of a run (``ccstereo.runtime.jobs``) on Ray worker actors, on this machine or a
cluster; every Ray-specific setting and patch of the project is in this module.

The jobs arrive planned (probed, outputs claimed) and travel to the workers as they are: a worker never probes or
plans again. Each worker is an actor that loads the model and picks ``auto`` on its own hardware once, then runs
whole files with the one implementation there is (``jobs.run_job`` -> ``Binauralizer.process``) and returns a
``FileResult``, the only thing that crosses the Ray boundary. Files go out largest first, one per idle worker;
while a Ray started for the run comes up (seconds), the driver process itself works through the queue, and stops
taking files when the first worker is up (the file it is on is finished before the workers start: they share
these cores). A worker that dies mid-file (killed process, lost node) costs a retry of that file only: the driver
starts a new actor in its place, removes the temporaries the dead one left (``atomic.remove_partials_of``) and
sends the file again. Ray is imported only here and only when ``--ray`` is given
(``pip install 'ccstereo-deploy[ray]'``); its own logs stay in its session folder, not on the user's terminal.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ccstereo.runtime.errors import CCStereoRuntimeError, OptionError
from ccstereo.runtime.interrupts import Waitable
from ccstereo.runtime.jobs import Events, FileResult
from ccstereo.runtime.options import LoadOptions, RunOptions
from ccstereo.runtime.write_plan import FileJob

RAY_MISSING = "--ray needs Ray: pip install 'ccstereo-deploy[ray]' (or pip install -e '.[ray]' in a checkout)"


@dataclass(frozen=True)
class ScaleOptions:
    """Where and how wide a ``--ray`` run goes."""

    ray: bool = False
    ray_address: str | None = None  # None with --ray: a Ray started on this machine for the run
    workers: int | None = None  # None: as many as the cluster's CPUs allow at cpus_per_worker
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0
    retries: int = 2  # attempts after a worker died mid-file

    def __post_init__(self) -> None:
        if self.workers is not None and self.workers < 1:
            raise OptionError(f"--workers must be at least 1, got {self.workers}")
        if not self.cpus_per_worker > 0 or self.gpus_per_worker < 0:
            raise OptionError("--cpus-per-worker must be > 0 and --gpus-per-worker >= 0")


def import_ray():
    try:
        import ray
    except ImportError as exc:
        raise OptionError(RAY_MISSING) from exc
    return ray


class FileWorker:
    """A Ray actor (or the driver's own helper): one loaded model; jobs in, ``FileResult`` out (never raises)."""

    def __init__(self, model: str | None, load: LoadOptions, cpus: float | None = None) -> None:
        from ccstereo.runtime.binauralizer import Binauralizer
        from ccstereo.runtime.cpu_features import usable_cpus
        from ccstereo.runtime.options import quiet_libraries

        quiet_libraries()  # a worker on another node does not inherit the driver's environment
        if load.threads is None and cpus is not None and int(cpus) < len(usable_cpus()):
            # a share of this node: as many threads as CPUs reserved; a whole node: the tuned setting, as one
            # process on it would run (and its tuning cache serves both)
            load = dataclasses.replace(load, threads=max(1, int(cpus)))
        self.engine = Binauralizer.load(model, load)

    def ready(self) -> tuple[str, int]:
        """Answered once the model is loaded: who writes this worker's temporaries (``atomic.writer_id``)."""
        from ccstereo.atomic import writer_id

        return writer_id()

    def run(self, job: FileJob, options: RunOptions, progress=None, worker: str = "ray") -> FileResult:
        from ccstereo.runtime.jobs import run_job

        return run_job(self.engine, job, options, progress, worker)


@dataclass
class _Attempt:
    job: FileJob
    number: int  # 1 for the first


class RayExecutor:
    """The jobs of a run on Ray worker actors: largest file first, one file per idle worker, a file whose worker
    died sent again (``scale.retries`` times) after that worker's temporaries are removed."""

    def __init__(self, model: Path | None, load: LoadOptions, scale: ScaleOptions) -> None:
        import importlib.util

        if importlib.util.find_spec("ray") is None:
            raise OptionError(RAY_MISSING)
        self.model = None if model is None else str(Path(model).resolve())
        self.load, self.scale = load, scale

    def run(self, jobs: list[FileJob], options: RunOptions, events: Events) -> list[FileResult]:
        # workers may run elsewhere (a cluster with shared storage): they get absolute paths
        absolute = [_absolute(job) for job in jobs]
        results: dict[Path, FileResult] = {}
        for given, job in zip(jobs, absolute, strict=True):
            if given.error is not None:  # known before any worker: reported at once, naming the file as given
                results[job.path] = failed(given, given.error)
                events.finished(results[job.path])
        jobs = absolute
        queue = sorted((j for j in jobs if j.error is None), key=_size, reverse=True)
        if not queue:  # nothing a worker could do: no Ray started for it
            return [results[job.path] for job in jobs]
        # A Ray started here takes seconds to come up: this process loads the model now and works meanwhile. A
        # running cluster is joined at once: its workers load the model while this process waits.
        helper = None if self.scale.ray_address or not queue else _WhileRayStarts(self.model, self.load)
        ray = None
        orphans: list[tuple[Path, tuple[str, int]]] = []
        try:
            if helper is not None:
                helper.begin(queue, options, events.finished)
            ray = import_ray()
            workers = _up(ray, self.model, self.load, self.scale, len(queue))
            sending = _Sending(ray, workers[0], options, self.scale.retries, events.finished, orphans)
            results.update(_on_workers(sending, workers[1], helper, queue))
        finally:
            if helper is not None:
                helper.abort()
            if ray is not None:
                ray.shutdown()  # a Ray of our own: all of it
            sweep_orphans(orphans)
        return [results[job.path] for job in jobs]


def failed(job: FileJob, exc: BaseException, attempts: int = 1) -> FileResult:
    """The result of a job that could not run (a planning error, a worker that died too often)."""
    from ccstereo.runtime.errors import failure_line

    message, internal = failure_line(job.path, exc)
    media_s = job.info.duration_s if job.info is not None else 0.0
    return FileResult(str(job.path), "failed", error=message, internal=internal, media_s=media_s, attempts=attempts)


def _absolute(job: FileJob) -> FileJob:
    target = None if job.target is None else Path(os.path.abspath(job.target))
    return dataclasses.replace(job, path=job.path.resolve(), target=target)


def _up(ray, model, load: LoadOptions, scale: ScaleOptions, files: int) -> tuple[Callable, list]:
    """Join or start Ray and start the workers (as many as there are files at most); return (a function that
    starts one more worker, the workers started)."""
    _init(ray, scale)
    start, count = _worker_factory(ray, model, load, scale)
    return start, [start() for _ in range(min(count, files))]


@dataclass(frozen=True)
class _Sending:
    """What sending jobs to workers needs: Ray, how to start a worker, the run's options, the retries, where a
    finished result goes."""

    ray: Any
    start: Callable
    options: RunOptions
    retries: int
    finished: Callable[[FileResult], None]
    # what workers were writing when the run ended early (Ctrl-C, an error): (output, writer id) each, for
    # ``sweep_orphans`` once Ray is shut down
    orphans: list[tuple[Path, tuple[str, int]]]


def _on_workers(sending: _Sending, idle: list, helper, queue: list[FileJob]) -> dict[Path, FileResult]:
    """Once the first worker is up, the driver finishes its file (if it works) and the workers take the rest."""
    ray = sending.ray
    if idle:  # the first worker up ends the driver's share (one that fails is replaced by _schedule)
        ray.wait([worker.ready.remote() for worker in idle], num_returns=1)
    done: dict[Path, FileResult] = {}
    if helper is not None:  # a Ray of our own runs on these same cores: the driver's file first, then Ray's
        helper.stop()
        done = helper.join()
    results = _schedule(sending, idle, helper.rest() if helper else queue)
    results.update(done)
    return results


class _AbortedError(CCStereoRuntimeError):
    """Raised from the progress hook of the driver's own file to stop it (its output is removed)."""


class _WhileRayStarts:
    """The driver's own worker while a Ray started for the run comes up: a thread that loads the model and takes
    jobs from the queue (largest first) until ``stop``; ``abort`` also stops the file it is on, leaving nothing."""

    def __init__(self, model: str | None, load: LoadOptions) -> None:
        import threading

        self.queue: list[FileJob] = []
        self.lock, self.planned = threading.Lock(), threading.Event()
        self.stopped = self.aborted = False
        self.ended: BaseException | None = None
        self.results: dict[Path, FileResult] = {}
        self.finished: Callable[[FileResult], None] = lambda result: None
        self.options = RunOptions()
        self.args = (model, load)
        self.thread = Waitable(self._work, name="ccs-driver-worker")
        self.thread.start()

    def begin(self, queue: list[FileJob], options: RunOptions, finished: Callable[[FileResult], None]) -> None:
        """Hand over the queue (largest first): the thread takes jobs from it once its model is loaded."""
        self.queue, self.options, self.finished = list(queue), options, finished
        self.planned.set()

    def _next(self) -> FileJob | None:
        with self.lock:
            return None if self.stopped or not self.queue else self.queue.pop(0)

    def _work(self) -> None:
        from ccstereo.runtime.backends.onnxruntime import sleeping_threads

        try:
            with sleeping_threads():  # Ray starts on these same cores meanwhile
                worker = FileWorker(*self.args)
        except Exception:  # noqa: BLE001 - the Ray workers load the same model and report what is wrong
            return

        def progress(done_s: float, wall_s: float) -> None:
            if self.aborted:
                raise _AbortedError

        self.planned.wait()
        while (job := self._next()) is not None:
            try:
                result = worker.run(job, self.options, progress, worker="driver (while Ray started)")
            except BaseException as exc:  # noqa: BLE001 - an interrupt that surfaced here: join raises it
                self.ended = exc
                return
            if self.aborted:
                return
            self.results[job.path] = result
            self.finished(result)

    def stop(self) -> None:
        with self.lock:
            self.stopped = True

    def rest(self) -> list[FileJob]:
        with self.lock:
            return list(self.queue)

    def join(self) -> dict[Path, FileResult]:
        """The files this thread finished; the interrupt that ended it mid-file, if any, raised here."""
        self.thread.wait()
        if self.ended is not None:
            raise self.ended
        return self.results

    def abort(self) -> None:
        self.stop()
        self.aborted = True
        self.planned.set()
        self.thread.wait(timeout=60)


def _init(ray, scale: ScaleOptions) -> None:
    """Join the cluster at ``scale.ray_address``, or start a Ray of our own on 127.0.0.1 for this run: its logs
    stay in its session folder, and no idle Python workers are started beside ours (two cores are not spare)."""
    settings = {
        "address": scale.ray_address or "local",  # "local": always a new Ray, never one found running here
        "log_to_driver": False,
        "logging_level": logging.ERROR,
        "include_dashboard": False,
        "ignore_reinit_error": True,
        "configure_logging": True,
    }
    if scale.ray_address:
        ray.init(**settings)
        return
    # Ray starts workers at nice 15; a Ray of our own runs them at the priority of the process the user started
    # (at 15, a worker loading its model beside the driver's own file got no CPU until that file was done). A
    # cluster's workers keep the cluster's setting: the driver does no work there. (Asking for nice 0 per actor, as
    # a runtime_env variable, cost 0.5-0.9 s more per worker start: a worker process of its own environment.)
    system = {"enable_worker_prestart": False, "prestart_worker_first_driver": False, "worker_niceness": 0}
    with _loopback_only(ray), _without_cluster_helpers(ray), _spawned_without_preexec(ray):
        ray.init(**settings, _node_ip_address="127.0.0.1", _system_config=system)


@contextlib.contextmanager
def _spawned_without_preexec(ray):
    """Start Ray's processes with no Python code between fork and exec. Ray passes ``preexec_fn`` (block SIGINT, ask
    for SIGKILL at the parent's death); with one, CPython runs its after-fork clean-up in the child, which frees the
    other threads' thread-local objects: a PyAV scaler freed there waits forever on worker threads the child does
    not have, and ``ray.init`` never returns (seen while the driver decoded beside Ray's start). SIGINT is blocked
    in the spawning thread instead (a child inherits that thread's mask through fork and exec), and the death
    signal by util-linux's ``setpriv --pdeathsig KILL``, which execs the command (the main thread starts Ray, so
    a driver killed with SIGKILL takes its Ray's servers with it; without setpriv they would outlive it)."""
    services = getattr(getattr(ray, "_private", None), "services", None)
    original = getattr(services, "ConsolePopen", None)
    if original is None:
        yield
        return

    wrapper = _death_signal_wrapper()

    def popen(command, *args, **kwargs):
        if kwargs.pop("preexec_fn", None) is not None and isinstance(command, list | tuple):
            command = [*wrapper, *command]
        before = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            return original(command, *args, **kwargs)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, before)

    services.ConsolePopen = popen
    try:
        yield
    finally:
        services.ConsolePopen = original


def _death_signal_wrapper() -> list[str]:
    """``setpriv --pdeathsig KILL --`` where util-linux's setpriv is there and knows the option, else nothing."""
    setpriv = shutil.which("setpriv")
    if setpriv is None or not sys.platform.startswith("linux"):
        return []
    try:
        probe = subprocess.run([setpriv, "--pdeathsig", "KILL", "--", "true"], capture_output=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return []
    return [setpriv, "--pdeathsig", "KILL", "--"] if probe.returncode == 0 else []


@contextlib.contextmanager
def _without_cluster_helpers(ray):
    """Start a Ray of our own without its autoscaler monitor and its log monitor: one fixed node has nothing to
    scale, and worker logs are not forwarded here (``log_to_driver=False``). Each is a Python process importing Ray
    beside the driver's first file (0.4-0.6 CPU-seconds each, measured), and the monitor took 1.0 s of Ray's
    1.1-1.4 s stop to answer SIGTERM. ``ray.init`` has no parameter for them; its node parameters get these two
    defaults while it starts (a Ray without that class starts as usual)."""
    module = getattr(getattr(ray, "_private", None), "parameter", None)
    original = getattr(module, "RayParams", None)
    if original is None:
        yield
        return

    class _Lean(original):  # type: ignore[misc, valid-type]
        def __init__(self, *args, **kwargs) -> None:
            kwargs.setdefault("no_monitor", True)
            kwargs.setdefault("include_log_monitor", False)
            super().__init__(*args, **kwargs)

    module.RayParams = _Lean
    try:
        yield
    finally:
        module.RayParams = original


@contextlib.contextmanager
def _loopback_only(ray):
    """Keep a Ray started for the run on the loopback interface. Ray (2.60 measured) swaps a node address of
    127.0.0.1 for the machine's network address, and its GCS, raylet and workers then listen on every interface;
    with its single-machine setting (the one it uses on macOS and Windows) the node stays on 127.0.0.1 and every
    server it starts binds there. The setting is read once, when Ray is imported, so the module's copy is set too;
    both are put back once the node is up (Ray asks its node for the address from then on)."""
    name = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
    constants = getattr(getattr(ray, "_private", None), "ray_constants", None)
    before_env, before_flag = os.environ.get(name), getattr(constants, "ENABLE_RAY_CLUSTER", None)
    os.environ[name] = "0"  # the processes Ray starts (agents, workers) read it too
    if before_flag is not None:
        constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        if before_env is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = before_env
        if before_flag is not None:
            constants.ENABLE_RAY_CLUSTER = before_flag


def _worker_factory(ray, model: Path | None, load: LoadOptions, scale: ScaleOptions) -> tuple[Callable, int]:
    """Return (a function that starts one worker actor, how many workers the run uses)."""
    cpus = ray.cluster_resources().get("CPU", 1.0)
    count = scale.workers or max(1, int(cpus // scale.cpus_per_worker))
    # A dead worker is replaced by the driver (a new actor), not restarted by Ray: a task sent to an actor
    # that is still restarting fails at once, which would count as another attempt of the same file.
    actor = ray.remote(num_cpus=scale.cpus_per_worker, num_gpus=scale.gpus_per_worker, max_restarts=0)(FileWorker)
    cpus_each = scale.cpus_per_worker  # a worker uses no more threads than the CPUs it reserved (FileWorker)
    return (lambda: actor.remote(None if model is None else str(model), load, cpus_each)), count


def _schedule(sending: _Sending, idle: list, jobs: list[FileJob]) -> dict[Path, FileResult]:
    """Keep every worker busy with one job at a time, in the order given (largest first); a job whose worker died
    goes to a new worker (after the dead one's temporaries of its output are removed), ``scale.retries`` times at
    most. A run that ends early (Ctrl-C) leaves what its workers were writing in ``sending.orphans``."""
    ray = sending.ray
    queue = [_Attempt(job, 1) for job in jobs]
    writers = {id(worker): worker.ready.remote() for worker in idle}  # who writes each worker's temporaries
    running: dict = {}  # object ref -> (worker, attempt)
    results: dict[Path, FileResult] = {}
    sent: list = []  # the (worker, attempt) being sent: a job may reach its worker before its ref is known
    try:
        _send_all(sending, queue, idle, (running, writers, sent), results)
    except BaseException:
        sending.orphans.extend(_writing(ray, [*running.values(), *sent], writers))
        raise
    return results


def _send_all(sending: _Sending, queue: list, idle: list, state: tuple, results: dict[Path, FileResult]) -> None:
    """``_schedule``'s loop; ``state``: (running refs, writer ids, the job being sent), which it keeps current."""
    from ccstereo.atomic import remove_partials_of

    ray, start = sending.ray, sending.start
    running, writers, sent = state
    while queue or running:
        while queue and idle:
            worker, attempt = idle.pop(), queue.pop(0)
            sent.append((worker, attempt))
            running[worker.run.remote(attempt.job, sending.options)] = (worker, attempt)
            sent.clear()
        done, _ = ray.wait(list(running), num_returns=1)
        worker, attempt = running.pop(done[0])
        try:
            result = ray.get(done[0])
            idle.append(worker)
        except ray.exceptions.RayActorError as exc:
            replacement = start()
            writers[id(replacement)] = replacement.ready.remote()
            idle.append(replacement)
            with contextlib.suppress(Exception):  # a worker that died before it answered wrote nothing
                if attempt.job.target is not None:
                    remove_partials_of(attempt.job.target, tuple(ray.get(writers[id(worker)], timeout=5)))
            if attempt.number <= sending.retries:
                queue.insert(0, _Attempt(attempt.job, attempt.number + 1))
                continue
            result = failed(attempt.job, CCStereoRuntimeError(f"worker died: {exc}"), attempt.number)
        result.attempts = attempt.number
        results[attempt.job.path] = result
        sending.finished(result)


def _writing(ray, pairs: list, writers: dict) -> list[tuple[Path, tuple[str, int]]]:
    """(output, writer id) of each (worker, attempt) in ``pairs`` whose worker had answered who it is."""
    found = []
    for worker, attempt in pairs:
        with contextlib.suppress(Exception):  # a worker that never answered wrote nothing
            if attempt.job.target is not None:
                found.append((attempt.job.target, tuple(ray.get(writers[id(worker)], timeout=2))))
    return found


def sweep_orphans(orphans: list[tuple[Path, tuple[str, int]]], wait_s: float = 10.0) -> None:
    """Remove the temporaries that workers stopped mid-file left, once Ray is shut down. A worker process on this
    machine is waited for (``wait_s`` at most) before its files are swept: one still ending could make a file after
    the sweep. A worker on another machine is not visible from here: its files (shared storage) are swept at once."""
    from ccstereo.atomic import remove_partials_of, writer_id

    host, deadline = writer_id()[0], time.monotonic() + wait_s
    for target, writer in orphans:
        if writer[0] == host:
            while _running(writer[1]) and time.monotonic() < deadline:
                time.sleep(0.02)
        remove_partials_of(target, writer)


def _running(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie (one that has ended and writes nothing more)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")


def _size(job: FileJob) -> int:
    try:
        return job.path.stat().st_size
    except OSError:
        return 0
