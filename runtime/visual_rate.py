"""The adaptive visual rate: run the visual network on a crop only when the picture there has changed.

At a 0.1 s hop every window has its own frame, and the visual network (ResNet-18 + ASPP at 448x224) is ~95 % of
a window's arithmetic; most videos change little from one tenth of a second to the next. Each V-TTA crop
position (five with V-TTA, one without; each plain and mirrored with mirror test-time augmentation) keeps the
features last computed for it and a thumbnail of the crop they were computed from. A new crop at that position
reuses those features when

- its pixels are identical to that crop's (exact: the features would be the same; at any age), or
- the thumbnail differs by at most ``threshold`` grey levels (0-255) in every tile of ``TILE`` x ``TILE``
  pixels (a mean absolute difference per tile: a small moving object counts as much as a pan), and the features
  are at most ``max_stale_s`` old (``threshold`` 0: identical pixels only, the exact output);

otherwise they are computed afresh. The decision is made on the decoding thread from pixels alone
(``CropTracker``); the thread that runs the model keeps the features by key (``FeatureStore``) and runs the
two halves of the window graph (``runtime.graph_split``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from ccstereo.runtime.errors import OptionError

SCALE = 8  # thumbnail: the crop's mean over SCALE x SCALE pixel blocks
TILE = 56  # difference measured per tile of TILE x TILE crop pixels (a multiple of SCALE)


@dataclass(frozen=True)
class AdaptiveRate:
    """When features may be reused: largest per-tile change (grey levels) and largest age (seconds)."""

    threshold: float
    max_stale_s: float

    def __post_init__(self) -> None:
        if not self.threshold >= 0:
            raise OptionError(f"visual change threshold must be >= 0 grey levels, got {self.threshold}")
        if not self.max_stale_s >= 0:
            raise OptionError(f"visual max staleness must be >= 0 seconds, got {self.max_stale_s}")


def thumbnail(crop: np.ndarray) -> np.ndarray:
    """Return the float32 [h / SCALE, w / SCALE] grey-level block means of a uint8 [h, w, 3] crop."""
    h, w = crop.shape[0] // SCALE * SCALE, crop.shape[1] // SCALE * SCALE
    grey = crop[:h, :w].astype(np.float32).mean(axis=2)
    return grey.reshape(h // SCALE, SCALE, w // SCALE, SCALE).mean(axis=(1, 3))


def change(a: np.ndarray, b: np.ndarray) -> float:
    """Return the largest per-tile mean absolute difference (grey levels) of two thumbnails."""
    t = TILE // SCALE
    diff = np.abs(a - b)
    h, w = -(-diff.shape[0] // t) * t, -(-diff.shape[1] // t) * t
    padded = np.zeros((h, w), np.float32)  # edge tiles are averaged over their whole tile area, padded with 0
    padded[: diff.shape[0], : diff.shape[1]] = diff
    return float(padded.reshape(h // t, t, w // t, t).mean(axis=(1, 3)).max())


@dataclass
class _Slot:
    key: int
    crop: np.ndarray
    thumb: np.ndarray
    tick: int


@dataclass(frozen=True)
class Decision:
    key: int  # which features this crop uses
    fresh: bool  # True: compute them from this crop
    exact: bool  # a reuse of features of identical pixels (False for an approximate reuse)


class CropTracker:
    """Decoding-thread side: for each (tick, crop), the key of the features to use and whether to compute."""

    def __init__(self, rate: AdaptiveRate, fps: float, tta: bool) -> None:
        self.rate = rate
        self.max_stale_ticks = int(round(rate.max_stale_s * fps))
        self.positions = 5 if tta else 1
        self.slots: dict[tuple[int, bool], _Slot] = {}
        self.next_key = 0

    def decide(self, tick: int, crop: np.ndarray, flip: bool = False) -> Decision:
        # the V-TTA crop position of frame number tick + 1, and whether the crop is mirrored (``RunOptions.mirror``):
        # a mirrored crop is compared with the last mirrored crop of its position, never with a plain one
        position = ((tick + 1) % self.positions, flip)
        slot = self.slots.get(position)
        if slot is not None:
            if np.array_equal(slot.crop, crop):
                return Decision(slot.key, False, True)
            thumb = thumbnail(crop)
            fresh_enough = tick - slot.tick <= self.max_stale_ticks
            if fresh_enough and self.rate.threshold > 0 and change(thumb, slot.thumb) <= self.rate.threshold:
                return Decision(slot.key, False, False)
        else:
            thumb = thumbnail(crop)
        key, self.next_key = self.next_key, self.next_key + 1
        self.slots[position] = _Slot(key, crop, thumb, tick)
        return Decision(key, True, False)

    def live(self) -> frozenset[int]:
        """Return the keys a later crop may still reuse."""
        return frozenset(slot.key for slot in self.slots.values())


@dataclass
class KeyPlan:
    """The visual part of an adaptive batch: ``Batch.frames[i]`` computes key ``new_keys[i]``; window j uses
    the features of ``window_keys[j]``; after the batch only ``live`` keys are kept."""

    new_keys: list[int]
    window_keys: np.ndarray  # [W] int64
    live: frozenset[int]
    reused: int = 0  # distinct ticks of this batch whose crops were not computed (approximately similar)
    shared: int = 0  # ... whose pixels equal a computed crop's (exact)


class SplitRunner(Protocol):
    """The two halves of a window graph: visual features of crops; binaural windows from features."""

    def features(self, frames: np.ndarray) -> np.ndarray: ...

    def fuse(self, features: np.ndarray, mono: np.ndarray, frame_index: np.ndarray) -> np.ndarray: ...


@dataclass
class FeatureStore:
    """Model-thread side: computes the new keys' features, gathers each window's, runs the fusion half."""

    runner: SplitRunner
    features: dict[int, np.ndarray] = field(default_factory=dict)

    def run(self, frames: np.ndarray, mono: np.ndarray, plan: KeyPlan) -> np.ndarray:
        if len(frames):
            self.features.update(zip(plan.new_keys, self.runner.features(frames), strict=True))
        keys, index = np.unique(plan.window_keys, return_inverse=True)
        table = np.stack([self.features[int(k)] for k in keys])
        out = self.runner.fuse(table, mono, index.astype(np.int64))
        self.features = {k: v for k, v in self.features.items() if k in plan.live}
        return out
