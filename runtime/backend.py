"""The Backend protocol: one engine call per batch of windows."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Backend(Protocol):
    """Runs the exported window graph: (frames u8 [F,224,448,3], mono f32 [W,N], frame_index i64 [W])."""

    name: str
    max_batch: int

    def run(self, frames: np.ndarray, mono: np.ndarray, frame_index: np.ndarray) -> np.ndarray:
        """Return binaural float32 [W, 2, N]."""
        ...
