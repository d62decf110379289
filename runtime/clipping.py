"""Keeping the binaural output within full scale, as the user chose, and saying when it acted.

A binaural rendering of a full-scale input legitimately peaks above 1.0 (L = (M + D) / 2 grows wherever the
model moves energy to one side). Integer PCM and most players clip such samples, so the default never lets
them through silently:

- ``rescale`` (default): the whole file is scaled so its peak is ``RESCALE_PEAK``, only when it would exceed
  full scale. Blocks go to the writer as they come and are also spooled to a float32 file beside the output;
  at the first sample above full scale the writer stops (what it would write is certain to be replaced) and, at
  the end, starts again from the spool, scaled. The common case costs one extra disk write, the rare case one
  extra encode; memory stays flat either way.
  A lossy output (AAC) overshoots what it was given (a full-scale square wave decodes 1.5 dB above its input),
  so there the measure is the DECODED file's true peak (4x oversampled, ITU-R BS.1770 practice): above
  ``LOSSY_TRUE_PEAK_DBTP`` (-1 dBTP, EBU R128) the file is written again from the spool, scaled to fit, and
  measured again.
- ``clamp``: samples beyond full scale are clamped (counted in the report).
- ``none``: written as computed (float wav keeps them; formats that cannot hold them clamp; counted).
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from ccstereo.runtime.errors import OptionError
from ccstereo.runtime.options import ClipMode
from ccstereo.runtime.writers import temporary_path

CLIP_MODES = tuple(m.value for m in ClipMode)
# Target peak after rescaling: a little below 1.0 so a lossy encoder's overshoot stays below full scale too.
RESCALE_PEAK = 0.98
LOSSY_TRUE_PEAK_DBTP = -1.0
# A lossy output is decoded and measured only when its input peaks above this (AAC's overshoot stays well under
# the 3 dB between it and the limit); quieter outputs cost nothing extra.
LOSSY_CHECK_ABOVE = 10 ** (-4.0 / 20)
_SPOOL_BLOCK = 1 << 16


class Writer(Protocol):
    def write(self, block: np.ndarray) -> None: ...
    def commit(self) -> Path: ...
    def abort(self) -> None: ...


class LossyWriter(Writer, Protocol):
    def finish(self) -> Path: ...
    def measure_true_peak(self, background: bool = False) -> None: ...
    def true_peak(self) -> float | None: ...


@dataclass
class ClipReport:
    """What the output's level was and what was done about it."""

    mode: str = "rescale"
    peak: float = 0.0  # largest |sample| of the binaural output as computed
    samples_over: int = 0  # samples (per channel, counted separately) with |x| > 1.0 as computed
    action: str = "none"  # none | rescaled | clamped | kept (mode none: left above full scale)
    gain_db: float = 0.0
    true_peak_dbtp: float | None = None  # lossy outputs: the decoded file's true peak, when it was measured

    def describe(self) -> str | None:
        """Return one sentence for the user when the level was acted on or left over full scale."""
        if self.action == "rescaled" and self.peak <= 1.0:
            return (
                f"the encoded output's true peak would exceed {LOSSY_TRUE_PEAK_DBTP:g} dBTP: scaled by "
                f"{self.gain_db:.1f} dB to {self.true_peak_dbtp:.1f} dBTP (--clip-mode none to change)"
            )
        if self.action == "rescaled":
            decoded = "" if self.true_peak_dbtp is None else f" (decoded: {self.true_peak_dbtp:.1f} dBTP)"
            return (
                f"output peaked at {self.peak:.2f} (above full scale): scaled by {self.gain_db:.1f} dB{decoded} "
                "(--clip-mode clamp or none to change)"
            )
        if self.action == "clamped":
            return f"{self.samples_over} samples above full scale clamped (peak {self.peak:.2f})"
        if self.action == "kept":
            return f"{self.samples_over} samples above full scale left as computed (peak {self.peak:.2f})"
        return None


class _Dropped:
    """Stands for a writer whose output was certain to be written again: takes blocks and keeps nothing."""

    def write(self, block: np.ndarray) -> None: ...
    def commit(self) -> Path:
        raise AssertionError("a dropped writer is never committed: the output is written again from the spool")

    def abort(self) -> None: ...


