"""Decode only the pictures a tick can show: the decoder is told to skip a non-reference frame (one no other frame
is predicted from) when the stream's own timestamps prove no 0.1 s tick lands on it.

A frame at time ``t`` is on screen until the next frame in presentation order. Packets arrive in decode order
(B-frames after the frames they are predicted from), so the decode of each packet waits until ``LOOKAHEAD`` more
have been read: if any packet read so far starts at ``q > t`` and no tick lies in ``[t, q)``, no tick can show
the frame (a packet not yet read can only end its time on screen sooner). Only then, and only for a frame the
codec itself marks as non-reference, is it skipped (FFmpeg's ``skip_frame = NONREF``, set per packet); every
other frame is decoded, so the pictures the ticks get are the same, bit for bit, as from decoding everything.
On 30 fps H.264 with B-frames about a third of the frames are skipped.
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from collections.abc import Iterator

LOOKAHEAD = 16  # packets read before one is decoded (H.264 reorders at most 16 frames)
_KEEP = 256  # presentation times remembered (fewer only makes a skip less likely, never wrong)
# ``media.tick_frames`` shows a frame at ``t`` for the ticks in [t - 1e-6, next - 1e-6); the same bounds are used
# here, widened by a hair on both sides (a tick that close to a bound decodes the frame).
_TOLERANCE_S = 1e-6
_HAIR_S = 1e-9


def decode_shown(container, stream, fps: float, origin_s: float) -> Iterator:
    """Yield the decoded frames of ``stream`` (presentation order), less non-reference frames no tick at
    ``origin_s + k / fps`` (k = 0, 1, ...) shows."""
    ctx = stream.codec_context
    base = stream.time_base
    known = _Times(fps, origin_s)
    pending: deque = deque()
    for packet in container.demux(stream):
        if packet.size == 0:  # the demuxer's end-of-stream packet: flushed below, once
            continue
        t = float(packet.pts * base) if packet.pts is not None and base is not None else None
        if t is not None:
            known.add(t)
        pending.append((packet, t))
        if len(pending) > LOOKAHEAD:
            yield from _decode(ctx, pending.popleft(), known, base)
    while pending:
        yield from _decode(ctx, pending.popleft(), known, base)
    ctx.skip_frame = "DEFAULT"
    yield from _timed(ctx.decode(None), base)


def _decode(ctx, timed_packet: tuple, known: _Times, base) -> list:
    packet, t = timed_packet
    ctx.skip_frame = "NONREF" if t is not None and not known.may_show(t) else "DEFAULT"
    return _timed(ctx.decode(packet), base)


def _timed(frames: list, base) -> list:
    for frame in frames:
        if frame.time_base is None:  # frames a codec context returns carry no time base of their own
            frame.time_base = base
    return frames


class _Times:
    """Presentation times of the packets read so far, and whether a tick can show a frame at a time."""

    def __init__(self, fps: float, origin_s: float) -> None:
        self.fps, self.origin_s = fps, origin_s
        self.times: list[float] = []
        self.floor = -math.inf  # times below were forgotten

    def add(self, t: float) -> None:
        bisect.insort(self.times, t)
        if len(self.times) > _KEEP:
            self.floor = self.times.pop(0)

    def may_show(self, t: float) -> bool:
        """False only when a later known time ``q`` leaves no tick in [t, q)."""
        i = bisect.bisect_right(self.times, t)
        if i == len(self.times) or t <= self.floor:
            return True  # no later frame known, or not sure what came before: decode
        if i == 1 or self.times[i - 2] >= t:  # the earliest time known: ticks before it show this frame too
            return True
        q = self.times[i]
        return self._tick_in(t - _TOLERANCE_S - _HAIR_S, q - _TOLERANCE_S + _HAIR_S)

    def _tick_in(self, start: float, end: float) -> bool:
        """Whether some tick time ``origin_s + k / fps`` (k >= 0) lies in [start, end)."""
        k = max(0, math.ceil((start - self.origin_s) * self.fps) - 1)
        while self.origin_s + k / self.fps < start:  # the first tick at or after start, as tick_frames computes it
            k += 1
        return self.origin_s + k / self.fps < end
