"""Shared test helpers: the official parity fixture rebuilt with the documented preprocessing."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from ccstereo.runtime.windows import WindowPlan, cut_windows

FIXTURE_DIR = Path(
    os.environ.get("CCSTEREO_FIXTURE", Path(__file__).resolve().parents[2] / "shared/reference/official_fixture")
)
STATE_DICT_TSV = FIXTURE_DIR.parent / "official_state_dict.tsv"

# (x, y) of the crop's top-left corner for frame_number % 5 (official five-crop order).
CROP_OFFSETS = {0: (0, 0), 1: (32, 0), 2: (0, 16), 3: (32, 16), 4: (16, 8)}
WINDOW, OFFICIAL_HOP = 10080, 1008
EXPORT_CLI = [sys.executable, "-m", "ccstereo.export.cli"]
REPO = Path(__file__).resolve().parents[1]
SAMPLE_VIDEO = REPO / "samples" / "sample.mp4"  # int8 calibration: other data than the verification clip


def sample_cuts(folder: Path, count: int, seconds: float, step_s: float) -> list[Path]:
    """``count`` different short clips cut from the bundled sample by the ffmpeg CLI, starting ``step_s`` apart."""
    folder.mkdir(parents=True, exist_ok=True)
    clips = []
    for i in range(count):
        out = folder / f"clip{i}.mp4"
        cmd = ["ffmpeg", "-nostdin", "-v", "error", "-y", "-ss", str(step_s * i), "-i", str(SAMPLE_VIDEO)]
        subprocess.run([*cmd, "-t", str(seconds), "-c:v", "libx264", "-c:a", "aac", str(out)], check=True)
        clips.append(out)
    return clips


def skip_or_fail(reason: str) -> None:
    """Skip with ``reason`` on a developer's machine; under CI (CI=true) a missing prerequisite is a failure, so a
    green CI never hides tests that did not run."""
    if os.environ.get("CI"):
        pytest.fail(f"required in CI: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session", autouse=True)
def _private_tuning_cache(tmp_path_factory):
    """The measured engine choices of this test session go to a folder of its own, never to ~/.cache."""
    os.environ["CCSTEREO_CACHE_DIR"] = str(tmp_path_factory.mktemp("ccstereo-cache"))


@dataclass
class OfficialFixture:
    clip: np.ndarray  # [2, N] float32 ground-truth binaural
    expected: dict[str, np.ndarray]
    crops_u8: np.ndarray  # [W, 224, 448, 3] one crop per window
    windows: np.ndarray  # [W, 10080] L+R windows (zero-padded tail)
    checkpoint: Path


def load_crop(frame_number: int) -> np.ndarray:
    """Return the documented 448x224 crop of a fixture frame as uint8 RGB."""
    from PIL import Image

    image = Image.open(FIXTURE_DIR / "frames" / f"{frame_number:06d}.png").convert("RGB")
    image = image.resize((480, 240))  # Pillow's default filter (bicubic) as the official loader
    x, y = CROP_OFFSETS[frame_number % 5]
    return np.asarray(image.crop((x, y, x + 448, y + 224)), dtype=np.uint8)


@pytest.fixture(scope="session")
def official() -> OfficialFixture:
    if not FIXTURE_DIR.is_dir():
        skip_or_fail(f"official fixture not found at {FIXTURE_DIR} (set CCSTEREO_FIXTURE)")
    import soundfile as sf

    clip, rate = sf.read(FIXTURE_DIR / "clip.wav", dtype="float32", always_2d=True)
    assert rate == 16000
    clip = clip.T
    expected = dict(np.load(FIXTURE_DIR / "expected.npz"))
    starts, windows = cut_windows(clip[0] + clip[1], WindowPlan(WINDOW, OFFICIAL_HOP, 16000, 10.0))
    assert np.array_equal(starts, expected["window_starts"])  # the official code cut the same windows
    crops = np.stack([load_crop(int(f)) for f in expected["frame_numbers"]])
    return OfficialFixture(clip, expected, crops, windows, FIXTURE_DIR / "checkpoint.pth")


def overlap_average(windows: np.ndarray, starts: np.ndarray, length: int) -> np.ndarray:
    """Average window outputs [W, C, N] placed at ``starts`` and cut to ``length`` samples."""
    n = windows.shape[-1]
    total = int(starts.max()) + n
    acc = np.zeros((windows.shape[1], total), np.float64)
    count = np.zeros(total, np.float64)
    for w, s in zip(windows, starts, strict=True):
        acc[:, s : s + n] += w
        count[s : s + n] += 1
    return (acc / count)[:, :length]


def assert_close_to_reference(test: np.ndarray, ref: np.ndarray, clip: np.ndarray, min_snr_db: float, rel: float):
    """Assert binaural ``test`` is >= ``min_snr_db`` from ``ref`` and every paper metric of it against ``clip``
    (both peak-normalised, as the official evaluation) is within ``rel`` of ``ref``'s."""
    from ccstereo import metrics

    snr = 10 * np.log10(np.sum(ref**2) / np.sum((test - ref) ** 2))
    assert snr >= min_snr_db
    gt = metrics.peak_normalize(clip.astype(np.float64))
    m_ref = metrics.evaluate(metrics.peak_normalize(ref), gt)
    m_test = metrics.evaluate(metrics.peak_normalize(test), gt)
    for name in ("stft", "env", "wav", "mag", "phs", "snr"):
        assert m_test[name] == pytest.approx(m_ref[name], rel=rel), name


