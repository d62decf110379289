"""Metrics equal to the official evaluation (values from expected_metrics.json, made by the official code)."""

import json
import subprocess
import sys

import numpy as np
import pytest

from ccstereo import metrics
from conftest import FIXTURE_DIR


@pytest.fixture(scope="module")
def pair(official):
    gt = metrics.peak_normalize(official.clip)
    return official.expected["binaural_peaknorm"], gt


def test_evaluate_reproduces_official_metrics(pair):
    expected = json.loads((FIXTURE_DIR / "expected_metrics.json").read_text())
    got = metrics.evaluate(*pair)
    for ours, theirs in metrics.OFFICIAL_NAMES.items():
        assert got[ours] == pytest.approx(expected[theirs], rel=1e-5), ours


def test_perfect_prediction_scores_zero_distance(pair):
    _, gt = pair
    got = metrics.evaluate(gt, gt)
    for name in ("stft", "env", "wav", "mag", "phs", "amp", "phase", "spl", "mrstft"):
        assert got[name] == pytest.approx(0.0, abs=1e-9), name


def test_spl_distance_sees_swapped_channels(pair):
    _, gt = pair
    assert metrics.spl_distance(gt[::-1], gt) > 1.0
    curve = metrics.spl_curve(np.stack([gt[0], gt[0] * 0.5]))
    assert np.allclose(curve, 20 * np.log10(2), atol=1e-6)


def test_bad_shapes_are_rejected():
    with pytest.raises(ValueError, match=r"\[2, N\]"):
        metrics.evaluate(np.zeros((1, 100)), np.zeros((1, 100)))


def test_metrics_do_not_import_torch():
    code = "import sys, ccstereo.metrics; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
