"""The interaural level difference loss (ccs-train --ild-weight): its value is the level error in dB, a band
with no energy does not count, it steers a prediction to the truth's level, and a run logs it."""

import numpy as np
import torch

from ccstereo.train.losses import ILD_BAND_EDGES, ild_loss

BINS, FRAMES = 257, 64


def _source(seed: int, bins: slice = slice(None)) -> torch.Tensor:
    """A random [1, 2, F, T] (real, imag) spectrogram with energy only in ``bins``."""
    x = torch.zeros(1, 2, BINS, FRAMES)
    x[:, :, bins] = torch.randn(1, 2, BINS, FRAMES, generator=torch.Generator().manual_seed(seed))[:, :, bins]
    return x


def _pair(left_gain: float, right_gain: float, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(mono L + R, difference L - R) of a source heard at ``left_gain`` / ``right_gain``."""
    return (left_gain + right_gain) * x, (left_gain - right_gain) * x


def test_the_loss_is_the_level_error_in_db():
    x = _source(0)
    mono, diff = _pair(1.5, 0.6, x)
    level = 20 * np.log10(1.5 / 0.6)  # 7.96 dB left louder, in every band and broadband
    # within 0.02 dB: the loss's floor (1e-4 of the window's energy) is added to both ears' energies
    assert abs(float(ild_loss(mono, torch.zeros_like(diff), diff)) - level) < 0.02  # centred output
    assert abs(float(ild_loss(mono, -diff, diff)) - 2 * level) < 0.04  # ears swapped
    assert float(ild_loss(mono, diff, diff)) < 1e-4


def test_a_band_without_energy_does_not_count():
    """The target's top band carries the opposite side; at 1e-4 of the amplitude its error costs nothing, at the
    same amplitude it costs decibels."""
    low, high = slice(0, ILD_BAND_EDGES[1]), slice(ILD_BAND_EDGES[3], None)
    m_low, d_low = _pair(2.0, 1.0, _source(1, low))
    for amplitude, most, least in ((1e-4, 0.05, 0.0), (1.0, np.inf, 1.0)):
        m_high, d_high = _pair(amplitude, 2.0 * amplitude, _source(2, high))
        mono, target = m_low + m_high, d_low + d_high
        pred = d_low + (m_high / 3.0)  # the low band right, the top band on the wrong side
        loss = float(ild_loss(mono, pred, target))
        assert least <= loss < most, (amplitude, loss)


def test_it_steers_a_prediction_to_the_truths_level():
    """From a centred prediction, gradient steps on the ILD loss alone reach the truth's side and level."""
    x = _source(3)
    mono, target = _pair(0.7, 1.4, x)  # right louder: -6.02 dB
    pred = torch.zeros_like(target, requires_grad=True)
    opt = torch.optim.Adam([pred], lr=0.02)
    for _ in range(300):
        opt.zero_grad()
        ild_loss(mono, pred, target).backward()
        opt.step()
    left = (mono + pred.detach()).pow(2).sum()
    right = (mono - pred.detach()).pow(2).sum()
    assert abs(10 * np.log10(float(left / right)) - 20 * np.log10(0.7 / 1.4)) < 0.5


def test_a_run_logs_the_ild_loss_only_when_asked(tiny_dataset, tmp_path):
    from ccstereo.config import ModelConfig
    from ccstereo.train.trainer import TrainOptions, train

    cfg = ModelConfig(resnet_width=16, aspp_hidden=32)
    columns = {}
    for weight in (0.0, 0.1):
        out = tmp_path / f"run{weight}"
        opts = TrainOptions(
            tiny_dataset, tiny_dataset / "splits/split1/train.txt", out, steps=4, batch_size=2, log_every=2,
            val_every=1000, ild_weight=weight, config=cfg,
        )  # fmt: skip
        train(opts, log=lambda _m: None)
        header, *rows = (out / "train_log.csv").read_text().splitlines()
        at = header.split(",").index("ild")
        columns[weight] = [float(r.split(",")[at]) for r in rows]
    assert columns[0.0] == [0.0, 0.0]
    assert all(v > 0.05 for v in columns[0.1]), columns  # synthetic scenes are off-centre: a level error in dB
