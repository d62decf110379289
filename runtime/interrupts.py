"""SIGINT, SIGTERM and SIGHUP as exceptions in the main thread, so every writer's cleanup runs on the way out."""

from __future__ import annotations

import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import CodeType, FrameType

# Signals that end a run the way Ctrl-C does: the terminal closing (SIGHUP) and a polite kill (SIGTERM).
ENDING = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Terminated(BaseException):  # noqa: N818 - named for the signal, like KeyboardInterrupt
    """SIGTERM or SIGHUP arrived: unwind like Ctrl-C (temporary files are removed), then exit 128 + signal."""

    def __init__(self, signum: int = signal.SIGTERM) -> None:
        super().__init__(signum)
        self.signum = int(signum)

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name


class Arrived:
    """Which ending signal has arrived, if any. A signal's exception raised inside a C extension's import or
    callback can come out as another error (onnxruntime's import turns it into ``ImportError: initialization
    failed``); :meth:`translate` turns such an error back into the interrupt it was."""

    def __init__(self) -> None:
        self.signum: int | None = None

    def exception(self) -> BaseException:
        return KeyboardInterrupt() if self.signum == signal.SIGINT else Terminated(self.signum or signal.SIGTERM)

    @contextmanager
    def translate(self) -> Iterator[None]:
        try:
            yield
        except Exception:
            if self.signum is None:
                raise
            raise self.exception() from None


@contextmanager
def signals_as_exceptions() -> Iterator[Arrived]:
    """Raise KeyboardInterrupt on SIGINT and Terminated on SIGTERM / SIGHUP; later signals are ignored while the
    first one unwinds, so a second Ctrl-C cannot interrupt the removal of temporary files. Any other error that
    comes out of the block after a signal arrived is that signal's exception (see :class:`Arrived`).

    A signal that lands in the import machinery's own code is raised once the main thread has left it: raised
    there, it can leave Python's global import lock held (between taking it and the ``try`` that releases it), and
    every later import on another thread then waits forever (a decode thread's first ``import PIL``, which hung a
    Ctrl-C'd run at exit). One dropped by a callback that ignores exceptions (``__del__``) is sent again."""
    arrived = Arrived()
    _ACTIVE.append(arrived)
    handling = _Handling(arrived)
    previous = {}
    for sig in ENDING:
        if sig == signal.SIGHUP and signal.getsignal(sig) == signal.SIG_IGN:
            continue  # started under nohup: a closed terminal must not end the run
        previous[sig] = signal.signal(sig, handling.handler)
    sys.unraisablehook = handling.lost  # the one it replaces is handling.hook
    try:
        with arrived.translate():
            yield arrived
    finally:
        try:
            handling.land()
        finally:
            sys.unraisablehook = handling.hook
            _ACTIVE.remove(arrived)
            for sig, old in previous.items():
                signal.signal(sig, old)


class _Handling:
    """The signal handler and unraisable-exception hook of one :func:`signals_as_exceptions` block."""

    def __init__(self, arrived: Arrived) -> None:
        self.arrived = arrived
        self.raised: BaseException | None = None
        self.sent: list[threading.Thread] = []  # deliveries put off: the block's end waits for them
        self.pending = threading.Event()  # a delivery is on its way: a signal meanwhile adds nothing
        self.hook = sys.unraisablehook

    def unsafe(self, frame: FrameType | None) -> bool:
        """Where the handler must not raise, nor a delivery land: the import machinery, this object's code."""
        return _importing(frame) or _within(frame, self.lost.__code__) or _within(frame, self.handler.__code__)

    def handler(self, signum: int, frame: FrameType | None) -> None:
        if _within(frame, self.handler.__code__) or self.pending.is_set():
            return  # a signal while a handler below starts its delivery, or one on its way: that one counts
        if self.unsafe(frame):
            self.later(signum)
            return
        for sig in ENDING:
            signal.signal(sig, signal.SIG_IGN)
        self.arrived.signum = signum
        self.raised = self.arrived.exception()
        raise self.raised

    def lost(self, unraisable) -> None:
        """sys.unraisablehook: the handler's exception dropped by a callback (``__del__``) is sent again."""
        signum = self.arrived.signum
        if self.raised is not None and unraisable.exc_value is self.raised and signum is not None:
            self.raised = None
            signal.signal(signum, self.handler)
            self.later(signum)
            return
        self.hook(unraisable)

    def later(self, signum: int) -> None:
        if not self.pending.is_set():
            self.pending.set()
            self.sent.append(_send_when_clear(signum, self.unsafe, self.pending))

    def land(self) -> None:
        """Wait for the deliveries put off: a signal still on its way is raised here, as the block ends."""
        while self.sent:
            self.sent.pop().join()
            for _ in range(100):
                pass


def _importing(frame: FrameType | None) -> bool:
    """Whether ``frame`` (the main thread's innermost) is the import machinery's own code."""
    return frame is not None and frame.f_code.co_filename.startswith("<frozen importlib")


def _within(frame: FrameType | None, code: CodeType) -> bool:
    while frame is not None and frame.f_code is not code:
        frame = frame.f_back
    return frame is not None


def _send_when_clear(signum: int, busy: Callable[[FrameType | None], bool], pending: threading.Event):
    """Send ``signum`` to the main thread once ``busy`` (of its innermost frame) is false, or after a second (its
    handler then looks again): from a thread of its own, since a signal sent from the main thread runs its handler
    at once, where it was put off."""
    main = threading.main_thread().ident or threading.get_ident()  # (None only before the main thread starts)

    def send() -> None:
        deadline = time.monotonic() + 1.0
        while busy(sys._current_frames().get(main)) and time.monotonic() < deadline:
            time.sleep(0.001)
        pending.clear()
        signal.pthread_kill(main, signum)  # a real signal: it also wakes a main thread blocked in a system call

    thread = threading.Thread(target=send, name="ccs-signal-later", daemon=True)
    thread.start()
    return thread


_ACTIVE: list[Arrived] = []


class Waitable(threading.Thread):
    """A thread to wait for with :meth:`wait`, not ``join``. In CPython 3.11 and 3.12 a ``join`` that an exception
    from a signal handler interrupts (Ctrl-C) releases the running thread's own state lock and marks it stopped: a
    later ``join`` returns at once, and the interpreter's exit no longer waits for a non-daemon one (which then runs
    under the libraries' destructors: OpenVINO crashed so). ``wait`` waits on an Event the thread sets as its work
    ends, which an interrupt leaves as it was."""

    def __init__(self, target: Callable, args: tuple = (), name: str | None = None, daemon: bool = True) -> None:
        super().__init__(target=target, args=args, name=name, daemon=daemon)
        self.ended = threading.Event()

    def run(self) -> None:
        try:
            super().run()
        finally:
            self.ended.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Whether the thread's work has ended (waiting at most ``timeout`` seconds when one is given)."""
        return self.ended.wait(timeout)


def raise_if_signalled() -> None:
    """Raise the ending signal's exception if one arrived while :func:`signals_as_exceptions` is active: for a
    handler that turns errors into results, so a signal turned into another error still ends the run."""
    for arrived in _ACTIVE:
        if arrived.signum is not None:
            raise arrived.exception() from None
