"""The adaptive visual rate: the graph cut in two reproduces the whole graph; features are reused only where the
picture at a crop position has not changed; identical pixels give the exact output to the bit."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from ccstereo.runtime.binauralizer import Binauralizer, RunOptions
from ccstereo.runtime.errors import ModelMetadataError, OptionError
from ccstereo.runtime.graph_split import split_window_graph
from ccstereo.runtime.visual_rate import TILE, AdaptiveRate, CropTracker, change, thumbnail
from conftest import write_lossless_video

pytest.importorskip("onnx")
REPO = Path(__file__).resolve().parents[1]
BUNDLED = REPO / "runtime" / "assets" / "default"
SAMPLE = REPO / "samples" / "sample.mp4"
RATE = 16000


def _snr(test: np.ndarray, ref: np.ndarray) -> float:
    noise = np.sum((test - ref).astype(np.float64) ** 2)
    return float("inf") if noise == 0 else float(10 * np.log10(np.sum(ref.astype(np.float64) ** 2) / noise))


@pytest.mark.parametrize("name", ["model.onnx", "model.int8.onnx"])
def test_the_two_halves_compute_what_the_whole_graph_computes(name, request):
    """The bundled fp32 graph, and an int8 graph (the fixture checkpoint's export: none is bundled)."""
    import onnxruntime as ort

    from ccstereo.runtime.model_info import read_onnx_info

    path = BUNDLED / name if name == "model.onnx" else request.getfixturevalue("exported") / name
    config = read_onnx_info(path).config
    halves = split_window_graph(path)
    whole = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    visual = ort.InferenceSession(halves.visual, providers=["CPUExecutionProvider"])
    fusion = ort.InferenceSession(halves.fusion, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (3, config.crop_height, config.crop_width, 3), dtype=np.uint8)
    mono = (0.1 * rng.standard_normal((5, whole.get_inputs()[1].shape[1]))).astype(np.float32)
    index = np.array([0, 1, 2, 2, 1], np.int64)
    expected = whole.run(None, {"frames": frames, "mono": mono, "frame_index": index})[0]
    features = visual.run(None, {"frames": frames})[0]
    assert features.shape[:2] == (3, config.img_dim)  # one row per crop, img_dim channels
    got = fusion.run(None, {halves.features: features, "mono": mono, "frame_index": index})[0]
    assert np.max(np.abs(got - expected)) <= 1e-6 * np.max(np.abs(expected))


def test_a_graph_without_the_cut_is_refused_naming_the_file(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("frames", TensorProto.FLOAT, [None, 4])
    y = helper.make_tensor_value_info("binaural", TensorProto.FLOAT, [None, 4])
    graph = helper.make_graph([helper.make_node("Relu", ["frames"], ["binaural"])], "g", [x], [y])
    path = tmp_path / "plain.onnx"
    onnx.save(helper.make_model(graph), str(path))
    with pytest.raises(ModelMetadataError, match="plain.onnx.*gather"):
        split_window_graph(path)


# -- the tracker's decisions, on pixels made here ---------------------------------------------------------------
def _crop(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (224, 448, 3), dtype=np.uint8)


def test_the_change_measure_sees_a_small_moving_object_and_ignores_faint_noise():
    base = _crop(1)
    noisy = np.clip(base.astype(int) + np.random.default_rng(2).integers(-2, 3, base.shape), 0, 255).astype(np.uint8)
    assert change(thumbnail(base), thumbnail(noisy)) < 1.0  # +-2 levels of noise average out in a tile
    # A 24 x 24 bright object moving 16 pixels over a smooth background (the thumbnail is a block mean: it
    # sees objects and edges, not the fine texture inside an area).
    scene = np.broadcast_to(np.linspace(60, 120, 448)[None, :, None], (224, 448, 3)).astype(np.uint8)
    before, after = scene.copy(), scene.copy()
    before[100:124, 200:224] = 240
    after[100:124, 216:240] = 240
    whole_picture_mean = np.abs(thumbnail(after) - thumbnail(before)).mean()
    assert whole_picture_mean < 2  # a whole-picture average would call this "unchanged"
    assert change(thumbnail(before), thumbnail(after)) > 8  # per tile it is not diluted


def test_the_tracker_reuses_per_crop_position_within_threshold_and_age():
    tracker = CropTracker(AdaptiveRate(threshold=3.0, max_stale_s=1.0), fps=10, tta=True)
    a = _crop(3)
    first = [tracker.decide(t, a) for t in range(5)]  # five V-TTA positions: each computed once
    assert all(d.fresh for d in first) and len({d.key for d in first}) == 5
    again = tracker.decide(5, a)  # same position as tick 0, identical pixels: exact reuse
    assert not again.fresh and again.exact and again.key == first[0].key
    faint = np.clip(a.astype(int) + 1, 0, 255).astype(np.uint8)
    close = tracker.decide(6, faint)  # +1 level everywhere: approximate reuse of position 2's features
    assert not close.fresh and not close.exact and close.key == first[1].key
    changed = tracker.decide(7, _crop(4))  # another picture: computed
    assert changed.fresh
    assert tracker.decide(16, faint).fresh  # position 2 again, but its features (tick 1) are 1.5 s old
    old = tracker.decide(100, a)  # position 1: identical to tick 0's pixels, reused at any age (exact)
    assert not old.fresh and old.exact and old.key == first[0].key


def test_threshold_zero_reuses_identical_pixels_only():
    tracker = CropTracker(AdaptiveRate(threshold=0.0, max_stale_s=100.0), fps=10, tta=False)
    a = _crop(5)
    assert tracker.decide(0, a).fresh
    assert not tracker.decide(1, a.copy()).fresh
    b = a.copy()
    b[0, 0, 0] ^= 1  # one pixel, one level
    assert tracker.decide(2, b).fresh


def test_bad_settings_are_refused():
    with pytest.raises(OptionError, match="threshold"):
        RunOptions(visual_rate="adaptive", visual_threshold=-1)
    with pytest.raises(OptionError, match="staleness"):
        RunOptions(visual_max_stale_s=float("nan"))
    with pytest.raises(OptionError, match="visual rate"):
        RunOptions(visual_rate="fast")


# -- whole runs ---------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def bundled():
    return Binauralizer.load(BUNDLED, precision="fp32")


def _run(engine, video: Path, out: Path, **fields):
    report = engine.process(video, out, RunOptions(fmt="wav", full_band=False, overwrite=True, **fields))
    return sf.read(out, dtype="float32", always_2d=True)[0], report


def _audio(seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    tone = 0.3 * np.sin(2 * np.pi * 440 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 0.5 * t))
    return np.stack([tone, 0.6 * tone]).astype(np.float32)


def test_threshold_zero_is_the_exact_output_on_moving_pictures(bundled, tmp_path):
    exact, exact_report = _run(bundled, SAMPLE, tmp_path / "exact.wav")
    adaptive, report = _run(bundled, SAMPLE, tmp_path / "a.wav", visual_rate="adaptive", visual_threshold=0.0)
    assert report.visual_rate == "adaptive" and exact_report.visual_rate == "exact"
    assert report.crops_reused == 0 and report.crops_computed == exact_report.crops_computed
    assert np.max(np.abs(adaptive - exact)) <= 1e-6


@pytest.mark.parametrize("mirror, slots", [(False, 5), (True, 10)])
def test_a_still_picture_is_computed_once_per_position_for_the_whole_file_bit_identical(
    bundled, tmp_path, mirror, slots
):
    picture = np.random.default_rng(7).integers(0, 256, (240, 480, 3), dtype=np.uint8)
    video = write_lossless_video(tmp_path / "still.mkv", [picture] * 80, _audio(8.0), RATE)  # 8 s, 3 batches
    exact, _ = _run(bundled, video, tmp_path / "exact.wav", share_identical_crops=False, mirror=mirror)
    adaptive, report = _run(bundled, video, tmp_path / "a.wav", visual_rate="adaptive", mirror=mirror)
    # five V-TTA positions (each plain and mirrored with mirror test-time augmentation), once each, across batches
    assert report.crops_computed == slots
    assert report.crops_shared == report.windows - slots and report.crops_reused == 0
    assert np.array_equal(adaptive, exact)


@pytest.mark.parametrize("mirror, most", [(False, 15), (True, 20)])
def test_faint_per_frame_noise_is_reused_within_35_db(bundled, tmp_path, mirror, most):
    # A still picture with +-2 levels of fresh noise per frame: exact sharing finds nothing to share.
    rng = np.random.default_rng(8)
    picture = rng.integers(20, 236, (240, 480, 3), dtype=np.int16)
    frames = [(picture + rng.integers(-2, 3, picture.shape)).astype(np.uint8) for _ in range(60)]
    video = write_lossless_video(tmp_path / "noisy.mkv", frames, _audio(6.0), RATE)
    exact, exact_report = _run(bundled, video, tmp_path / "exact.wav", mirror=mirror)
    adaptive, report = _run(
        bundled, video, tmp_path / "a.wav", visual_rate="adaptive", visual_threshold=2.0, visual_max_stale_s=2.0,
        mirror=mirror,
    )  # fmt: skip
    assert exact_report.crops_shared == 0
    # Each of the 5 positions recurs every 5 ticks and is recomputed once its features are over 2 s (20 ticks)
    # old: at ticks p, p + 25, p + 50 of the 60 -> 15 computed of the 55 windows. Mirrored, each of the 10
    # (position, side) slots recurs every 10 ticks: computed at s and s + 30 -> 20.
    assert report.crops_computed <= most and report.crops_reused >= report.windows - most >= 35
    assert _snr(adaptive, exact) >= 35


def test_a_moving_scene_at_the_documented_setting_stays_within_35_db_of_exact(bundled, tmp_path):
    # ccs-synth scene (the bundled sample): objects move the whole time.
    exact, _ = _run(bundled, SAMPLE, tmp_path / "exact.wav")
    adaptive, report = _run(bundled, SAMPLE, tmp_path / "a.wav", visual_rate="adaptive")
    assert _snr(adaptive, exact) >= 35
    assert report.crops_computed + report.crops_reused + report.crops_shared == report.windows


def test_ccs_run_visual_rate_flag_and_report(tmp_path):
    report = tmp_path / "run.json"
    cmd = [sys.executable, "-m", "ccstereo.runtime.cli", str(SAMPLE), "-o", str(tmp_path / "o.wav"), "-q"]
    flags = ["--visual-rate", "adaptive", "--visual-threshold", "4", "--visual-max-stale-s", "2"]
    result = subprocess.run([*cmd, *flags, "--report", str(report)], capture_output=True)
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    entry = json.loads(report.read_text())["files"][0]
    assert entry["visual_rate"] == "adaptive" and entry["crops_reused"] > 0
    assert entry["crops_computed"] + entry["crops_reused"] == entry["windows"]
    bad = subprocess.run([*cmd, "--visual-rate", "fast"], capture_output=True, text=True)
    assert bad.returncode == 2 and "exact" in bad.stderr and "adaptive" in bad.stderr


def test_tile_is_a_whole_number_of_thumbnail_cells():
    from ccstereo.runtime.visual_rate import SCALE

    assert TILE % SCALE == 0


@pytest.mark.parametrize("backend", ["torch", "openvino"])
def test_every_cpu_engine_runs_the_halves_like_the_whole(backend, official, exported):
    # Threshold 0 computes every crop that differs: the halves must then give the whole graph's output.
    if backend == "openvino":
        pytest.importorskip("openvino")
    model = official.checkpoint if backend == "torch" else exported
    engine = Binauralizer.load(model, backend=backend, precision="fp32" if backend == "openvino" else "auto")
    frames = [np.random.default_rng(20 + i // 3).integers(0, 256, (240, 480, 3), dtype=np.uint8) for i in range(30)]
    audio = _audio(3.0)
    exact = engine.process_arrays(audio, frames, RunOptions())
    halves = engine.process_arrays(audio, frames, RunOptions(visual_rate="adaptive", visual_threshold=0.0))
    assert np.max(np.abs(halves - exact)) <= 1e-5 * np.max(np.abs(exact))
