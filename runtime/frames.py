"""Frame preprocessing exactly as the official loader: Pillow's default resize, then the V-TTA crop."""

from __future__ import annotations

import numpy as np

from ccstereo.config import ModelConfig
from ccstereo.runtime.windows import crop_box


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
