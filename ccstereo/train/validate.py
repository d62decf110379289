"""Validation as in inference: sliding windows at the runtime's hop with V-TTA, overlap-averaged, metrics."""

from __future__ import annotations

import numpy as np

from ccstereo.metrics import evaluate, peak_normalize
from ccstereo.model import CCStereo
from ccstereo.runtime.backends.torch import TorchBackend
from ccstereo.runtime.binauralizer import Binauralizer, RunOptions
from ccstereo.train.data import Clip


def infer_clip(
    model: CCStereo, clip: Clip, hop_samples: int | None = None, tta: bool = True, batch: int = 64
) -> np.ndarray:
    """Return the model's binaural [2, N] for a clip through the runtime's own streaming inference."""
    engine = Binauralizer(TorchBackend.from_model(model, batch))
    return engine.process_arrays(clip.audio, clip.frames, RunOptions(hop_samples=hop_samples, tta=tta))


def validate(model: CCStereo, clips: list[Clip], hop_samples: int | None = None) -> dict[str, float]:
    """Return the mean paper metrics over ``clips`` (peak-normalised prediction vs ground truth)."""
    totals: dict[str, float] = {}
    for clip in clips:
        pred = infer_clip(model, clip, hop_samples)
        scores = evaluate(peak_normalize(pred), peak_normalize(clip.audio.astype(np.float64)))
        for k, v in scores.items():
            totals[k] = totals.get(k, 0.0) + v
    return {k: v / len(clips) for k, v in totals.items()}