@pytest.fixture(scope="session")
def exported(official, tmp_path_factory) -> Path:
    """The fixture checkpoint exported once per test session (model.onnx, .fp16.onnx, .int8.onnx, report)."""
    out = tmp_path_factory.mktemp("export")
    cmd = [
        *EXPORT_CLI,
        str(official.checkpoint),
        "-o",
        str(out),
        "--verify-clip",
        str(FIXTURE_DIR / "clip.wav"),
        "--verify-frames",
        str(FIXTURE_DIR / "frames"),
        "--calibrate",
        str(SAMPLE_VIDEO),
    ]
    result = subprocess.run(cmd, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    return out


def write_lossless_video(path: Path, frames: list[np.ndarray], audio: np.ndarray, rate: int, fps: int = 10) -> Path:
    """Write RGB frames (FFV1, bgr0) and float PCM audio [C, N] into a Matroska file; lossless both ways."""
    from fractions import Fraction

    import av

    with av.open(str(path), "w", format="matroska") as out:
        video = out.add_stream("ffv1", rate=fps)
        video.width, video.height = frames[0].shape[1], frames[0].shape[0]
        video.pix_fmt = "bgr0"
        sound = out.add_stream("pcm_f32le", rate=rate, layout="stereo" if audio.shape[0] == 2 else "mono")
        for i, image in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = i
            frame.time_base = Fraction(1, fps)
            for packet in video.encode(frame):
                out.mux(packet)
        for packet in video.encode(None):
            out.mux(packet)
        block = 1024
        for start in range(0, audio.shape[1], block):
            chunk = np.ascontiguousarray(audio[:, start : start + block], np.float32)
            frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout=sound.layout.name)
            frame.sample_rate = rate
            frame.pts = start
            for packet in sound.encode(frame):
                out.mux(packet)
        for packet in sound.encode(None):
            out.mux(packet)
    return path


@pytest.fixture(scope="session")
def fixture_video(official, tmp_path_factory) -> Path:
    """The official fixture clip and frames as one lossless video (FFV1 + float PCM in mkv)."""
    from PIL import Image

    frames = [np.asarray(Image.open(p).convert("RGB")) for p in sorted((FIXTURE_DIR / "frames").glob("*.png"))]
    return write_lossless_video(tmp_path_factory.mktemp("video") / "fixture.mkv", frames, official.clip, 16000)


# Tests by size: "system" tests run whole programs or real outside systems (the ccs-run command, a Ray cluster, a
# headless browser, a fresh virtual environment, a full export or a training run, hostile media through ffmpeg);
# every other test is a "unit" test of one piece in this process. `pytest -m unit` is the fast loop (~1 min).
SYSTEM_MODULES = {
    "test_ccs_run",
    "test_default_model",
    "test_distributed",
    "test_export",
    "test_fuzz",
    "test_hostile_media",
    "test_hostile_round2",
    "test_ray_local",
    "test_real_scenes",
    "test_runtime_only_env",
    "test_train",
    "test_tuning",
    "test_untrusted_models",
    "test_view",
    "test_visual_rate",
}


def pytest_collection_modifyitems(config, items):
    for item in items:
        module = item.module.__name__.rsplit(".", 1)[-1] if item.module else ""
        item.add_marker(pytest.mark.system if module in SYSTEM_MODULES else pytest.mark.unit)


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory):
    """Four 2 s synthetic clips in the FAIR-Play layout (ccs-synth), for the training tests."""
    out = tmp_path_factory.mktemp("synth") / "ds"
    cmd = [
        sys.executable,
        "-m",
        "ccstereo.synth.cli",
        str(out),
        "--clips",
        "4",
        "--seconds",
        "2",
        "--seed",
        "3",
        "--hrtf",
        "kemar",
        "-q",
    ]
    result = subprocess.run(cmd, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return out


def with_trained_batchnorms(model):
    """Return ``model`` with every BatchNorm's statistics far from the identity, as after training (a fold or a
    recovery that ignored them would show)."""
    import torch

    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.3, 3.0)
    return model


def export_fp32(checkpoint: Path, out: Path) -> Path:
    """ccs-export ``checkpoint`` to ``out``: the fp32 graph only (no fp16, no verification, no int8)."""
    cmd = [sys.executable, "-m", "ccstereo.export.cli", str(checkpoint), "-o", str(out)]
    result = subprocess.run(cmd + ["--no-fp16", "--no-verify", "--int8", "off"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    return out / "model.onnx"
