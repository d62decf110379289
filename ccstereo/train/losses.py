"""Training losses: difference-spectrogram MSE, magnitude, binaural phase, interaural level difference (ILD), the
side of the ILD, and spatial contrastive (SCL)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def magnitude_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean |(|pred| - |target|)| of [B, 2, F, T] (real, imag) spectrograms."""
    return (pred.pow(2).sum(1).clamp_min(1e-12).sqrt() - target.pow(2).sum(1).clamp_min(1e-12).sqrt()).abs().mean()


ILD_BAND_EDGES = (0, 16, 48, 128, None)  # STFT bins at 16 kHz / 512: 0-0.5, 0.5-1.5, 1.5-4, 4-8 kHz
_ILD_BANDS = ((0, None), *zip(ILD_BAND_EDGES[:-1], ILD_BAND_EDGES[1:], strict=True))  # broadband, then each band


def _window_ilds(
    mono: torch.Tensor, pred: torch.Tensor, target: torch.Tensor, floor: float, limit_db: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(ILD of pred, ILD of target clipped at +-``limit_db``, weight), each [B, 1 + bands]: broadband, then each
    band; the weight is 1 broadband and each band's share of the target's energy."""

    def band_energies(diff: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        left = (mono + diff).pow(2).sum(1).sum(-1)  # [B, F]; the factor 1/4 of (M +- D) / 2 cancels in the ratio
        right = (mono - diff).pow(2).sum(1).sum(-1)
        return (
            torch.stack([left[:, a:b].sum(-1) for a, b in _ILD_BANDS], -1),
            torch.stack([right[:, a:b].sum(-1) for a, b in _ILD_BANDS], -1),
        )

    lp, rp = band_energies(pred)
    lt, rt = band_energies(target.detach())
    total = lt + rt
    eps = floor * total[:, :1] + 1e-12  # relative to the window's broadband energy
    ild_pred = 10.0 * torch.log10((lp + eps) / (rp + eps))
    ild_true = (10.0 * torch.log10((lt + eps) / (rt + eps))).clamp(-limit_db, limit_db)
    share = total[:, 1:] / total[:, :1].clamp_min(1e-12)
    return ild_pred, ild_true, torch.cat([torch.ones_like(share[:, :1]), share], -1)  # broadband 1, bands sum to 1


def ild_loss(
    mono: torch.Tensor, pred: torch.Tensor, target: torch.Tensor, floor: float = 1e-4, limit_db: float = 20.0
) -> torch.Tensor:
    """Mean |ILD(pred) - ILD(target)| in dB over each window, broadband and per band, of [B, 2, F, T] (real, imag)
    mono (L + R) and difference (L - R) spectrograms; each band weighs by its share of the target's energy, so a
    silent band does not count. Level in dB does not care how loud a window is: a quiet scene in a room, whose
    1-3 dB decide its side, counts as much as a loud one (the difference-spectrogram MSE follows loudness), and a
    scene whose truth is centred is pulled to 0 dB. The target's ILD is clipped at +-``limit_db``."""
    ild_pred, ild_true, weight = _window_ilds(mono, pred, target, floor, limit_db)
    return ((ild_pred - ild_true).abs() * weight).sum(-1).mean() / 2.0


def ild_side_loss(
    mono: torch.Tensor, pred: torch.Tensor, target: torch.Tensor, decides_db: float = 1.0, margin_db: float = 1.0
) -> torch.Tensor:
    """A hinge on the SIDE of each window's broadband ILD, of the same spectrograms as ``ild_loss``: a window whose
    truth is at least ``decides_db`` to one side costs max(0, ``margin_db`` - ILD(pred) x its side) dB, so a
    prediction on the wrong side (or within the margin of the centre) costs, one on the right side by the margin
    costs nothing, however far its level is from the truth's; windows whose truth is nearer the centre cost
    nothing. The mean is over all windows. ``ild_loss`` pulls every level toward the truth, a near-centre error on
    the wrong side as little as a same-sized error on the right one; direction accuracy counts only the side."""
    ild_pred, ild_true, _ = _window_ilds(mono, pred, target, 1e-4, 20.0)
    side = torch.sign(ild_true[:, 0]) * (ild_true[:, 0].abs() >= decides_db)
    return torch.relu(margin_db - side * ild_pred[:, 0]).mul(side.abs()).mean()


def phase_loss(pred_wave: torch.Tensor, target_wave: torch.Tensor, ignore_below: float = 0.2) -> torch.Tensor:
    """Mean wrapped phase error of the STFTs of [B, 2, N] waveforms over bins with energy in both."""
    window = torch.hann_window(400, device=pred_wave.device)

    def spec(x: torch.Tensor) -> torch.Tensor:
        s = torch.stft(x.reshape(-1, x.shape[-1]).float(), 512, 160, 400, window=window, return_complex=True)
        return torch.view_as_real(s).reshape(-1, 2)

    p, t = spec(pred_wave), spec(target_wave)
    energy_t, energy_p = t.abs().sum(-1), p.detach().abs().sum(-1)
    threshold = ignore_below * energy_t.mean()
    keep = (energy_t > threshold) & (energy_p > threshold)
    if not keep.any():
        return pred_wave.sum() * 0.0
    err = (torch.atan2(p[keep, 1], p[keep, 0]) - torch.atan2(t[keep, 1], t[keep, 0])).abs()
    return (math.pi - (err - math.pi).abs()).mean()


def scl_loss(anchor: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor, tau: float = 0.1) -> torch.Tensor:
    """InfoNCE over [B, D] features (paper eq. 2).

    For anchor j the positive is ``positive[j]`` (its previous frame); the negatives are every spatially
    shuffled feature ``negative[n]`` and the other samples' positives ``positive[k]``, k != j.
    """
    a, p, n = (F.normalize(x.float(), dim=-1) for x in (anchor, positive, negative))
    pos = (a * p).sum(-1, keepdim=True) / tau
    neg_shuffled = a @ n.T / tau
    others = a @ p.T / tau
    eye = torch.eye(a.shape[0], dtype=torch.bool, device=a.device)
    others = others.masked_fill(eye, float("-inf"))
    logits = torch.cat([pos, neg_shuffled, others], dim=1)
    return F.cross_entropy(logits, torch.zeros(a.shape[0], dtype=torch.long, device=a.device))


def spatial_shuffle(v: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Return [B, C, H, W] features with the H*W positions permuted (one permutation for the batch)."""
    b, c, h, w = v.shape
    order = torch.randperm(h * w, generator=generator, device="cpu").to(v.device)
    return v.reshape(b, c, h * w)[:, :, order].reshape(b, c, h, w)
