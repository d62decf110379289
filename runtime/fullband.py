"""Full-band output: the model's 16 kHz left-minus-right difference over the original full-bandwidth mix."""

from __future__ import annotations

import collections
from collections.abc import Iterator

import numpy as np

from ccstereo.runtime.media import AudioChunk


class OriginalAudio:
    """The input's own-rate audio on its way from the decoder to the combiner, beside the model's windows.

    ``split`` runs on the decoding thread: it passes the model-rate audio on and keeps the original-rate
    pieces here. Everything a batch of windows needs was decoded (and so kept) before that batch was handed
    on, so the combiner always finds the original audio it needs by the time the model's output arrives.
    """

    def __init__(self, rate_hz: int | None = None) -> None:
        """``rate_hz``: the output's rate, when it differs from the input's (a codec that cannot take that)."""
        self.rate_hz = rate_hz
        self.pieces: collections.deque[np.ndarray] = collections.deque()  # append / popleft are thread-safe

    def split(self, chunks: Iterator[AudioChunk]) -> Iterator[np.ndarray]:
        """Yield the model-rate audio of ``chunks``; keep their original-rate audio."""
        for chunk in chunks:
            if chunk.original is not None and chunk.original.shape[1]:
                self.pieces.append(chunk.original)
            yield chunk.model

    def take(self) -> list[np.ndarray]:
        """Return (and forget) every piece kept so far."""
        taken = []
        while self.pieces:
            taken.append(self.pieces.popleft())
        return taken


class FullBandCombiner:
    """Upsample D = L - R from the model rate and combine: L = (M + D) / 2, R = (M - D) / 2 at the input rate.

    M is the input's own stereo downmix summed (L + R) at its own rate, so nothing above the model's Nyquist
    frequency is lost and the level is the input's. Both streams arrive in pieces; output is emitted as soon
    as both sides have it.
    """

    def __init__(self, model_rate_hz: int, out_rate_hz: int, original: OriginalAudio) -> None:
        import av

        self.model_rate, self.out_rate, self.original = model_rate_hz, out_rate_hz, original
        self.resampler = av.AudioResampler(format="fltp", layout="mono", rate=out_rate_hz)
        self.diff = np.zeros(0, np.float32)
        self.mix = np.zeros(0, np.float32)

    def _upsample(self, d: np.ndarray | None) -> np.ndarray:
        import av

        if d is None:
            frames = self.resampler.resample(None)
        else:
            if not d.size:
                return np.zeros(0, np.float32)
            frame = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(d[None, :], np.float32), format="fltp", layout="mono"
            )
            frame.sample_rate = self.model_rate
            frames = self.resampler.resample(frame)
        arrays = [f.to_ndarray()[0] for f in frames]
        return np.concatenate(arrays) if arrays else np.zeros(0, np.float32)

    def push_model(self, binaural: np.ndarray) -> None:
        """Add model output [2, n] at the model rate."""
        self.diff = np.concatenate([self.diff, self._upsample(binaural[0] - binaural[1])])

    def _take_original(self) -> None:
        pieces = self.original.take()
        if pieces:
            self.mix = np.concatenate([self.mix, *(p[0] + p[1] for p in pieces)])

    def pop(self) -> np.ndarray:
        """Return the output both sides have reached so far."""
        self._take_original()
        return self._emit(min(len(self.diff), len(self.mix)))

    def finish(self) -> np.ndarray:
        """Flush once all input was decoded: the output has exactly the original's length (the difference is
        padded or cut)."""
        self._take_original()
        self.diff = np.concatenate([self.diff, self._upsample(None)])
        if len(self.diff) < len(self.mix):
            self.diff = np.concatenate([self.diff, np.zeros(len(self.mix) - len(self.diff), np.float32)])
        return self._emit(len(self.mix))

    def _emit(self, n: int) -> np.ndarray:
        m, d = self.mix[:n], self.diff[:n]
        self.mix, self.diff = self.mix[n:], self.diff[n:]
        return np.stack([(m + d) * 0.5, (m - d) * 0.5]).astype(np.float32)
