"""The PyTorch reference backend (``ccs-run --backend torch``): runs a checkpoint without exporting it.

It lives outside ``ccstereo.runtime`` so that the runtime package never imports torch.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ccstereo.runtime.model_info import ModelInfo


class TorchBackend:
    """Run ``forward_windows`` of a checkpoint (official .pth or native .safetensors) on the CPU."""

    def __init__(self, checkpoint: Path, max_batch: int = 32) -> None:
        import hashlib

        from ccstereo.checkpoint import load_checkpoint

        self.model = load_checkpoint(checkpoint)
        sha = hashlib.sha256(Path(checkpoint).read_bytes()).hexdigest()
        self.info = ModelInfo(Path(checkpoint), self.model.config, sha, "fp32", 0, "torch")
        self.name = "torch-cpu-fp32"
        self.max_batch = max_batch

    def run(self, frames: np.ndarray, mono: np.ndarray, frame_index: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            out = self.model.forward_windows(
                torch.from_numpy(np.ascontiguousarray(frames)),
                torch.from_numpy(np.ascontiguousarray(mono)),
                torch.from_numpy(np.ascontiguousarray(frame_index, dtype=np.int64)),
            )
        return out.numpy()
