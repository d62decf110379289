"""Scale-out on Ray: the files of a run spread over worker actors on one machine or a cluster.

Each worker is a Ray actor that loads the model and picks ``auto`` on its own hardware once, then binauralises
whole files with the one implementation there is (``Binauralizer.process``): atomic output (temporary file +
rename on the destination's filesystem), skip-existing unless ``--overwrite``, a bad file reported and never
stopping the job. Files go out largest first, one per idle worker; while a Ray started for the run comes up
(seconds), the driver process itself works through the queue, and stops taking files when the first worker is
up (the file it is on is finished before the workers start: they share these cores). A worker that dies
mid-file (killed process, lost node) costs a retry of that file only: the driver starts a new actor in its
place, removes the dead attempt's temporary file and sends the file again. Ray is imported only here and only
when ``--ray`` is given (``pip install 'ccstereo-deploy[ray]'``); its own logs stay in its session folder, not
on the user's terminal.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ccstereo.runtime.errors import CCStereoRuntimeError, OptionError, failure_line
from ccstereo.runtime.options import LoadOptions, RunOptions

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
    """A Ray actor: one loaded model, whole files in, per-file report dicts out (never raises for a bad file)."""

    def __init__(self, model: str | None, load: LoadOptions, cpus: float | None = None) -> None:
        from ccstereo.runtime.binauralizer import Binauralizer
        from ccstereo.runtime.entry import quiet_libraries

        quiet_libraries()  # a worker on another node does not inherit the driver's environment
        if load.threads is None and cpus is not None and int(cpus) < len(os.sched_getaffinity(0)):
            # a share of this node: as many threads as CPUs reserved; a whole node: the tuned setting, as one
            # process on it would run (and its tuning cache serves both)
            load = dataclasses.replace(load, threads=max(1, int(cpus)))
        self.engine = Binauralizer.load(model, load)
        self.host, self.pid = socket.gethostname(), os.getpid()

    def ready(self) -> bool:
        """Answered once the model is loaded (the actor's constructor has run)."""
        return True

    def process(self, path: str, out: str | None, options: RunOptions, progress=None) -> dict:
        started = time.perf_counter()
        try:
            entry = self.engine.process(path, out, options, progress).to_dict()
        except Exception as exc:  # noqa: BLE001 - one bad file is reported, the worker goes on
            message, internal = failure_line(path, exc)
            entry = {"input": path, "status": "failed", "error": message, "internal": internal}
            entry["wall_s"] = round(time.perf_counter() - started, 3)
        entry.update(host=self.host, pid=self.pid)
        return entry


@dataclass
class _Attempt:
    path: Path
    number: int  # 1 for the first


def run_files(
    files: list[Path],
    out: Path | None,
    model: Path | None,
    load: LoadOptions,
    options: RunOptions,
    scale: ScaleOptions,
    on_file: Callable[[dict], None] = lambda entry: None,
    on_plan: Callable[[float], None] = lambda media_s: None,
) -> tuple[list[dict], dict]:
    """Process ``files`` on Ray workers; return (per-file entries in input order, summary).

    ``on_plan`` gets the media seconds of the run once the files are probed; every entry given to ``on_file``
    carries ``media_s``, the seconds it accounts for (its probed duration; 0 when it could not be probed)."""
    import importlib.util

    if importlib.util.find_spec("ray") is None:
        raise OptionError(RAY_MISSING)
    started = time.perf_counter()
    # workers may run elsewhere (a cluster with shared storage): they get absolute paths
    files = [p.resolve() for p in files]
    out = None if out is None else Path(os.path.abspath(out))
    # A Ray started here takes seconds to come up: this process loads the model now and works meanwhile. A running
    # cluster is joined first: its workers load the model while the files are probed here.
    helper = None if scale.ray_address or not files else _WhileRayStarts(model, load, out, options)
    ray = workers = None
    try:
        if helper is None:
            ray = import_ray()
            workers = _up(ray, model, load, scale, len(files))
        clashes, durations = _plan(files, out, options)
        on_plan(sum(durations.values()))
        for path, entry in clashes.items():
            on_file(dict(entry, media_s=durations.get(path, 0.0)))
        queue = sorted((p for p in files if p not in clashes), key=_size, reverse=True)
        finished = _with_media(on_file, durations)
        if helper is not None:
            helper.begin(queue, finished)
            ray = import_ray()
            workers = _up(ray, model, load, scale, len(queue))
        entries = _on_workers(ray, workers, helper, queue, out, options, scale, finished)
    finally:
        if helper is not None:
            helper.abort()
        if ray is not None:
            ray.shutdown()  # a Ray of our own: all of it
    entries.update(clashes)
    return [entries[p] for p in files], summary(list(entries.values()), time.perf_counter() - started)


def _up(ray, model, load: LoadOptions, scale: ScaleOptions, files: int) -> tuple[Callable, list]:
    """Join or start Ray and start the workers (as many as there are files at most); return (a function that
    starts one more worker, the workers started)."""
    _init(ray, scale)
    start, count = _worker_factory(ray, model, load, scale)
    return start, [start() for _ in range(min(count, files))]


def _on_workers(ray, workers, helper, queue, out, options, scale, finished) -> dict[Path, dict]:
    """Once the first worker is up, the driver finishes its file (if it works) and the workers take the rest."""
    start, idle = workers
    if idle:  # the first worker up ends the driver's share (one that fails is replaced by _schedule)
        ray.wait([worker.ready.remote() for worker in idle], num_returns=1)
    done: dict[Path, dict] = {}
    if helper is not None:  # a Ray of our own runs on these same cores: the driver's file first, then Ray's
        helper.stop()
        done = helper.join()
    entries = _schedule(ray, start, idle, helper.rest() if helper else queue, out, options, scale, finished)
    entries.update(done)
    return entries


class _AbortedError(CCStereoRuntimeError):
    """Raised from the progress hook of the driver's own file to stop it (its output is removed)."""


class _WhileRayStarts:
    """The driver's own worker while a Ray started for the run comes up: a thread that loads the model and takes
    files from the queue (largest first) until ``stop``; ``abort`` also stops the file it is on, leaving nothing."""

    def __init__(self, model, load: LoadOptions, out: Path | None, options) -> None:
        import threading

        self.queue: list[Path] = []
        self.lock, self.planned = threading.Lock(), threading.Event()
        self.stopped = self.aborted = False
        self.entries: dict[Path, dict] = {}
        self.finished: Callable[[dict], None] = lambda entry: None
        self.args = (model, load, out, options)
        self.thread = threading.Thread(target=self._work, name="ccs-driver-worker", daemon=True)
        self.thread.start()

    def begin(self, queue: list[Path], finished: Callable[[dict], None]) -> None:
        """Hand over the queue (probed, largest first): the thread takes files from it once its model is loaded."""
        self.queue, self.finished = queue, finished
        self.planned.set()

    def _next(self) -> Path | None:
        with self.lock:
            return None if self.stopped or not self.queue else self.queue.pop(0)

    def _work(self) -> None:
        from ccstereo.runtime.backends.onnxruntime import sleeping_threads

        model, load, out, options = self.args
        try:
            with sleeping_threads():  # Ray starts on these same cores meanwhile
                worker = FileWorker(None if model is None else str(model), load)
        except Exception:  # noqa: BLE001 - the Ray workers load the same model and report what is wrong
            return

        def progress(done_s: float, wall_s: float) -> None:
            if self.aborted:
                raise _AbortedError

        self.planned.wait()
        while (path := self._next()) is not None:
            entry = worker.process(str(path), None if out is None else str(out), options, progress)
            if self.aborted:
                return
            self.entries[path] = dict(entry, attempts=1, worker="driver (while Ray started)")
            self.finished(self.entries[path])

    def stop(self) -> None:
        with self.lock:
            self.stopped = True

    def rest(self) -> list[Path]:
        with self.lock:
            return list(self.queue)

    def join(self) -> dict[Path, dict]:
        self.thread.join()
        return self.entries

    def abort(self) -> None:
        self.stop()
        self.aborted = True
        self.planned.set()
        self.thread.join(timeout=60)


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
    with _loopback_only(ray), _without_cluster_helpers(ray):
        ray.init(**settings, _node_ip_address="127.0.0.1", _system_config=system)


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


def _with_media(on_file: Callable[[dict], None], durations: dict[Path, float]) -> Callable[[dict], None]:
    def finished(entry: dict) -> None:
        on_file(dict(entry, media_s=durations.get(Path(entry["input"]), 0.0)))

    return finished


def _plan(files: list[Path], out: Path | None, options: RunOptions) -> tuple[dict[Path, dict], dict[Path, float]]:
    """Probe every file once: return (a failed entry for every file whose output is another file's, as one process
    refuses them: workers writing one output at once would leave only the last of them; each file's seconds)."""
    from ccstereo.runtime.binauralizer import output_format, output_path
    from ccstereo.runtime.media import MediaError, probe

    planned: dict[Path, Path] = {}
    clashes: dict[Path, dict] = {}
    durations: dict[Path, float] = {}
    for path in files:
        try:
            info = probe(path)
            durations[path] = info.duration_s
            target = output_path(path, out, output_format(path, options.fmt, info.video_codec, out))
        except (MediaError, CCStereoRuntimeError, OSError, ValueError):
            continue  # the worker reports what is wrong with it
        if target in planned:
            error = f"{path}: its output {target} is also the output of {planned[target]}"
            clashes[path] = {"input": str(path), "status": "failed", "error": error, "attempts": 0}
        else:
            planned[target] = path
    return clashes, durations


def _worker_factory(ray, model: Path | None, load: LoadOptions, scale: ScaleOptions) -> tuple[Callable, int]:
    """Return (a function that starts one worker actor, how many workers the run uses)."""
    cpus = ray.cluster_resources().get("CPU", 1.0)
    count = scale.workers or max(1, int(cpus // scale.cpus_per_worker))
    # A dead worker is replaced by the driver (a new actor), not restarted by Ray: a task sent to an actor
    # that is still restarting fails at once, which would count as another attempt of the same file.
    actor = ray.remote(num_cpus=scale.cpus_per_worker, num_gpus=scale.gpus_per_worker, max_restarts=0)(FileWorker)
    cpus_each = scale.cpus_per_worker  # a worker uses no more threads than the CPUs it reserved (FileWorker)
    return (lambda: actor.remote(None if model is None else str(model), load, cpus_each)), count


def _schedule(ray, start, idle: list, files: list[Path], out, options: RunOptions, scale, on_file) -> dict:
    """Keep every worker busy with one file at a time, in the order given (largest first); a file whose worker
    died goes to a new worker (after its temporary output is removed), ``scale.retries`` times at most."""
    queue = [_Attempt(p, 1) for p in files]
    running: dict = {}  # object ref -> (worker, attempt)
    entries: dict[Path, dict] = {}
    while queue or running:
        while queue and idle:
            worker, attempt = idle.pop(), queue.pop(0)
            ref = worker.process.remote(str(attempt.path), None if out is None else str(out), options)
            running[ref] = (worker, attempt)
        done, _ = ray.wait(list(running), num_returns=1)
        worker, attempt = running.pop(done[0])
        try:
            entry = ray.get(done[0])
            idle.append(worker)
        except ray.exceptions.RayActorError as exc:
            idle.append(start())
            _remove_partials(attempt.path, out)
            if attempt.number <= scale.retries:
                queue.insert(0, _Attempt(attempt.path, attempt.number + 1))
                continue
            entry = {"input": str(attempt.path), "status": "failed", "error": f"{attempt.path}: worker died: {exc}"}
        entry["attempts"] = attempt.number
        entries[attempt.path] = entry
        on_file(entry)
    return entries


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _remove_partials(source: Path, out: Path | None) -> None:
    """Remove what a worker that died left of ``source``'s output: its temporary files (``.<stem>.partial-*``)."""
    folder = source.parent if out is None else (out if out.is_dir() else out.parent)
    stem = f"{source.stem}.binaural" if out is None or out.is_dir() else out.stem
    for leftover in folder.glob(f".{stem}.partial-*"):
        leftover.unlink(missing_ok=True)


def summary(entries: list[dict], wall_s: float) -> dict:
    """Return the run's totals: files ok / skipped / failed, media hours, wall time, media hours per wall hour."""
    media_h = sum(e.get("duration_s", 0.0) for e in entries if e.get("status") == "ok") / 3600
    counts = {k: sum(e.get("status") == k for e in entries) for k in ("ok", "skipped", "failed")}
    retried = sum(e.get("attempts", 1) > 1 for e in entries)
    rate = media_h / (wall_s / 3600) if wall_s > 0 else 0.0
    return {**counts, "retried": retried, "media_hours": media_h, "wall_s": wall_s, "media_hours_per_wall_hour": rate}
