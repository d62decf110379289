"""A signal's exception can land between any two C calls of the main thread: making a temporary file must not
leave one behind that nobody knows the name of (real timer signals, many thousand times)."""

from __future__ import annotations

import signal
import time

from ccstereo.atomic import PARTIAL_MARK, partial_path


def test_an_interrupt_while_a_temporary_is_made_leaves_no_file(tmp_path):
    final = tmp_path / "out.mp4"
    armed = False

    def interrupt(_signum, _frame):
        if armed:
            raise KeyboardInterrupt

    previous = signal.signal(signal.SIGALRM, interrupt)
    made = interrupted = 0
    try:
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline or interrupted < 1000:
            held = None
            try:
                armed = True  # the timer fires somewhere in the call: 1-300 microseconds in, spread evenly
                signal.setitimer(signal.ITIMER_REAL, 1e-6 * (1 + (7 * interrupted + made) % 300))
                held = partial_path(final, ".f32")
                armed = False
                made += 1
            except KeyboardInterrupt:
                interrupted += 1
            finally:
                armed = False
                signal.setitimer(signal.ITIMER_REAL, 0)
                if held is not None:  # a caller that got the name removes the file itself
                    held.unlink()
            assert time.monotonic() < deadline + 30, f"only {interrupted} interrupts landed"
    finally:
        signal.signal(signal.SIGALRM, previous)
    assert made > 100 and interrupted >= 1000
    assert not [p.name for p in tmp_path.iterdir() if PARTIAL_MARK in p.name]
