"""No visual work twice: crops with identical pixels go through the visual network once per batch, and the
output is the same to the bit as computing every one of them."""

from __future__ import annotations

import re

import numpy as np
import pytest
import soundfile as sf

from ccstereo.runtime.binauralizer import Binauralizer, RunOptions
from ccstereo.runtime.stream import FIRST_BATCH, _unique
from conftest import write_lossless_video

RATE = 16000


def _audio(seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    tone = 0.3 * np.sin(2 * np.pi * 330 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 0.7 * t))
    return np.stack([tone + 0.01 * rng.standard_normal(t.size), 0.5 * tone]).astype(np.float32)


def _picture(seed: int, shape=(240, 480, 3)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def _run(engine, video, tmp_path, share: bool):
    out = tmp_path / f"{video.stem}.{share}.wav"
    options = RunOptions(fmt="wav", full_band=False, share_identical_crops=share, overwrite=True)
    report = engine.process(video, out, options)
    return sf.read(out, dtype="float32", always_2d=True)[0], report


@pytest.fixture(scope="module")
def engine(exported):
    return Binauralizer.load(exported, precision="fp32")


def test_a_still_picture_is_computed_once_per_crop_position_and_the_output_is_bit_identical(engine, tmp_path):
    # Cover art over music: 40 identical frames (4 s at 10 fps).
    video = write_lossless_video(tmp_path / "still.mkv", [_picture(1)] * 40, _audio(4.0), RATE)
    shared, with_sharing = _run(engine, video, tmp_path, True)
    computed, without = _run(engine, video, tmp_path, False)
    assert np.array_equal(shared, computed)
    assert without.crops_shared == 0 and without.crops_computed >= without.windows - without.batches
    # V-TTA cuts 5 different crops of one picture: at most 5 per batch are computed.
    assert with_sharing.crops_computed <= 5 * with_sharing.batches
    assert with_sharing.crops_shared == without.crops_computed - with_sharing.crops_computed > 0


def test_a_moving_picture_shares_only_frames_that_repeat(engine, tmp_path):
    # Five different pictures, each held for 1 s (a slideshow): a picture's 10 ticks use 5 crop positions, so
    # ticks 5 apart share; a 0.5 s hold would share nothing (5 ticks, 5 positions).
    frames = [_picture(10 + i // 10) for i in range(50)]
    video = write_lossless_video(tmp_path / "slides.mkv", frames, _audio(5.0, seed=3), RATE)
    shared, with_sharing = _run(engine, video, tmp_path, True)
    computed, without = _run(engine, video, tmp_path, False)
    assert np.array_equal(shared, computed)
    assert 0 < with_sharing.crops_shared < without.crops_computed


def test_crops_that_differ_by_one_pixel_are_not_shared():
    a = _picture(5, (224, 448, 3))
    b = a.copy()
    b[100, 200, 1] ^= 1
    unique, where = _unique([a, b, a.copy(), b.copy()], True)
    assert len(unique) == 2 and where == [0, 1, 0, 1]
    assert _unique([a, a], False)[1] == [0, 1]


def test_a_long_still_picture_is_one_batch_of_five_crops(engine, tmp_path):
    # 12 s of one picture: ~110 windows, more than a batch (32); with five distinct crops the batch grows (up to
    # 8 x 32 windows) instead of computing the same five crops again in every batch of 32. (The small first batch,
    # FIRST_BATCH windows for an early start, computes its own crops.)
    video = write_lossless_video(tmp_path / "long-still.mkv", [_picture(4)] * 120, _audio(12.0, seed=5), RATE)
    shared, with_sharing = _run(engine, video, tmp_path, True)
    computed, without = _run(engine, video, tmp_path, False)
    assert np.array_equal(shared, computed)
    assert with_sharing.windows > 100 and with_sharing.batches == 2
    assert with_sharing.crops_computed == FIRST_BATCH + 5
    assert without.batches >= 4  # without sharing a batch stays at 32 windows


@pytest.mark.parametrize(
    ("frames", "shown"),
    [
        (np.zeros((4, 96, 160, 3), np.float32), "float32 (96, 160, 3)"),  # floats, not 0-255 bytes
        (np.zeros((96, 160, 3), np.uint8), "uint8 (160, 3)"),  # one picture given as the frame list
        (np.zeros((4, 96, 160), np.uint8), "uint8 (96, 160)"),  # grey, no colour axis
    ],
    ids=["float", "one-picture", "grey"],
)
def test_process_arrays_names_frames_that_are_not_rgb_pictures(engine, frames, shown):
    from ccstereo.runtime.errors import OptionError

    with pytest.raises(OptionError, match=re.escape(f"frames[0] must be a uint8 RGB picture [H, W, 3], got {shown}")):
        engine.process_arrays(_audio(1.0), frames)
