"""The interaural level difference loss (ccs-train --ild-weight): its value is the level error in dB, a band
with no energy does not count, it steers a prediction to the truth's level, and a run logs it. The side loss
(--ild-side-weight): only the side counts, near-centre truths do not, and it moves a wrong side over."""

import numpy as np
import torch

from ccstereo.train.losses import ILD_BAND_EDGES, ild_loss, ild_side_loss

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


def _descend(loss, mono: torch.Tensor, start: torch.Tensor, target: torch.Tensor, steps: int) -> tuple[float, float]:
    """Adam steps on ``loss`` alone from the difference spectrogram ``start``: (its broadband ILD in dB, its loss)."""
    pred = start.clone().requires_grad_(True)
    opt = torch.optim.Adam([pred], lr=0.02)
    for _ in range(steps):
        opt.zero_grad()
        loss(mono, pred, target).backward()
        opt.step()
    left = (mono + pred.detach()).pow(2).sum()
    right = (mono - pred.detach()).pow(2).sum()
    return 10 * float(np.log10(float(left / right))), float(loss(mono, pred.detach(), target))


def test_it_steers_a_prediction_to_the_truths_level():
    """From a centred prediction, gradient steps on the ILD loss alone reach the truth's side and level."""
    mono, target = _pair(0.7, 1.4, _source(3))  # right louder: -6.02 dB
    ild, _ = _descend(ild_loss, mono, torch.zeros_like(target), target, 300)
    assert abs(ild - 20 * np.log10(0.7 / 1.4)) < 0.5


def test_the_side_loss_counts_the_side_not_the_level():
    """Truth 7.96 dB left: a prediction 3 dB right costs the 1 dB margin + 3 dB, one 0.5 dB left costs 0.5 dB, one
    2 dB left costs nothing though it is 6 dB short of the truth; a truth 0.5 dB from centre costs nothing."""
    x = _source(4)
    mono, target = _pair(1.5, 0.6, x)

    def heard(db: float) -> torch.Tensor:  # the difference spectrogram of the same mono heard ``db`` to the left
        g = 10 ** (db / 20)
        return mono * (g - 1) / (g + 1)

    assert abs(float(ild_side_loss(mono, heard(-3.0), target)) - 4.0) < 0.02
    assert abs(float(ild_side_loss(mono, heard(0.5), target)) - 0.5) < 0.02
    assert float(ild_side_loss(mono, heard(2.0), target)) == 0.0
    assert float(ild_side_loss(mono, target, target)) == 0.0
    assert float(ild_loss(mono, heard(2.0), target)) > 5.0  # the level loss does see the 6 dB
    near_mono, near_target = _pair(1.03, 0.97, x)  # 0.52 dB: not decided
    assert float(ild_side_loss(near_mono, -near_target * 5, near_target)) == 0.0
    # a batch: the mean over all windows, decided or not
    both = ild_side_loss(
        torch.cat([mono, near_mono]), torch.cat([heard(-3.0), -near_target]), torch.cat([target, near_target])
    )
    assert abs(float(both) - 2.0) < 0.02


def test_the_side_loss_moves_a_wrong_side_over_and_then_stops():
    mono, target = _pair(0.7, 1.4, _source(5))  # right louder: -6.02 dB
    ild, loss = _descend(ild_side_loss, mono, -0.5 * target, target, 200)  # from an output heard on the left
    assert -3.0 < ild <= -1.0 + 0.05  # on the right by the margin, not pulled on to the truth's level
    assert loss < 0.05


def test_a_run_logs_the_ild_loss_only_when_asked(tiny_dataset, tmp_path):
    from ccstereo.config import ModelConfig
    from ccstereo.train.trainer import TrainOptions, train

    cfg = ModelConfig(resnet_width=16, aspp_hidden=32)
    columns = {}
    for weight in (0.0, 0.1):
        out = tmp_path / f"run{weight}"
        opts = TrainOptions(
            tiny_dataset, tiny_dataset / "splits/split1/train.txt", out, steps=4, batch_size=2, log_every=2,
            val_every=1000, ild_weight=weight, ild_side_weight=weight, config=cfg,
        )  # fmt: skip
        train(opts, log=lambda _m: None)
        header, *rows = (out / "train_log.csv").read_text().splitlines()
        for name in ("ild", "ild_side"):
            at = header.split(",").index(name)
            columns[weight, name] = [float(r.split(",")[at]) for r in rows]
    assert columns[0.0, "ild"] == columns[0.0, "ild_side"] == [0.0, 0.0]
    assert all(v > 0.05 for v in columns[0.1, "ild"]), columns  # synthetic scenes are off-centre: a level error in dB
    # the side loss is zero wherever the model already has the side (values: the tests above)
    assert all(0.0 <= v < 30.0 for v in columns[0.1, "ild_side"]), columns
