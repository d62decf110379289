"""The output side of a run: full-band combining, writing in order on a thread of its own, encode timing.

The consumer hands each finished block of model output to ``OutputSink.put`` and goes straight on to the next
backend call; combining with the original-rate audio, clip handling and encoding happen behind it, in order.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable

import numpy as np

from ccstereo.runtime.clipping import ClipGuard
from ccstereo.runtime.fullband import FullBandCombiner, OriginalAudio
from ccstereo.runtime.interrupts import Waitable
from ccstereo.runtime.report import StageTimes


class OrderedWorker:
    """Run calls in submission order on one background thread behind a bounded queue.

    The consumer hands finished audio to it (full-band combining, encoding, writing), so the next backend
    call starts without waiting for the encoder. A failure in a call is re-raised by the next ``submit`` or
    by ``close``; ``abort`` drops what is queued and waits for the thread to stop touching the writer.
    """

    def __init__(self, depth: int = 4, name: str = "ccs-write") -> None:
        self.q: queue.Queue = queue.Queue(maxsize=depth)
        self.error: BaseException | None = None
        self.dropping = threading.Event()
        self.thread = Waitable(self._work, name=name)
        self.thread.start()

    def _work(self) -> None:
        while True:
            item = self.q.get()
            if item is None:
                return
            if self.error is not None or self.dropping.is_set():
                continue
            fn, args = item
            try:
                fn(*args)
            except BaseException as exc:  # noqa: BLE001 - handed to the submitting thread
                self.error = exc

    def _raise(self) -> None:
        if self.error is not None:
            raise self.error

    def submit(self, fn: Callable, *args) -> None:
        self._raise()
        self.q.put((fn, args))

    def close(self) -> None:
        """Wait for every submitted call; re-raise the first failure."""
        self.q.put(None)
        self.thread.wait()
        self._raise()

    def abort(self) -> None:
        self.dropping.set()
        self.q.put(None)
        self.thread.wait()


class OutputSink:
    """Where the model's output goes: through the full-band combiner (when given) into the clip guard's writer.

    ``close`` waits for everything to be written and commits the output; ``abort`` drops what is queued and
    removes every partial file.
    """

    def __init__(
        self,
        guard: ClipGuard,
        times: StageTimes,
        combiner: FullBandCombiner | None = None,
        original: OriginalAudio | None = None,
    ) -> None:
        """``original``: the path of the input's original-rate audio into ``combiner`` (full-band output)."""
        self.guard, self.times, self.combiner, self.original = guard, times, combiner, original
        self.worker = OrderedWorker()

    def put(self, block: np.ndarray) -> None:
        """Queue binaural model output [2, n] (model rate), in order."""
        self.worker.submit(self._model_block, block)

    def _model_block(self, block: np.ndarray) -> None:
        if self.combiner is not None:
            with self.times.stage("combine"):
                self.combiner.push_model(block)
                block = self.combiner.pop()
        self._write(block)

    def _write(self, block: np.ndarray) -> None:
        with self.times.stage("encode"):
            self.guard.write(block)

    def close(self) -> None:
        """Write what is left (the combiner's tail), wait for the writer thread and commit the output."""
        combiner = self.combiner
        if combiner is not None:
            self.worker.submit(lambda: self._write(self._combined_tail(combiner)))
        self.worker.close()
        with self.times.stage("level"):  # writing it again scaled, when its level is over the limit
            self.guard.commit()

    def _combined_tail(self, combiner: FullBandCombiner) -> np.ndarray:
        with self.times.stage("combine"):
            return combiner.finish()

    def abort(self) -> None:
        self.worker.abort()
        self.guard.abort()
