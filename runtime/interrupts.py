"""SIGINT, SIGTERM and SIGHUP as exceptions in the main thread, so every writer's cleanup runs on the way out."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager

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
    comes out of the block after a signal arrived is that signal's exception (see :class:`Arrived`)."""
    arrived = Arrived()
    _ACTIVE.append(arrived)

    def handler(signum: int, _frame) -> None:
        for sig in ENDING:
            signal.signal(sig, signal.SIG_IGN)
        arrived.signum = signum
        raise arrived.exception()

    previous = {}
    for sig in ENDING:
        if sig == signal.SIGHUP and signal.getsignal(sig) == signal.SIG_IGN:
            continue  # started under nohup: a closed terminal must not end the run
        previous[sig] = signal.signal(sig, handler)
    try:
        with arrived.translate():
            yield arrived
    finally:
        _ACTIVE.remove(arrived)
        for sig, old in previous.items():
            signal.signal(sig, old)


_ACTIVE: list[Arrived] = []


def raise_if_signalled() -> None:
    """Raise the ending signal's exception if one arrived while :func:`signals_as_exceptions` is active: for a
    handler that turns errors into results, so a signal turned into another error still ends the run."""
    for arrived in _ACTIVE:
        if arrived.signum is not None:
            raise arrived.exception() from None
