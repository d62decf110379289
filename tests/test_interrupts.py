"""A signal is an interrupt even when a C extension turns its exception into another error on the way out."""

from __future__ import annotations

import os
import signal

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


def test_outside_the_block_nothing_is_raised():
    raise_if_signalled()
    assert signal.getsignal(signal.SIGINT) is BEFORE  # every block above put the handler back
