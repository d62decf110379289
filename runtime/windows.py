"""Window planner: where each 0.63 s window starts, which 10 fps frame it uses and which V-TTA crop.

Windows start at 0, hop, 2 hop, ...; there are ``ceil((N - W) / hop) + 1`` of them (one if N <= W), the last
one zero-padded, exactly as the official test mode. A window uses the frame nearest its centre: frame number
``round(centre_s * fps) + 1`` (1-based, Python rounding), and with V-TTA the crop ``frame_number % 5``:
0 top-left, 1 top-right, 2 bottom-left, 3 bottom-right, 4 centre.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ccstereo.config import ModelConfig
from ccstereo.runtime.errors import OptionError


@dataclass(frozen=True)
class WindowPlan:
    window_samples: int
    hop_samples: int
    sample_rate_hz: int
    fps: float

    @classmethod
    def for_config(cls, config: ModelConfig, hop_samples: int | None = None) -> WindowPlan:
        hop = config.hop_samples if hop_samples is None else hop_samples
        if not 1 <= hop <= config.window_samples:
            raise OptionError(f"hop of {hop} samples must be in 1..{config.window_samples}")
        return cls(config.window_samples, hop, config.sample_rate_hz, config.fps)

    def count(self, n_samples: int) -> int:
        """Return the number of windows covering ``n_samples`` samples."""
        if n_samples <= 0:
            raise ValueError(f"no windows for {n_samples} samples")
        if n_samples <= self.window_samples:
            return 1
        return math.ceil((n_samples - self.window_samples) / self.hop_samples) + 1

    def start(self, k: int) -> int:
        return k * self.hop_samples

    def frame_number(self, k: int) -> int:
        """Return the 1-based number of the 10 fps frame nearest the centre of window ``k``."""
        return self.frame_number_at(self.start(k))

    def frame_number_at(self, start: int) -> int:
        """Return the 1-based number of the 10 fps frame nearest the centre of a window starting at ``start``."""
        centre_s = (start + self.window_samples / 2) / self.sample_rate_hz
        return round(centre_s * self.fps) + 1

    def tick_at(self, start: int) -> int:
        """Return the 0-based frame tick of a window starting at sample ``start``."""
        return self.frame_number_at(start) - 1

    def tick(self, k: int) -> int:
        """Return the 0-based frame tick (time ``tick / fps``) of window ``k``."""
        return self.frame_number(k) - 1


def cut_windows(signal: np.ndarray, plan: WindowPlan) -> tuple[np.ndarray, np.ndarray]:
    """Return (starts [W] int64, windows [W, window] float32) of a whole 1-D signal held in memory, the last
    window zero-padded: the windows the streaming producer cuts, for clips that are already decoded (the
    official test mode, verification sets, the eager-PyTorch benchmark row)."""
    n = signal.shape[-1]
    starts = np.array([plan.start(k) for k in range(plan.count(n))], np.int64)
    padded = np.zeros(int(starts[-1]) + plan.window_samples, np.float32)
    padded[:n] = signal
    return starts, np.stack([padded[s : s + plan.window_samples] for s in starts])
