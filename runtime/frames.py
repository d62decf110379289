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
    return crop_resized(resize_for_model(image, config, tta), frame_number, config, tta)


def picture_size(config: ModelConfig, tta: bool) -> tuple[int, int]:
    """(width, height) a picture is resized to before its crop: 480x240 with V-TTA, else 448x224."""
    return (config.resize_width, config.resize_height) if tta else (config.crop_width, config.crop_height)


def resize_for_model(image: np.ndarray, config: ModelConfig, tta: bool) -> np.ndarray:
    """Return the frame resized as the official loader does (480x240 with V-TTA, else 448x224), uint8 RGB. A picture
    already at that size is returned as it is, as Pillow's resize returns a copy of it (a video made at the model's
    size, or a picture FFmpeg resized: ``RunOptions.resize`` fast)."""
    from PIL import Image

    width, height = picture_size(config, tta)
    if image.shape[:2] == (height, width):
        return image
    return np.asarray(Image.fromarray(image).resize((width, height)), dtype=np.uint8)


def crop_resized(resized: np.ndarray, frame_number: int, config: ModelConfig, tta: bool) -> np.ndarray:
    """Return the V-TTA crop of a resized frame (the frame itself without V-TTA)."""
    if not tta:
        return resized
    left, top, right, bottom = crop_box(frame_number, config)
    return np.ascontiguousarray(resized[top:bottom, left:right])


def mirrored_window(k: int) -> bool:
    """Mirror test-time augmentation (``RunOptions.mirror``): whether window ``k`` (0-based, in the order windows are
    cut) sees its picture mirrored. Every other window, whatever the hop: the windows that overlap at any sample are
    half plain, half mirrored; at the default hop window k shows tick k + 3, so the mirrored ones are the odd ticks
    and over ten ticks each of the five V-TTA crop positions is seen both ways."""
    return k % 2 == 0


def crop_box(frame_number: int, config: ModelConfig) -> tuple[int, int, int, int]:
    """Return the (left, top, right, bottom) V-TTA crop of the resized frame for a 1-based frame number."""
    dx, dy = config.resize_width - config.crop_width, config.resize_height - config.crop_height
    x, y = {0: (0, 0), 1: (dx, 0), 2: (0, dy), 3: (dx, dy), 4: (dx // 2, dy // 2)}[frame_number % 5]
    return x, y, x + config.crop_width, y + config.crop_height
