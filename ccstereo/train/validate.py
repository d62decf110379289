"""Validation as in inference: sliding windows at the runtime's hop with V-TTA, overlap-averaged, metrics."""

from __future__ import annotations

import numpy as np
import torch

from ccstereo.metrics import evaluate, peak_normalize
from ccstereo.model import CCStereo
from ccstereo.runtime.frames import model_crop
from ccstereo.runtime.windows import WindowPlan
from ccstereo.train.data import Clip


def infer_clip(
    model: CCStereo,
    clip: Clip,
    hop_samples: int | None = None,
    tta: bool = True,
    frames_override: np.ndarray | None = None,
    batch: int = 64,
) -> np.ndarray:
    """Return the model's binaural [2, N] for a clip (whole-file sliding-window inference)."""
    cfg = model.config
    plan = WindowPlan.for_config(cfg, hop_samples)
    n = clip.audio.shape[1]
    count = plan.count(n)
    padded = np.zeros(plan.start(count - 1) + cfg.window_samples, np.float32)
    padded[:n] = clip.audio[0] + clip.audio[1]
    frames = clip.frames if frames_override is None else frames_override
    acc = np.zeros((2, len(padded)))
    weight = np.zeros(len(padded))
    model.eval()
    with torch.inference_mode():
        for first in range(0, count, batch):
            ks = range(first, min(first + batch, count))
            ticks = [min(plan.tick(k), len(frames) - 1) for k in ks]
            crops = np.stack(
                [model_crop(frames[t], plan.frame_number(k), cfg, tta) for k, t in zip(ks, ticks, strict=True)]
            )
            mono = np.stack([padded[plan.start(k) : plan.start(k) + cfg.window_samples] for k in ks])
            out = model.forward_windows(torch.from_numpy(crops), torch.from_numpy(mono)).numpy()
            for k, block in zip(ks, out, strict=True):
                acc[:, plan.start(k) : plan.start(k) + cfg.window_samples] += block
                weight[plan.start(k) : plan.start(k) + cfg.window_samples] += 1
    return (acc / weight)[:, :n].astype(np.float32)


def validate(model: CCStereo, clips: list[Clip], hop_samples: int | None = None) -> dict[str, float]:
    """Return the mean paper metrics over ``clips`` (peak-normalised prediction vs ground truth)."""
    totals: dict[str, float] = {}
    for clip in clips:
        pred = infer_clip(model, clip, hop_samples)
        scores = evaluate(peak_normalize(pred), peak_normalize(clip.audio.astype(np.float64)))
        for k, v in scores.items():
            totals[k] = totals.get(k, 0.0) + v
    return {k: v / len(clips) for k, v in totals.items()}
