"""``ccs-run --resize fast`` (``RunOptions.resize``): FFmpeg converts each picture to RGB and resizes it in one step
instead of the official loader's Pillow bicubic after the conversion. Not the official pixels, so never the default:
the pictures come at the model's size, upright, near the exact ones, and the output near the exact path's."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from ccstereo.config import ModelConfig
from ccstereo.runtime.binauralizer import Binauralizer, RunOptions
from ccstereo.runtime.errors import OptionError
from ccstereo.runtime.frames import picture_size, resize_for_model
from ccstereo.runtime.media import open_input
from ccstereo.runtime.verification import snr_db

CONFIG = ModelConfig()
ENGINE = {"backend": "onnxruntime", "precision": "fp32", "tune": False}


def _video(path: Path, seconds: float = 3.0, tag: list[str] | None = None) -> Path:
    """An ffmpeg-made 640x360 H.264 + AAC clip of a detailed moving picture; ``tag``: output options (rotation)."""
    made = path.with_suffix(".plain.mp4") if tag else path
    source = ["-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30", "-f", "lavfi", "-i", "sine=frequency=500"]
    encode = ["-t", str(seconds), "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac", str(made)]
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", *source, *encode], check=True)
    if tag:
        subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(made), "-c", "copy", *tag, str(path)],
                       check=True)  # fmt: skip
    return path


def _ticks(path: Path, size: tuple[int, int] | None, count: int = 12) -> list[np.ndarray]:
    frames = open_input(path).frames(CONFIG.fps, None, size)
    return [picture for _, (_, picture) in zip(range(count), frames, strict=False)]


@pytest.mark.parametrize("tta", [True, False])
def test_fast_pictures_come_at_the_model_size_near_the_official_resize_but_not_equal(tmp_path, tta):
    clip = _video(tmp_path / "clip.mp4")
    width, height = picture_size(CONFIG, tta)
    fast = _ticks(clip, (width, height))
    exact = [resize_for_model(picture, CONFIG, tta) for picture in _ticks(clip, None)]
    assert len(fast) == len(exact) == 12
    for a, b in zip(fast, exact, strict=True):
        assert a.shape == b.shape == (height, width, 3) and a.dtype == np.uint8
        difference = np.abs(a.astype(np.int16) - b.astype(np.int16))
        assert difference.mean() < 4.0, difference.mean()  # the same picture, another filter and rounding
    assert any(not np.array_equal(a, b) for a, b in zip(fast, exact, strict=True))  # the pixels are not the official


def test_a_rotated_video_is_resized_upright(tmp_path):
    clip = _video(tmp_path / "turned.mp4", tag=["-metadata:s:v:0", "rotate=90"])
    exact = _ticks(clip, None, 3)
    if exact[0].shape[:2] != (640, 360):
        pytest.skip(f"this PyAV does not report the stream's rotation (picture {exact[0].shape[:2]})")
    width, height = picture_size(CONFIG, True)
    fast = _ticks(clip, (width, height), 3)
    for a, b in zip(fast, exact, strict=True):
        assert a.shape == (height, width, 3)
        official = resize_for_model(b, CONFIG, True)
        assert np.abs(a.astype(np.int16) - official.astype(np.int16)).mean() < 4.0  # turned the same way


def test_a_picture_already_at_the_model_size_is_what_pillow_returns_for_it():
    rng = np.random.default_rng(3)
    for tta in (True, False):
        width, height = picture_size(CONFIG, tta)
        picture = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        pillow = np.asarray(Image.fromarray(picture).resize((width, height)))
        assert np.array_equal(resize_for_model(picture, CONFIG, tta), pillow)


def test_the_fast_output_is_near_the_exact_one_and_exact_stays_the_default(tmp_path):
    clip = _video(tmp_path / "clip.mp4", seconds=4.0)
    engine = Binauralizer.load(None, **ENGINE)
    assert RunOptions().resize == "exact"
    outputs = {}
    for resize in ("exact", "fast"):
        options = RunOptions(fmt="wav", full_band=False, resize=resize)
        assert engine.process(clip, tmp_path / f"{resize}.wav", options).to_dict()["resize"] == resize
        outputs[resize] = sf.read(tmp_path / f"{resize}.wav", dtype="float32")[0]
    exact, fast = outputs["exact"], outputs["fast"]
    assert exact.shape == fast.shape
    assert 25.0 < snr_db(fast, exact) < 200.0  # near, and not the same: the pictures differ


def test_an_unknown_resize_is_refused():
    with pytest.raises(OptionError, match="resize"):
        RunOptions(resize="nearest")
