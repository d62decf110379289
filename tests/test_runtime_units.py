"""Window planner, streaming overlap-add, frame preprocessing and audio input on real files."""

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ccstereo.config import ModelConfig
from ccstereo.runtime.frames import crop_box
from ccstereo.runtime.overlap_add import StreamingOverlapAdd
from ccstereo.runtime.windows import WindowPlan
from conftest import write_lossless_video

CFG = ModelConfig()


def test_plan_reproduces_the_official_windows_frames_and_crops(official):
    plan = WindowPlan.for_config(CFG, 1008)
    n = official.clip.shape[1]
    count = plan.count(n)
    assert count == len(official.expected["window_starts"])
    assert [plan.start(k) for k in range(count)] == official.expected["window_starts"].tolist()
    numbers = [plan.frame_number(k) for k in range(count)]
    assert numbers == official.expected["frame_numbers"].tolist()
    assert [f % 5 for f in numbers] == official.expected["crop_index"].tolist()


@pytest.mark.parametrize("n, expected", [(1, 1), (10080, 1), (10081, 2), (11680, 2), (11681, 3)])
def test_window_count_covers_the_input(n, expected):
    plan = WindowPlan.for_config(CFG)
    assert plan.count(n) == expected
    assert plan.start(plan.count(n) - 1) + CFG.window_samples >= n


def test_crop_boxes_are_the_five_crops():
    boxes = [crop_box(f, CFG) for f in range(5)]
    assert boxes == [(0, 0, 448, 224), (32, 0, 480, 224), (0, 16, 448, 240), (32, 16, 480, 240), (16, 8, 464, 232)]


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 40000), hop=st.integers(1, 600), window=st.integers(16, 700), pop_every=st.integers(1, 7))
def test_overlap_add_of_identity_windows_reproduces_the_input(n, hop, window, pop_every):
    hop = min(hop, window)
    rng = np.random.default_rng(n)
    x = rng.standard_normal((2, n)).astype(np.float32)
    plan = WindowPlan(window, hop, 16000, 10.0)
    padded = np.zeros((2, plan.start(plan.count(n) - 1) + window), np.float32)
    padded[:, :n] = x
    ola = StreamingOverlapAdd(2, window)
    pieces = []
    for k in range(plan.count(n)):
        ola.add(plan.start(k), padded[:, plan.start(k) : plan.start(k) + window])
        if k % pop_every == 0:
            pieces.append(ola.pop(min(plan.start(k + 1), n)))
    pieces.append(ola.pop(n))
    out = np.concatenate(pieces, axis=1)
    assert out.shape == (2, n)
    np.testing.assert_allclose(out, x, atol=1e-6)
    assert ola.acc.shape[1] <= window  # memory bounded by one window


def test_overlap_add_rejects_gaps_and_reordering():
    ola = StreamingOverlapAdd(1, 4)
    ola.add(0, np.ones((1, 4)))
    ola.add(6, np.ones((1, 4)))
    with pytest.raises(ValueError, match="covered by no window"):
        ola.pop(6)
    with pytest.raises(ValueError, match="must not decrease"):
        ola.add(5, np.ones((1, 4)))


