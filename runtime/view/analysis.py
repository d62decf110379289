"""What the listening page plots, computed here with numpy: loudness of each track, the left-right level
difference per 0.1 s and the L / R spectrograms. The browser only draws what these functions return."""

from __future__ import annotations

import base64
from dataclasses import asdict, dataclass

import numpy as np

ILD_FRAME_S = 0.1  # one ILD value per 0.1 s, the hop of the model's windows
SILENCE_DB = 60.0  # a frame this far below the loudest frame of the file has no ILD (it is silence)
ILD_LIMIT_DB = 40.0  # beyond this one ear is as good as silent: the curve is clipped here
SPEC_COLUMNS = 1200  # most time columns a spectrogram is sent with (longer files are pooled)
SPEC_ROWS = 128  # frequency rows, linear from 0 Hz to half the sample rate
SPEC_RANGE_DB = 80.0  # dynamic range shown, below the loudest bin of both channels
SPEC_FRAMES_PER_COLUMN = 4  # FFT frames averaged into one column (evenly spread over the column)


def rms(audio: np.ndarray) -> float:
    """Root mean square over every channel and sample of ``audio`` [C, N]."""
    return float(np.sqrt(np.mean(np.square(audio, dtype=np.float64)))) if audio.size else 0.0


def matched_gains(levels: dict[str, float]) -> dict[str, float]:
    """Return a playback gain (<= 1) per track that brings every track to the RMS of the quietest one;
    a silent track keeps gain 1 (there is nothing to match)."""
    audible = [v for v in levels.values() if v > 0]
    quietest = min(audible) if audible else 0.0
    return {k: (quietest / v if v > 0 else 1.0) for k, v in levels.items()}


def _frame_energies(stereo: np.ndarray, rate_hz: int, frame_s: float) -> np.ndarray:
    """Mean square of each channel per frame of ``frame_s`` -> [2, frames] float64 (the last frame padded)."""
    hop = max(1, round(rate_hz * frame_s))
    frames = -(-stereo.shape[1] // hop)
    padded = np.zeros((2, frames * hop), np.float64)
    padded[:, : stereo.shape[1]] = stereo
    return np.mean(np.square(padded.reshape(2, frames, hop)), axis=2)


def ild_curve(stereo: np.ndarray, rate_hz: int, frame_s: float = ILD_FRAME_S) -> list[float | None]:
    """Left minus right level in dB per frame of ``stereo`` [2, N] (positive: the left ear is louder).

    Frames more than SILENCE_DB below the file's loudest frame are None (no direction in silence); values are
    clipped to +-ILD_LIMIT_DB (one ear silent)."""
    energy = _frame_energies(stereo, rate_hz, frame_s)
    total = energy.sum(axis=0)
    peak = float(total.max()) if total.size else 0.0
    if peak <= 0.0:
        return [None] * total.size
    floor = peak * 10 ** (-SILENCE_DB / 10)
    ild = 10 * np.log10((energy[0] + floor) / (energy[1] + floor))
    ild = np.clip(ild, -ILD_LIMIT_DB, ILD_LIMIT_DB)
    return [None if t < floor else round(float(v), 2) for v, t in zip(ild, total, strict=True)]


@dataclass(frozen=True)
class Spectrograms:
    """L and R power spectrograms on one dB scale, as uint8 rows (row 0 = 0 Hz), base64 for the page."""

    rows: int
    columns: int
    top_hz: float
    range_db: float
    left: str
    right: str

    def to_dict(self) -> dict:
        return asdict(self)


def _column_power(x: np.ndarray, n_fft: int, columns: int) -> np.ndarray:
    """Power spectrum [columns, n_fft // 2 + 1] of ``x``: per column, the mean of a few Hann-windowed frames
    spread over the column's span (so an hour of audio costs the same as a minute)."""
    span = len(x) / columns
    offsets = (np.arange(SPEC_FRAMES_PER_COLUMN) + 0.5) / SPEC_FRAMES_PER_COLUMN
    centres = (np.arange(columns)[:, None] + offsets[None, :]) * span
    starts = np.clip(np.round(centres - n_fft / 2).astype(np.int64), 0, max(0, len(x) - n_fft))
    padded = np.pad(x, (0, max(0, n_fft - len(x))))
    frames = padded[starts[..., None] + np.arange(n_fft)]  # [columns, k, n_fft]
    window = np.hanning(n_fft).astype(np.float32)
    power = np.abs(np.fft.rfft(frames * window, axis=-1)) ** 2
    return power.mean(axis=1)


def _pool_rows(power: np.ndarray, rows: int) -> np.ndarray:
    """Mean over equal bands of frequency bins -> [columns, rows]."""
    edges = np.linspace(0, power.shape[1], rows + 1).round().astype(int)
    return np.stack([power[:, a:b].mean(axis=1) for a, b in zip(edges[:-1], edges[1:], strict=True)], axis=1)


def spectrograms(stereo: np.ndarray, rate_hz: int) -> Spectrograms:
    """L and R spectrograms of ``stereo`` [2, N], SPEC_RANGE_DB below their common peak (at most a column per
    10 ms, per 64 samples, and SPEC_COLUMNS in all)."""
    n_fft = 512 if rate_hz <= 24000 else 1024
    samples = stereo.shape[1]
    columns = int(max(1, min(SPEC_COLUMNS, round(samples / rate_hz / 0.01), samples // 64)))
    pooled = [_pool_rows(_column_power(stereo[c].astype(np.float32), n_fft, columns), SPEC_ROWS) for c in range(2)]
    db = [10 * np.log10(p + 1e-20) for p in pooled]
    top = max(float(d.max()) for d in db)
    scaled = [np.clip((d - (top - SPEC_RANGE_DB)) / SPEC_RANGE_DB, 0.0, 1.0) for d in db]
    encoded = [base64.b64encode((s.T * 255).round().astype(np.uint8).tobytes()).decode("ascii") for s in scaled]
    return Spectrograms(SPEC_ROWS, columns, rate_hz / 2, SPEC_RANGE_DB, encoded[0], encoded[1])


def mono_mix(audio: np.ndarray) -> np.ndarray:
    """The mix the model hears: (L + R) / 2 of [2, N] audio (a mono input arrives as L = R)."""
    return audio.mean(axis=0, dtype=np.float64).astype(np.float32)
