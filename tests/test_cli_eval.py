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
