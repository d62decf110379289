"""ccs-run --ray alone: a Ray of its own on 127.0.0.1 for the run, while the driver works through the queue until the
first worker is up. Same outputs as one process; an interrupt while the driver or a worker is mid-file leaves nothing
partial. (Its own file: the two-node cluster of test_distributed.py is stopped before these start.)"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import sample_cuts

pytest.importorskip("ray")
RUN = [sys.executable, "-m", "ccstereo.runtime.cli"]
SAME_ENGINE = ["--backend", "onnxruntime", "--precision", "fp32", "--threads", "1", "--no-tune", "--format", "wav"]


def _descendants(root: int) -> set[int]:
    """The pids of ``root`` and every process below it (Ray's GCS, raylet, agents and workers of a run)."""
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # exited meanwhile
        parents[int(stat.parent.name)] = int(fields[1])
    tree, grew = {root}, True
    while grew:
        more = {pid for pid, parent in parents.items() if parent in tree} - tree
        tree |= more
        grew = bool(more)
    return tree


def _listening(pids: set[int]) -> set[str]:
    """The local addresses ("hex-ip:hex-port", as /proc/net/tcp and tcp6 write them) of the TCP sockets that
    these processes listen on."""
    inodes = set()
    for pid in pids:
        try:
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
        except OSError:
            continue
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                found.add(fields[1])
    return found


LOOPBACK = ("0100007F:", "0000000000000000FFFF00000100007F:", "00000000000000000000000001000000:")


def test_a_ray_started_by_the_run_listens_on_loopback_only_runs_at_our_priority_and_starts_no_monitors(tmp_path):
    """Ray 2.60 swaps 127.0.0.1 for the machine's network address and listens on every interface (GCS, raylet,
    workers: '*'); the run's own Ray must not be reachable from the network."""
    clips = sample_cuts(tmp_path / "in", 3, 3.0, 0.5)
    (tmp_path / "out").mkdir()
    cmd = [*RUN, *map(str, clips), *SAME_ENGINE, "-o", str(tmp_path / "out"), "-q", "--ray", "--workers", "1"]
    run = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    seen: set[str] = set()
    nice: set[int] = set()
    helpers: set[bytes] = set()
    try:
        while run.poll() is None:
            tree = _descendants(run.pid)
            seen |= _listening(tree)
            for pid in tree:  # our worker actors (Ray titles their processes ray::FileWorker)
                try:
                    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
                    if cmdline.startswith(b"ray::FileWorker"):
                        nice.add(os.getpriority(os.PRIO_PROCESS, pid))
                except OSError:
                    continue
                helpers |= {name for name in (b"monitor.py", b"log_monitor.py") if b"/" + name in cmdline}
            time.sleep(0.1)
        _, stderr = run.communicate(timeout=60)
    finally:
        run.kill()
    assert run.returncode == 0, stderr[-2000:]
    assert len(seen) >= 3, f"Ray's servers were not seen listening: {seen}"  # GCS, raylet, a worker at least
    assert all(address.startswith(LOOPBACK) for address in seen), sorted(seen)
    # Ray starts workers at nice 15: beside the driver's own file, a worker loading its model got no CPU
    assert nice == {os.getpriority(os.PRIO_PROCESS, 0)}, "a worker runs at the priority of the process that started it"
    # one fixed node: no autoscaler monitor, and no log monitor (worker logs are not forwarded to the driver)
    assert not helpers, f"Ray started {helpers} for a run of one machine"


def test_local_ray_run_matches_one_process_and_the_driver_works_while_ray_starts(tmp_path):
    clips = sample_cuts(tmp_path / "in", 6, 3.0, 0.5)
    (tmp_path / "one").mkdir()
    (tmp_path / "ray").mkdir()
    local_report = tmp_path / "local.json"
    single_cmd = [*RUN, *map(str, clips), *SAME_ENGINE, "-o", str(tmp_path / "one"), "-q", "--report", local_report]
    single = subprocess.run(list(map(str, single_cmd)), timeout=300)
    assert single.returncode == 0
    report = tmp_path / "run.json"
    cmd = [*RUN, *map(str, clips), *SAME_ENGINE, "-o", str(tmp_path / "ray"), "-q", "--report", str(report)]
    # a bound, so a hang fails here instead of holding the suite: once (session 57, Zen 5) Ray's start forked a child
    # that ran Python's after-fork clean-up, freed a PyAV scaler held for another thread and waited forever on its
    # worker threads' condition variable (gdb: avpriv_slicethread_free -> pthread_cond_destroy); the mend:
    # ray_executor._spawned_without_preexec
    ray_cmd = [*cmd, "--ray", "--workers", "1", "--cpus-per-worker", "1"]
    result = subprocess.run(ray_cmd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout == ""
    entries = json.loads(report.read_text())["files"]
    assert [e["status"] for e in entries] == ["ok"] * len(clips)
    by_driver = [e for e in entries if str(e.get("worker", "")).startswith("driver")]
    assert by_driver, "Ray takes seconds to start here: the driver should have done at least one file meanwhile"
    for clip in clips:
        name = f"{clip.stem}.binaural.wav"
        assert np.array_equal(sf.read(tmp_path / "one" / name)[0], sf.read(tmp_path / "ray" / name)[0]), name
    assert not list((tmp_path / "ray").glob(".*partial*"))
    # one report schema from here and from Ray: the same fields, and the one reader reads both by field
    from ccstereo.runtime.jobs import read_report

    local = json.loads(local_report.read_text())
    assert {k for k in local if k != "summary"} == {k for k in json.loads(report.read_text()) if k != "summary"}
    assert [set(e) for e in local["files"]] == [set(e) for e in entries]
    for path in (local_report, report):
        files = read_report(path)
        assert [f["status"] for f in files] == ["ok"] * len(clips) and all(f["precision"] for f in files)


def _nothing_partial(returncode: int, stderr: str, out: Path, seconds: float) -> None:
    """An interrupted run: exit 130, said so, no temporary left, and whatever was finished before it is whole."""
    assert returncode == 130, stderr[-2000:]
    assert "no partial output left" in stderr
    assert not list(out.glob(".*partial*"))
    for done in out.glob("*.wav"):
        assert sf.info(str(done)).duration == pytest.approx(seconds, abs=0.1)


def test_interrupt_while_the_driver_works_leaves_no_partial_file(tmp_path):
    clips = sample_cuts(tmp_path / "in", 3, 6.0, 0.5)
    (tmp_path / "out").mkdir()
    cmd = [*RUN, *map(str, clips), *SAME_ENGINE, "-o", str(tmp_path / "out"), "--ray", "--workers", "1"]
    run = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        # wait until the driver is writing its first output (a temporary file beside the target), then Ctrl-C
        while not list((tmp_path / "out").glob(".*partial*")):
            assert run.poll() is None and time.monotonic() < deadline, "no output was started"
            time.sleep(0.05)
        run.send_signal(signal.SIGINT)
        _, stderr = run.communicate(timeout=90)
    finally:
        run.kill()
    _nothing_partial(run.returncode, stderr, tmp_path / "out", 6.0)


def test_interrupt_while_a_ray_worker_writes_leaves_no_partial_file(tmp_path):
    # A file on a Ray worker (its temporaries carry the worker's pid, not the driver's) when Ctrl-C reaches the
    # driver: Ray's shutdown ends the worker mid-file, and the driver removes what it left once it is gone.
    clips = sample_cuts(tmp_path / "in", 4, 7.5, 0.1)
    out = tmp_path / "out"
    out.mkdir()
    # --hop-s 0.025: four times the windows of the default hop, so the driver's own thread (which works while Ray
    # starts) cannot finish all four files before Ray's worker takes one, however fast the bundled model is
    run = subprocess.Popen(
        [*RUN, *map(str, clips), *SAME_ENGINE, "-o", str(out), "--ray", "--workers", "1", "--hop-s", "0.025"],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 90
        while not [p for p in out.glob(".*partial*") if f"-{run.pid}-" not in p.name]:
            assert run.poll() is None and time.monotonic() < deadline, "no worker started a file"
            time.sleep(0.02)
        time.sleep(0.3)  # the worker is into its file (7.5 s of sound: more than a second of work)
        run.send_signal(signal.SIGINT)
        _, stderr = run.communicate(timeout=90)
    finally:
        run.kill()
    _nothing_partial(run.returncode, stderr, out, 7.5)


def test_an_unreadable_file_fails_alone_with_one_line_naming_it_once(tmp_path):
    sample_cuts(tmp_path, 1, 3.0, 0.5)  # clip0.mp4
    (tmp_path / "bad.mp4").write_bytes(b"not a video")
    (tmp_path / "out").mkdir()
    cmd = [*RUN, "clip0.mp4", "bad.mp4", *SAME_ENGINE, "-o", "out/", "--ray", "--workers", "1", "-q"]
    done = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith("error: bad.mp4: unreadable media file"), errors
    assert errors[0].count("bad.mp4") == 1, errors  # named once, as given (not "/abs/bad.mp4: bad.mp4: ...")
    assert sf.info(str(tmp_path / "out" / "clip0.binaural.wav")).duration == pytest.approx(3.0, abs=0.1)


def test_an_interrupt_that_ends_the_drivers_own_worker_reaches_the_run(monkeypatch, tmp_path):
    # The driver's worker thread (while Ray starts) can meet the interrupt first (raise_if_signalled in a job's
    # error handler): its file is then neither done nor left to Ray, so the run must end with that interrupt.
    from ccstereo.runtime import ray_executor
    from ccstereo.runtime.interrupts import Terminated
    from ccstereo.runtime.options import LoadOptions, RunOptions
    from ccstereo.runtime.write_plan import FileJob

    class Interrupted:
        def __init__(self, *args) -> None:
            pass

        def run(self, *args, **kwargs):
            raise Terminated()

    monkeypatch.setattr(ray_executor, "FileWorker", Interrupted)
    helper = ray_executor._WhileRayStarts(None, LoadOptions())
    helper.begin([FileJob(tmp_path / "a.mp4"), FileJob(tmp_path / "b.mp4")], RunOptions(), lambda result: None)
    with pytest.raises(Terminated):
        helper.join()
    assert [job.path.name for job in helper.rest()] == ["b.mp4"]


_FORK_PROBE = """
import os, sys, threading
import ray._private.services as services
from ccstereo.runtime.ray_executor import _spawned_without_preexec

class Marker:  # freed only where Python runs its after-fork clean-up of other threads' locals
    def __del__(self):
        os.write(1, f"freed in {os.getpid()}\\n".encode())

local, made, hold = threading.local(), threading.Event(), threading.Event()
def other_thread():
    local.marker = Marker()
    made.set()
    hold.wait()
threading.Thread(target=other_thread, daemon=True).start()
made.wait()
def spawn():
    child = services.ConsolePopen([sys.executable, "-c", "pass"], preexec_fn=lambda: None)
    child.wait()
    print("child", child.pid, flush=True)
if sys.argv[1] == "mended":
    with _spawned_without_preexec(sys.modules["ray"]):
        spawn()
else:
    spawn()
os._exit(0)
"""


@pytest.mark.parametrize("mended", [True, False])
def test_rays_processes_start_with_no_python_between_fork_and_exec(mended):
    """The Ray-start hang: with Ray's ``preexec_fn``, CPython runs its after-fork clean-up in the child, freeing other
    threads' thread-local objects there (a PyAV scaler among them waited forever for threads the child does not
    have). Started through ``_spawned_without_preexec`` nothing of the parent is freed in the child; Ray's own
    ConsolePopen with its preexec_fn does free it (the unmended case, so the probe is shown to see it)."""
    probe = subprocess.run(
        [sys.executable, "-c", "import ray\n" + _FORK_PROBE, "mended" if mended else "as-ray-does"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert probe.returncode == 0, probe.stderr
    child = next(line.split()[1] for line in probe.stdout.splitlines() if line.startswith("child "))
    freed_in_child = f"freed in {child}" in probe.stdout
    assert freed_in_child is (not mended), probe.stdout


def _name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
    except OSError:
        return ""  # exited


def test_a_driver_killed_with_sigkill_takes_its_rays_servers_with_it(tmp_path):
    """The run's own Ray (GCS server, raylet, dashboard) dies with a driver that cannot stop it (SIGKILL, the OOM
    killer): each is asked the death signal through setpriv, since Ray's own preexec_fn is not used."""
    if not shutil.which("setpriv"):
        pytest.skip("no setpriv (util-linux) here: a SIGKILLed driver leaves its Ray running")
    clips = sample_cuts(tmp_path / "in", 3, 7.5, 0.1)
    (tmp_path / "out").mkdir()
    run = subprocess.Popen(
        [*RUN, *map(str, clips), *SAME_ENGINE, "-o", str(tmp_path / "out"), "-q", "--ray", "--workers", "1",
         "--hop-s", "0.025"],
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    servers: set[int] = set()
    tree: set[int] = set()
    try:
        deadline = time.monotonic() + 120
        while not any(_name(pid).endswith("/raylet") for pid in servers):
            assert run.poll() is None and time.monotonic() < deadline, "the run's Ray never started its raylet"
            tree = _descendants(run.pid)
            servers = {pid for pid in tree if _name(pid).endswith(("/gcs_server", "/raylet"))}
            time.sleep(0.05)
        deadline = time.monotonic() + 10  # the raylet starts its agents (they are killed at the end, below)
        while not any(_name(pid).startswith("ray::") for pid in tree) and time.monotonic() < deadline:
            tree = _descendants(run.pid)
            time.sleep(0.05)
        run.kill()
        run.wait(30)
        deadline = time.monotonic() + 20
        while (alive := {pid for pid in servers if _name(pid)}) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not alive, f"still running after the driver's SIGKILL: {[_name(pid) for pid in alive]}"
    finally:
        run.kill()
        for pid in tree - {run.pid}:  # what Ray's own agents leave (they outlive their raylet)
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