class ClipGuard:
    """A writer wrapper that applies the clip mode; ``commit`` returns the final path."""

    def __init__(
        self,
        open_writer: Callable[[], Writer],
        mode: str,
        final: Path,
        holds_over_full_scale: bool = True,
        lossy: bool = False,
    ) -> None:
        """``holds_over_full_scale``: whether the format stores |x| > 1 (float wav, AAC) or clamps (flac);
        ``lossy``: an encoder that overshoots (AAC), whose decoded output is measured (``LossyWriter``)."""
        self.holds, self.lossy = holds_over_full_scale, lossy
        if mode not in CLIP_MODES:
            raise OptionError(f"unknown clip mode {mode!r}; choose one of {', '.join(CLIP_MODES)}")
        self.open_writer, self.report = open_writer, ClipReport(mode)
        self.writer: Writer | None = None
        self.spool_path: Path | None = None
        self.spool = None
        try:  # a signal between two files leaves neither
            self._open()
            if mode == "rescale":
                self.spool_path = temporary_path(final, suffix=".f32")
                self.spool = open(self.spool_path, "wb")  # noqa: SIM115 - closed by commit/abort
        except BaseException:
            self.abort()
            raise

    def _open(self, again: bool = False) -> None:
        """Open the writer; a lossy one that may have to fit the limit measures its decoded true peak as it goes
        (``again``, writing it again scaled: on a thread of its own, beside the encoding)."""
        self.writer = self.open_writer()
        if self.lossy and self.report.mode == "rescale":
            self.writer.measure_true_peak(background=again)  # type: ignore[attr-defined]

    def write(self, block: np.ndarray) -> None:
        """Write [2, n] float32 samples."""
        if not block.shape[1]:
            return
        magnitude = np.abs(block)
        self.report.peak = max(self.report.peak, float(magnitude.max()))
        over = int(np.count_nonzero(magnitude > 1.0))
        self.report.samples_over += over
        if self.report.mode == "clamp" and over:
            block = np.clip(block, -1.0, 1.0)
        if self.spool is not None:
            self.spool.write(np.ascontiguousarray(block.T, np.float32).tobytes())
            if over and not isinstance(self.writer, _Dropped):
                self._drop_writer()
        assert self.writer is not None
        self.writer.write(block)

    def _drop_writer(self) -> None:
        """Above full scale with a spool: ``commit`` writes the whole file again from it, scaled, whatever this
        writer holds, so it stops now (its encoding and level measuring would be thrown away) and its file goes."""
        assert self.writer is not None
        self.writer.abort()
        self.writer = _Dropped()

    def commit(self) -> Path:
        assert self.writer is not None
        r = self.report
        if r.samples_over and r.mode == "clamp":
            r.action = "clamped"
        elif r.samples_over and r.mode == "none":
            r.action = "kept" if self.holds else "clamped"
        elif r.samples_over and self.spool is not None:
            self._rewrite_scaled(RESCALE_PEAK / r.peak)
        if self.lossy and self.spool is not None and r.peak * 10 ** (r.gain_db / 20) > LOSSY_CHECK_ABOVE:
            self._fit_true_peak()
        final = self.writer.commit()
        self._drop_spool()
        return final

    def _fit_true_peak(self) -> None:
        """Measure the decoded output; while its true peak exceeds the limit, write it again scaled to fit."""
        limit = 10 ** (LOSSY_TRUE_PEAK_DBTP / 20)
        gain = 10 ** (self.report.gain_db / 20)
        for _ in range(4):
            writer: LossyWriter = self.writer  # type: ignore[assignment]
            writer.finish()
            peak = writer.true_peak()  # decoded while it was written (asked for in ``_open``)
            assert peak is not None
            self.report.true_peak_dbtp = 20 * math.log10(max(peak, 1e-12))
            if peak <= limit:
                return
            gain *= 0.995 * limit / peak  # a little under: the encoder's overshoot moves with the level
            self._rewrite_scaled(gain)

    def _rewrite_scaled(self, gain: float) -> None:
        assert self.spool is not None and self.spool_path is not None and self.writer is not None
        self.spool.close()
        self.writer.abort()
        self.writer = None
        self._open(again=True)
        assert self.writer is not None
        with open(self.spool_path, "rb") as spool:
            while chunk := spool.read(_SPOOL_BLOCK * 8):
                frames = np.frombuffer(chunk, np.float32).reshape(-1, 2)
                self.writer.write(np.ascontiguousarray(frames.T * np.float32(gain)))
        self.report.action = "rescaled"
        self.report.gain_db = 20 * math.log10(gain)

    def _drop_spool(self) -> None:
        if self.spool is not None:
            self.spool.close()
        if self.spool_path is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.spool_path)

    def abort(self) -> None:
        """Delete every temporary file (output and spool)."""
        try:
            if self.writer is not None:
                self.writer.abort()
        finally:
            self._drop_spool()
