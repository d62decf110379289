"""Frame preprocessing exactly as the official loader: Pillow's default resize, then the V-TTA crop (which of
the five crop positions a frame number uses is ``crop_box``)."""

from __future__ import annotations

import numpy as np

from ccstereo.config import ModelConfig


def model_crop(image: np.ndarray, frame_number: int, config: ModelConfig, tta: bool) -> np.ndarray:
    """Return the uint8 [crop_h, crop_w, 3] model input for an RGB frame.

    With V-TTA: resize to 480x240 (Pillow's default filter, bicubic for RGB) and crop at the position
    ``frame_number % 5``; without: resize straight to 448x224, the paper's baseline.
    """
    from PIL import Image

    pil = Image.fromarray(image)
    if not tta:
        return np.asarray(pil.resize((config.crop_width, config.crop_height)), dtype=np.uint8)
    resized = pil.resize((config.resize_width, config.resize_height))
    return np.asarray(resized.crop(crop_box(frame_number, config)), dtype=np.uint8)


def crop_box(frame_number: int, config: ModelConfig) -> tuple[int, int, int, int]:
    """Return the (left, top, right, bottom) V-TTA crop of the resized frame for a 1-based frame number."""
    dx, dy = config.resize_width - config.crop_width, config.resize_height - config.crop_height
    x, y = {0: (0, 0), 1: (dx, 0), 2: (0, dy), 3: (dx, dy), 4: (dx // 2, dy // 2)}[frame_number % 5]
    return x, y, x + config.crop_width, y + config.crop_height
