"""Frames no tick shows are not decoded, and the ticks get the same pictures, bit for bit.

Real encoders (x264, x265, FFmpeg's MPEG-4) make streams with B-frames; the reference is every frame decoded
and the same tick rule applied.
"""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from ccstereo.runtime import media
from ccstereo.runtime.shown_frames import decode_shown
from ccstereo.testing import hostile

TONE = hostile.tone_src(4.0)
AAC = ("-c:a", "aac")
CASES = {
    # B-frames nobody predicts from (b-pyramid off): the frames a 10 fps tick skips can all be skipped
    "h264-b-nonref.mp4": (
        *hostile.video_src(4.0, rate=30),
        *TONE,
        "-c:v",
        "libx264",
        "-bf",
        "3",
        "-x264-params",
        "b-pyramid=none",
        "-pix_fmt",
        "yuv420p",
        *AAC,
    ),  # fmt: skip
    # NTSC rate with B-pyramid, the sound starting 0.37 s after the picture (ticks off the frame grid)
    "h264-ntsc-late.mp4": (
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=320x180:rate=30000/1001:duration=4",
        "-itsoffset",
        "0.37",
        *TONE,
        "-map",
        "0:v",
        "-map",
        "1:a",
        "-c:v",
        "libx264",
        "-bf",
        "2",
        "-pix_fmt",
        "yuv420p",
        *AAC,
    ),  # fmt: skip
    "hevc.mkv": (
        *hostile.video_src(4.0, rate=25),
        *TONE,
        "-c:v",
        "libx265",
        "-x265-params",
        "bframes=4:log-level=none",
        "-pix_fmt",
        "yuv420p",
        *AAC,
    ),  # fmt: skip
    "mpeg4-b.mkv": (*hostile.video_src(4.0, rate=30), *TONE, "-c:v", "mpeg4", "-bf", "2", *AAC),
}


def _every_frame_decoded(path: Path, origin_s: float):
    with av.open(str(path)) as container:
        stream = media.picture_stream(container)
        yield from media.tick_frames(path, container.decode(stream), 10.0, origin_s)


@pytest.mark.parametrize("name", [*CASES, "vfr"])
def test_the_ticks_get_the_pictures_of_a_full_decode(tmp_path, name):
    if name == "vfr":
        path = hostile.vfr(tmp_path)
    else:
        path = tmp_path / name
        hostile.ffmpeg(*CASES[name], str(path))
    origin = media.probe(path).audio_start_s
    expected = [(tick, image.copy()) for tick, image in _every_frame_decoded(path, origin)]
    got = [(tick, image.copy()) for tick, image in media.iter_tick_frames(path, 10.0, origin)]
    assert [t for t, _ in got] == [t for t, _ in expected]
    for (tick, a), (_, b) in zip(got, expected, strict=True):
        assert np.array_equal(a, b), f"{name}: tick {tick} differs"


def test_exactly_the_non_reference_frames_no_tick_shows_are_skipped(tmp_path):
    path = tmp_path / "h264-b-nonref.mp4"
    hostile.ffmpeg(*CASES["h264-b-nonref.mp4"], str(path))
    with av.open(str(path)) as container:
        every = [round(float(f.time), 6) for f in container.decode(video=0)]
    with av.open(str(path)) as container:
        container.streams.video[0].codec_context.skip_frame = "NONREF"
        references = {round(float(f.time), 6) for f in container.decode(video=0)}
    ticks = [k / 10 for k in range(40)]
    shown = {max(t for t in every if t <= tick + 1e-6) for tick in ticks}
    skippable = {t for t in every if t not in references and t not in shown}
    with av.open(str(path)) as container:
        decoded = [round(float(f.time), 6) for f in decode_shown(container, container.streams.video[0], 10.0, 0.0)]
    assert len(every) == 120 and len(skippable) >= 20  # the clip has frames to skip
    assert sorted(decoded) == sorted(set(every) - skippable)
