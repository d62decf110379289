"""Metrics equal to the official evaluation (values from expected_metrics.json, made by the official code)."""

import json
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 5000), st.sampled_from([np.float32, np.float64]), st.integers(0, 2**31 - 1))
def test_analytic_signal_is_scipy_hilbert(n, dtype, seed):
    """The official evaluation's envelope is ``scipy.signal.hilbert``: ours computes the same with numpy's FFT,
    in the input's precision as scipy does (float32 in, complex64 out)."""
    from scipy.signal import hilbert

    x = np.random.default_rng(seed).standard_normal(n).astype(dtype) * 3.0
    ours, theirs = metrics.analytic_signal(x), hilbert(x)
    assert ours.dtype == theirs.dtype
    tolerance = 1e-12 if dtype == np.float64 else 2e-6
    assert np.abs(ours - theirs).max() <= tolerance * max(1.0, float(np.abs(theirs).max()))


def test_metrics_do_not_import_scipy_signal():
    """``ccs-run --precision X`` checks its engine's paper metrics at every start: scipy.signal's ~1 s import
    must not come with them."""
    code = (
        "import sys, numpy as np\n"
        "from ccstereo import metrics\n"
        "x = np.random.default_rng(0).standard_normal((2, 16000)).astype(np.float32)\n"
        "metrics.evaluate(metrics.peak_normalize(x), metrics.peak_normalize(x[::-1]))\n"
        "assert 'scipy.signal' not in sys.modules, 'scipy.signal imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_picture_side_scores_count_where_the_truth_and_the_output_follow_the_picture():
    """Six 0.5 s segments of noise with set ear gains and a source azimuth per 0.1 s tick: only the segments with a
    decided truth (|ILD| >= 1 dB, sound present) and a source off centre (mean >= 2 deg) count."""
    rng = np.random.default_rng(3)
    seg = 8000
    #            truth ILD dB, output ILD dB, azimuth deg (+ = left)
    plan = [
        (6.0, 4.0, 10.0),
        (-6.0, 3.0, 10.0),
        (-6.0, 2.0, -10.0),
        (6.0, 4.0, 0.5),
        (0.5, 4.0, 10.0),
        (None, 4.0, 9.0),
    ]
    truth, pred, azimuths = np.zeros((2, seg * len(plan))), np.zeros((2, seg * len(plan))), []
    for k, (t_db, p_db, az) in enumerate(plan):
        noise = rng.standard_normal(seg)
        part = slice(k * seg, (k + 1) * seg)
        if t_db is not None:
            truth[:, part] = noise * 10 ** (t_db / 40), noise * 10 ** (-t_db / 40)
        pred[:, part] = noise * 10 ** (p_db / 40), noise * 10 ** (-p_db / 40)
        azimuths += [az - 1.0, az + 1.0, az, az, az]  # the mean over the segment's five ticks is az
    scores = metrics.picture_side_scores(pred, truth, np.array(azimuths))
    assert scores == {"truth_vs_picture": (2, 3), "output_vs_picture": (2, 3), "output_vs_truth": (1, 3)}
    swapped = metrics.picture_side_scores(pred, truth, -np.array(azimuths))
    assert swapped == {"truth_vs_picture": (1, 3), "output_vs_picture": (1, 3), "output_vs_truth": (1, 3)}
