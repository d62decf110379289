"""A signal is an interrupt even when a C extension turns its exception into another error on the way out."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from ccstereo.runtime.interrupts import Terminated, raise_if_signalled, signals_as_exceptions

# SIGINT's handler before any block ran: Python's default_int_handler, or SIG_IGN when the suite runs as a
# background job of a shell without job control (which starts it ignoring SIGINT)
BEFORE = signal.getsignal(signal.SIGINT)


def _import_that_swallows_the_interrupt(sig: int) -> None:
    """What onnxruntime's import does when Ctrl-C lands inside its module initialisation."""
    try:
        os.kill(os.getpid(), sig)
        for _ in range(1000):
            pass
    except BaseException as exc:
        raise ImportError("initialization failed") from exc
    raise AssertionError("the signal never arrived")


@pytest.mark.parametrize("sig, expected", [(signal.SIGINT, KeyboardInterrupt), (signal.SIGTERM, Terminated)])
def test_an_error_after_a_signal_is_the_signal(sig, expected):
    with pytest.raises(expected), signals_as_exceptions():
        _import_that_swallows_the_interrupt(sig)


def test_an_error_without_a_signal_stays_itself():
    with pytest.raises(ImportError), signals_as_exceptions():
        raise ImportError("initialization failed")


def test_a_handler_that_makes_errors_into_results_still_stops():
    """run_job turns every Exception into a failed file; after a signal it must end the run instead."""
    with pytest.raises(KeyboardInterrupt), signals_as_exceptions():
        try:
            _import_that_swallows_the_interrupt(signal.SIGINT)
        except ImportError:
            raise_if_signalled()
            pytest.fail("the interrupt became a failed file")


class _SignalledWhileCollected:
    """An object whose ``__del__`` (a callback whose exceptions Python prints and drops, like the import machinery's
    weakref callbacks) is running when the signal's handler runs."""

    def __init__(self, sig: int) -> None:
        self.sig = sig

    def __del__(self) -> None:
        os.kill(os.getpid(), self.sig)
        for _ in range(1000):
            pass


@pytest.mark.parametrize("sig, expected", [(signal.SIGINT, KeyboardInterrupt), (signal.SIGTERM, Terminated)])
def test_a_signal_dropped_inside_a_callback_still_ends_the_block(sig, expected):
    hook, finished = sys.unraisablehook, []
    with pytest.raises(expected), signals_as_exceptions():
        _SignalledWhileCollected(sig)  # collected at once: the handler raises inside __del__, which drops it
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:  # the work goes on: the signal must end it here
            time.sleep(0.01)
        finished.append(True)
    assert not finished, "the signal was lost with the callback's exception"
    assert sys.unraisablehook is hook


def test_outside_the_block_nothing_is_raised():
    raise_if_signalled()
    assert signal.getsignal(signal.SIGINT) is BEFORE  # every block above put the handler back


# Ctrl-C while the main thread imports and another thread imports too (ccs-run --ray: the main thread imports Ray
# while the driver's decode threads import Pillow). Raised inside the import machinery's own code, the interrupt can
# leave Python's global import lock held, and the next import on any other thread waits forever.
_IMPORTING_WHEN_INTERRUPTED = """
import importlib, random, signal, sys, threading, time
from pathlib import Path
from ccstereo.runtime.interrupts import signals_as_exceptions

root = Path(sys.argv[1])
sys.path.insert(0, str(root))
names = iter(range(10**9))

def fresh(count):
    made = [f"m{next(names)}" for _ in range(count)]
    for name in made:
        (root / f"{name}.py").write_text("X = 1\\n")
    importlib.invalidate_caches()
    return made

others = fresh(20000)
threading.Thread(target=lambda: [importlib.import_module(n) for n in others], daemon=True).start()
main = threading.main_thread().ident
random.seed(int(sys.argv[3]))
for attempt in range(int(sys.argv[2])):
    mine = fresh(200)
    timer = threading.Timer(random.uniform(0.0, 0.03), signal.pthread_kill, (main, signal.SIGINT))
    try:
        with signals_as_exceptions():
            timer.start()
            for name in mine:
                importlib.import_module(name)
            time.sleep(2)
        print(f"interrupt {attempt} was lost", flush=True)
        sys.exit(1)
    except KeyboardInterrupt:
        pass
    timer.join()
    late = threading.Thread(target=importlib.import_module, args=fresh(1), daemon=True)
    late.start()
    late.join(5)
    if late.is_alive():
        print(f"an import on another thread waits forever after interrupt {attempt}", flush=True)
        sys.exit(1)
print("ok", flush=True)
"""


def test_an_interrupt_during_imports_leaves_other_threads_able_to_import(tmp_path):
    script = tmp_path / "importing.py"
    script.write_text(_IMPORTING_WHEN_INTERRUPTED)
    (tmp_path / "modules").mkdir()
    done = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "modules"), "60", "7"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stdout + done.stderr[-2000:]


def test_ctrl_c_while_waiting_for_the_openvino_compile_leaves_the_exit_waiting_for_it():
    """Ctrl-C lands while the main thread waits for the graph compile: the compile thread must still count as running,
    so the interpreter's exit waits for it (Thread.join interrupted in CPython 3.11 marks it stopped, and OpenVINO's
    destructors then ran under a live compile: 'terminate called' / SIGSEGV after 'interrupted')."""
    from ccstereo.runtime.backends.openvino import _Ready

    release = threading.Event()
    ready = _Ready(lambda: release.wait(30) and "compiled")
    threading.Timer(0.2, signal.pthread_kill, (threading.main_thread().ident, signal.SIGINT)).start()
    try:
        with pytest.raises(KeyboardInterrupt), signals_as_exceptions():
            ready.wait()
        assert ready.thread.is_alive(), "the compile thread was marked stopped while it still ran"
    finally:
        release.set()
    ready.thread.join(30)
    assert ready.wait() == "compiled"


def test_ctrl_c_while_the_writer_finishes_still_lets_abort_wait_for_the_call_in_flight():
    """Ctrl-C lands while ``close`` waits for the writer thread; the unwinding ``abort`` must still wait until the call
    in flight has stopped touching the writer before temporary files are removed (after an interrupted
    Thread.join, CPython 3.11 took the thread for stopped and abort returned at once)."""
    from ccstereo.runtime.sink import OrderedWorker

    release, finished = threading.Event(), threading.Event()

    def write_block() -> None:
        release.wait(30)
        finished.set()

    worker = OrderedWorker()
    worker.submit(write_block)
    threading.Timer(0.2, signal.pthread_kill, (threading.main_thread().ident, signal.SIGINT)).start()
    threading.Timer(1.0, release.set).start()
    with pytest.raises(KeyboardInterrupt), signals_as_exceptions():
        worker.close()
    assert not finished.is_set()  # the interrupt came first
    worker.abort()
    assert finished.is_set(), "abort returned while the writer's call was still running"