def _tone(seconds, rate, freq):
    t = np.arange(int(seconds * rate)) / rate
    return (0.25 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _frames(n):
    return [np.full((120, 160, 3), i * 5 % 255, np.uint8) for i in range(n)]


def test_mono_track_is_used_as_twice_the_signal(tmp_path):
    from ccstereo.runtime.media import iter_audio

    x = _tone(1.0, 16000, 300)
    path = write_lossless_video(tmp_path / "mono.mkv", _frames(10), x[None], 16000)
    model = np.concatenate([c.model for c in iter_audio(path, 16000, False)], axis=1)
    np.testing.assert_allclose(model[0] + model[1], 2 * x, atol=1e-6)


def test_surround_track_is_downmixed_to_stereo(tmp_path):
    import av

    from ccstereo.runtime.media import iter_audio

    rate, n = 16000, 16000
    centre, left = _tone(1.0, rate, 300), _tone(1.0, rate, 500)
    data = np.zeros((6, n), np.float32)
    data[0], data[2] = left, centre  # FL, FC
    path = tmp_path / "surround.mkv"
    with av.open(str(path), "w", format="matroska") as out:
        sound = out.add_stream("pcm_f32le", rate=rate, layout="5.1")
        frame = av.AudioFrame.from_ndarray(data, format="fltp", layout="5.1")
        frame.sample_rate = rate
        for packet in sound.encode(frame):
            out.mux(packet)
        for packet in sound.encode(None):
            out.mux(packet)
    stereo = np.concatenate([c.model for c in iter_audio(path, rate, False)], axis=1)
    l_gain = np.dot(stereo[0], left) / np.dot(left, left)
    r_gain = np.dot(stereo[1], left) / np.dot(left, left)
    c_l, c_r = (np.dot(stereo[i], centre) / np.dot(centre, centre) for i in range(2))
    assert l_gain > 0.3 and abs(r_gain) < 1e-3  # front-left stays left
    assert c_l == pytest.approx(c_r, rel=1e-4) and c_l > 0.2  # centre goes to both equally


def test_tick_frames_follow_presentation_time_at_any_fps(tmp_path):
    from ccstereo.runtime.media import iter_tick_frames

    frames = [np.full((48, 64, 3), i * 10, np.uint8) for i in range(25)]  # 25 fps, value = 10 x index
    path = write_lossless_video(tmp_path / "f25.mkv", frames, np.zeros((2, 16000), np.float32), 16000, fps=25)
    ticks = list(iter_tick_frames(path, 10.0, 0.0))
    shown = [int(img[0, 0, 0]) // 10 for _, img in ticks]
    # tick k at k/10 s shows frame floor(k * 2.5): the last frame not later than the tick (24 is the last)
    assert shown == [min(24, int(np.floor(k * 2.5 + 1e-9))) for k in range(len(shown))]
    assert len(shown) == 11  # ticks 0.0 .. 1.0 s; later ticks repeat the last frame (caller's job)
    assert [t for t, _ in ticks] == list(range(len(ticks)))


def test_int8_dot_product_detection_from_cpuinfo():
    from ccstereo.runtime.cpu_features import int8_dot_product

    zen5 = "processor\t: 0\nflags\t\t: fpu avx2 avx512f avx_vnni avx512_bf16 avx512_vnni\n"
    sapphire = "flags\t\t: avx512f avx512_vnni amx_bf16 amx_tile amx_int8\n"
    haswell = "flags\t\t: fpu sse4_2 avx avx2 fma\n"
    assert int8_dot_product(zen5) == "avx512_vnni"
    assert int8_dot_product(sapphire) == "amx_int8"
    assert int8_dot_product(haswell) is None
    assert int8_dot_product("") is None


def test_cpu_flag_override_decides_the_policy_on_both_sides(monkeypatch):
    """$CCSTEREO_CPU_FLAGS replaces the probed flags for both questions the policy asks (int8 unit, native BF16)."""
    from ccstereo.runtime import cpu_features

    monkeypatch.setenv("CCSTEREO_CPU_FLAGS", "none")
    assert cpu_features.int8_dot_product() is None and cpu_features.native_bf16() is False
    monkeypatch.setenv("CCSTEREO_CPU_FLAGS", "avx2, avx512_vnni avx512_bf16")
    assert cpu_features.int8_dot_product() == "avx512_vnni" and cpu_features.native_bf16() is True
    monkeypatch.setenv("CCSTEREO_CPU_FLAGS", "amx_int8")
    assert cpu_features.int8_dot_product() == "amx_int8" and cpu_features.native_bf16() is False
    monkeypatch.delenv("CCSTEREO_CPU_FLAGS")
    lines = [line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags")]
    real = set(lines[0].split(":", 1)[1].split()) if lines else set()
    expected = next((f for f in ("amx_int8", "avx512_vnni", "avx_vnni") if f in real), None)
    assert cpu_features.int8_dot_product() == expected  # unset: this CPU's own flags


def _placed(times_s, rate=1000, n=100, declared_end_s=None):
    from ccstereo.runtime.media import _Timeline

    timeline = _Timeline(Path("t.mkv"), declared_end_s)
    pieces = []
    for i, t in enumerate(times_s):
        pcm = np.full((1, n), i + 1, np.float32)
        pieces += timeline.place(t, rate, pcm)
    return np.concatenate(pieces, axis=1)[0]


def test_timeline_follows_timestamps():
    contiguous = _placed([0.5, 0.6, 0.7])  # a stream starting at 0.5 s: its own timeline starts there
    assert contiguous.tolist() == [1] * 100 + [2] * 100 + [3] * 100
    jitter = _placed([0.0, 0.101, 0.199])  # 1 ms of timestamp rounding is not a gap
    assert len(jitter) == 300
    gap = _placed([0.0, 0.1, 0.5])  # 0.3 s of lost packets become 0.3 s of silence
    assert len(gap) == 600 and (gap[200:500] == 0).all() and (gap[500:] == 3).all()
    untimed = _placed([0.0, None, 0.2])  # a frame without a timestamp still takes its place on the timeline
    assert untimed.tolist() == [1] * 100 + [2] * 100 + [3] * 100
    overlap = _placed([0.0, 0.05])  # a frame that repeats the last 50 ms is cut, not played twice
    assert overlap.tolist() == [1] * 100 + [2] * 50


def test_timeline_refuses_corrupt_jumps_and_rate_changes():
    from ccstereo.runtime.media import MediaError, _Timeline

    with pytest.raises(MediaError, match="jump by 3600.0 s"):
        _placed([0.0, 3600.1])
    assert len(_placed([0.0, 100.1], declared_end_s=101.0)) == 100_200  # a long gap the stream itself declares
    timeline = _Timeline(Path("t.mkv"), None)
    timeline.place(0.0, 1000, np.zeros((1, 10), np.float32))
    with pytest.raises(MediaError, match="1000 to 2000 Hz"):
        timeline.place(0.01, 2000, np.zeros((1, 10), np.float32))
