"""ccs-eval end to end on real files."""

import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from conftest import FIXTURE_DIR

CLI = [sys.executable, "-m", "ccstereo.cli_eval"]


def test_ccs_eval_json_matches_official_metrics(official, tmp_path):
    pred = tmp_path / "pred.wav"
    sf.write(pred, official.expected["binaural"].T, 16000, subtype="FLOAT")
    out = subprocess.run(
        [*CLI, str(pred), str(FIXTURE_DIR / "clip.wav"), "--json"], capture_output=True, text=True, check=True
    )
    got = json.loads(out.stdout)
    expected = json.loads((FIXTURE_DIR / "expected_metrics.json").read_text())
    assert got["stft"] == pytest.approx(expected["stft_l2_dist"], rel=1e-5)
    assert got["snr"] == pytest.approx(expected["snr"], rel=1e-5)


def test_ccs_eval_plot_writes_a_png(official, tmp_path):
    pred = tmp_path / "pred.wav"
    sf.write(pred, official.expected["binaural"].T, 16000, subtype="FLOAT")
    png = tmp_path / "plot.png"
    subprocess.run(
        [*CLI, str(pred), str(FIXTURE_DIR / "clip.wav"), "--plot", str(png)], check=True, capture_output=True
    )
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_ccs_eval_rejects_mono_input(tmp_path):
    mono = tmp_path / "mono.wav"
    sf.write(mono, np.zeros(1600, np.float32), 16000)
    out = subprocess.run([*CLI, str(mono), str(mono)], capture_output=True, text=True)
    assert out.returncode == 2
    assert "mono.wav" in out.stderr and "2 channels" in out.stderr


def _metrics(pred, gt) -> dict:
    out = subprocess.run([*CLI, str(pred), str(gt), "--json"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_ccs_eval_reads_the_audio_track_of_a_video_file(official, tmp_path):
    # ccs-run writes mp4 by default: its audio is scored where it lies (FLAC in Matroska: the same samples; AAC in mp4:
    # lossy, and aligned, the encoder's priming skipped)
    pred = tmp_path / "pred.wav"
    sf.write(pred, official.expected["binaural"].T, 16000, subtype="FLOAT")
    wav = _metrics(pred, FIXTURE_DIR / "clip.wav")
    for name, codec, tolerance in (("pred.mkv", "flac", 1e-5), ("pred.mp4", "aac", 0.1)):
        video = ["-f", "lavfi", "-i", "color=c=gray:s=64x32:r=10", "-i", str(pred), "-shortest", "-c:v", "libx264"]
        subprocess.run(["ffmpeg", "-v", "error", "-y", *video, "-c:a", codec, str(tmp_path / name)], check=True)
        got = _metrics(tmp_path / name, FIXTURE_DIR / "clip.wav")
        assert got["stft"] == pytest.approx(wav["stft"], rel=tolerance), name
        assert got["snr"] == pytest.approx(wav["snr"], rel=tolerance), name


def test_ccs_eval_names_a_missing_file(tmp_path):
    out = subprocess.run([*CLI, str(tmp_path / "gone.wav"), str(tmp_path / "gone.wav")], capture_output=True, text=True)
    assert out.returncode == 2 and out.stderr.strip() == f"error: {tmp_path / 'gone.wav'}: no such file"
