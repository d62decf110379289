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


@contextmanager
def signals_as_exceptions() -> Iterator[None]:
    """Raise KeyboardInterrupt on SIGINT and Terminated on SIGTERM / SIGHUP; later signals are ignored while the
    first one unwinds, so a second Ctrl-C cannot interrupt the removal of temporary files."""

    def handler(signum: int, _frame) -> None:
        for sig in ENDING:
            signal.signal(sig, signal.SIG_IGN)
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        raise Terminated(signum)

    previous = {}
    for sig in ENDING:
        if sig == signal.SIGHUP and signal.getsignal(sig) == signal.SIG_IGN:
            continue  # started under nohup: a closed terminal must not end the run
        previous[sig] = signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
