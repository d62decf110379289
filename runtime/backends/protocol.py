"""The Backend protocol: one engine call per batch of windows, and the model file it runs."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from ccstereo.runtime.model_info import ModelInfo
from ccstereo.runtime.visual_rate import SplitRunner

DEFAULT_BATCH = 32  # windows per engine call when neither --batch-size nor a measurement says otherwise


@runtime_checkable
class Backend(Protocol):
    """Runs the exported window graph: (frames u8 [F,224,448,3], mono f32 [W,N], frame_index i64 [W])."""

    name: str  # engine-device-precision, for people; programs read the fields
    precision: str  # what it computes in: fp32 | fp16 | bf16 | int8
    max_batch: int
    info: ModelInfo  # the model's config, checkpoint hash, precision and measured accuracy

    def run(self, frames: np.ndarray, mono: np.ndarray, frame_index: np.ndarray) -> np.ndarray:
        """Return binaural float32 [W, 2, N]."""
        ...

    def split(self) -> SplitRunner:
        """Return the graph's visual and fusion halves (the adaptive visual rate); raise
        BackendUnavailableError when this engine can only run the whole graph."""
        ...


def as_feeds(frames: np.ndarray, mono: np.ndarray, frame_index: np.ndarray) -> dict[str, np.ndarray]:
    """Return the graph inputs as contiguous arrays of the exported dtypes (u8, f32, i64)."""
    return {
        "frames": np.ascontiguousarray(frames, dtype=np.uint8),
        "mono": np.ascontiguousarray(mono, dtype=np.float32),
        "frame_index": np.ascontiguousarray(frame_index, dtype=np.int64),
    }


def fusion_feeds(feature_name: str, features: np.ndarray, mono: np.ndarray, frame_index: np.ndarray) -> dict:
    """Return the inputs of a graph's fusion half (``runtime.graph_split``) as contiguous arrays."""
    return {
        feature_name: np.ascontiguousarray(features),
        "mono": np.ascontiguousarray(mono, dtype=np.float32),
        "frame_index": np.ascontiguousarray(frame_index, dtype=np.int64),
    }
