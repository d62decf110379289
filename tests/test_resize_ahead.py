"""Frames resized on a pool ahead of use (``stream._ResizeAhead``): the same crops as one at a time, to the bit,
and no resize for a frame no window shows or a picture equal to the one before."""

from __future__ import annotations

import numpy as np
import pytest

from ccstereo.config import ModelConfig
from ccstereo.runtime import frames as frames_module
from ccstereo.runtime import stream
from ccstereo.runtime.report import StageTimes


def _pictures(count: int, still_from: int) -> list[np.ndarray]:
    """Random 1280x720 pictures; from ``still_from`` on the same picture repeats (a new array each time)."""
    rng = np.random.default_rng(7)
    moving = [rng.integers(0, 256, (720, 1280, 3), dtype=np.uint8) for _ in range(still_from + 1)]
    return moving + [moving[-1].copy() for _ in range(count - still_from - 1)]


@pytest.mark.parametrize("every", [1, 2, 3])
def test_crops_read_ahead_equal_those_made_one_at_a_time_and_skip_what_no_window_shows(monkeypatch, every):
    config, pictures = ModelConfig(), _pictures(24, 16)
    wanted = list(range(0, 30, every))  # windows at a hop of ``every`` ticks; the last ticks repeat the last frame
    plain = stream._Frames(iter(enumerate(pictures)), config, True, StageTimes())
    expected = [plain.crop(t) for t in wanted]
    resized: list[int] = []
    real = frames_module.resize_for_model

    def counting(image, cfg, tta):
        resized.append(id(image))
        return real(image, cfg, tta)

    monkeypatch.setattr(stream, "resize_for_model", counting)
    ahead = stream._Frames(iter(enumerate(pictures)), config, True, StageTimes(), iter(wanted))
    got = [ahead.crop(t) for t in wanted]
    assert all(np.array_equal(a, b) for a, b in zip(got, expected, strict=True))
    moving = [t for t in wanted if t < 16]  # ticks 16-23, and the ticks past the end, show one picture: once
    assert len(resized) == len(moving) + 1, (len(resized), wanted)


def test_a_centre_crop_asked_of_a_frame_resized_for_five_crops_is_made_for_it():
    config, pictures = ModelConfig(), _pictures(6, 6)
    ahead = stream._Frames(iter(enumerate(pictures)), config, True, StageTimes(), iter(range(6)))
    assert ahead.crop(0).shape == (config.crop_height, config.crop_width, 3)
    centre = ahead.crop(1, tta=False)  # a live run's degradation asks for the centre crop of another size
    plain = stream._Frames(iter(enumerate(pictures)), config, False, StageTimes())
    assert np.array_equal(centre, plain.crop(1))
