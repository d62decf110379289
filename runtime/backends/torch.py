"""The PyTorch reference backend (``ccs-run --backend torch``): runs a checkpoint without exporting it.

torch and the model code are imported when a backend is made, never at module import (the runtime stays
torch-free for users who only run exported models).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ccstereo.runtime.backends.protocol import DEFAULT_BATCH, as_feeds
from ccstereo.runtime.model_info import ModelInfo


class TorchBackend:
    """Run ``forward_windows`` of a CCStereo model on the CPU (a checkpoint, or a model in memory)."""

    def __init__(self, model, info: ModelInfo, max_batch: int = DEFAULT_BATCH) -> None:
        self.model = model.eval()
        self.info = info
        self.name, self.precision = "torch-cpu-fp32", "fp32"
        self.max_batch = max_batch

    @classmethod
    def from_checkpoint(cls, checkpoint: Path, max_batch: int = DEFAULT_BATCH) -> TorchBackend:
        """Load an official .pth or native .safetensors checkpoint."""
        import hashlib

        from ccstereo.checkpoint import load_checkpoint

        model = load_checkpoint(checkpoint)
        sha = hashlib.sha256(Path(checkpoint).read_bytes()).hexdigest()
        return cls(model, ModelInfo(Path(checkpoint), model.config, sha, "fp32", 0, "torch"), max_batch)

    @classmethod
    def from_model(cls, model, max_batch: int = DEFAULT_BATCH) -> TorchBackend:
        """Wrap a model in memory (validation during training)."""
        return cls(model, ModelInfo(Path("<in-memory>"), model.config, "", "fp32", 0, "torch"), max_batch)

    def run(self, frames: np.ndarray, mono: np.ndarray, frame_index: np.ndarray) -> np.ndarray:
        import torch

        feeds = as_feeds(frames, mono, frame_index)
        with torch.inference_mode():
            out = self.model.forward_windows(*(torch.from_numpy(feeds[k]) for k in ("frames", "mono", "frame_index")))
        return out.numpy()

    def split(self) -> TorchSplit:
        """Return the visual and fusion halves of ``forward_windows``."""
        return TorchSplit(self.model)


class TorchSplit:
    """``forward_windows`` in two calls: features of crops, then binaural windows from gathered features."""

    def __init__(self, model) -> None:
        self.model = model

    def features(self, frames: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(frames, dtype=np.uint8))
            return self.model.visual_features(self.model.normalize_frames(x)).numpy()

    def fuse(self, features: np.ndarray, mono: np.ndarray, frame_index: np.ndarray) -> np.ndarray:
        import torch

        model = self.model
        with torch.inference_mode():
            visual = torch.from_numpy(features).index_select(0, torch.from_numpy(frame_index.astype(np.int64)))
            spec, mono_n, normalizer = model.spectrogram(torch.from_numpy(np.ascontiguousarray(mono, np.float32)))
            mask = model.mask_from_features(visual, spec)
            return model.binaural_from_mask(spec, mask, mono_n, normalizer).numpy()
