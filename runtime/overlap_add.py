"""Streaming overlap-add: average overlapping window outputs and hand out samples as soon as they are final."""

from __future__ import annotations

import numpy as np


class StreamingOverlapAdd:
    """Accumulate [C, W] window outputs at increasing starts; ``pop(until)`` returns averaged samples.

    Output and weight accumulate separately; a sample is emitted only once no later window can touch it, and
    its weight must be positive (a gap between windows is an error, not silence). Memory is bounded by one
    window plus one batch of hops, whatever the input length.
    """

    def __init__(self, channels: int, window: int) -> None:
        self.channels, self.window = channels, window
        self.base = 0  # absolute index of acc[:, 0]
        self.acc = np.zeros((channels, 0), np.float64)
        self.weight = np.zeros(0, np.float64)
        self.last_start = -1

    def add(self, start: int, block: np.ndarray) -> None:
        if start < self.last_start:
            raise ValueError(f"window starts must not decrease ({start} after {self.last_start})")
        if start < self.base:
            raise ValueError(f"window at {start} overlaps samples already emitted (up to {self.base})")
        if block.shape != (self.channels, self.window):
            raise ValueError(f"block shape {block.shape} != {(self.channels, self.window)}")
        end = start + self.window - self.base
        if end > self.weight.shape[0]:
            grow = end - self.weight.shape[0]
            self.acc = np.concatenate([self.acc, np.zeros((self.channels, grow))], axis=1)
            self.weight = np.concatenate([self.weight, np.zeros(grow)])
        self.acc[:, start - self.base : end] += block
        self.weight[start - self.base : end] += 1.0
        self.last_start = start

    def pop(self, until: int) -> np.ndarray:
        """Return float32 [C, until - base] averaged samples and forget them."""
        n = until - self.base
        if n <= 0:
            return np.zeros((self.channels, 0), np.float32)
        if n > self.weight.shape[0]:
            raise ValueError(f"cannot emit up to {until}: windows only cover up to {self.base + len(self.weight)}")
        weight = self.weight[:n]
        if np.any(weight <= 0):
            gap = self.base + int(np.argmax(weight <= 0))
            raise ValueError(f"sample {gap} is covered by no window (hop larger than the window?)")
        out = (self.acc[:, :n] / weight).astype(np.float32)
        self.acc, self.weight = self.acc[:, n:], self.weight[n:]
        self.base = until
        return out
