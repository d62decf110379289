"""True peak of a lossy (AAC) output as a player decodes it: every channel resampled to 4x its rate (ITU-R
BS.1770's oversampling) and the largest magnitude taken.

Measured from the finished file (``decoded_true_peak``), or while it is written (``TruePeakMeter``: each packet
is decoded as the encoder hands it over, on the writer's thread, so a run learns its output's level without
reading the output again).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

OVERSAMPLING = 4


class _Peak:
    """The running true peak of decoded frames (one resampler, flushed at the end)."""

    def __init__(self) -> None:
        self.resampler: Any = None
        self.value = 0.0

    def add(self, frame) -> None:
        import av

        if self.resampler is None:
            rate = frame.sample_rate * OVERSAMPLING
            self.resampler = av.AudioResampler(format="fltp", layout=frame.layout.name, rate=rate)
        self._take(self.resampler.resample(frame))

    def end(self) -> float:
        if self.resampler is not None:
            self._take(self.resampler.resample(None))
            self.resampler = None
        return self.value

    def _take(self, frames) -> None:
        for out in frames:
            self.value = max(self.value, float(np.abs(out.to_ndarray()).max(initial=0.0)))


def decoded_true_peak(path: Path) -> float:
    """Return the true peak (linear) of a file's first audio track as a player decodes it."""
    import av

    peak = _Peak()
    with av.open(str(path)) as container:
        for frame in container.decode(container.streams.audio[0]):
            peak.add(frame)
    return peak.end()


class TruePeakMeter:
    """Decodes an encoder's packets as they come and keeps their true peak.

    Every decoded frame is measured, the encoder's priming (1024 near-silent samples before the sound) included,
    which a container may tell a player to skip: the figure equals ``decoded_true_peak`` of the finished file
    unless the file's loudest point lies within the resampling filter's reach (a few samples) of its start."""

    def __init__(self, encoder) -> None:
        """``encoder``: the output's audio codec context (its extradata configures the decoder)."""
        self.encoder = encoder
        self.decoder: Any = None
        self.peak = _Peak()

    def add(self, packet) -> None:
        """Measure one encoded packet."""
        import av

        if self.decoder is None:
            self.decoder = av.CodecContext.create(self.encoder.name, "r")
            self.decoder.extradata = self.encoder.extradata
        for frame in self.decoder.decode(packet):
            self.peak.add(frame)

    def end(self) -> float:
        """Flush the decoder and the resampler; return the true peak (linear)."""
        if self.decoder is not None:
            for frame in self.decoder.decode(None):
                self.peak.add(frame)
        return self.peak.end()

    def abort(self) -> None:
        """Nothing runs beside the writer: nothing to stop."""


class BackgroundMeter:
    """A ``TruePeakMeter`` on a thread of its own: for a pass whose encoding is all the thread that writes it does
    (writing an output again, scaled, when nothing else runs), so decoding and measuring take the other core."""

    def __init__(self, encoder) -> None:
        from ccstereo.runtime.sink import OrderedWorker

        self.meter = TruePeakMeter(encoder)
        self.worker = OrderedWorker(depth=64, name="ccs-true-peak")

    def add(self, packet) -> None:
        """Queue a copy of the packet (muxing takes the packet's data)."""
        import av

        self.worker.submit(self.meter.add, av.Packet(bytes(packet)))

    def end(self) -> float:
        self.worker.close()
        return self.meter.end()

    def abort(self) -> None:
        self.worker.abort()
