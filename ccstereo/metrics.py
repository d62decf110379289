"""Binaural evaluation metrics, equal to the official CCStereo evaluation (numpy only, no torch).

All functions take ``pred`` and ``gt`` as float arrays [2, N] (left, right). ``evaluate`` peak-normalises
nothing itself: the official protocol divides both signals by their own peak first (``peak_normalize``).

Names follow the paper (``stft``, ``env``, ``wav``, ``mag``, ``phs``, ``snr``) plus the official extras
``amp`` and ``phase``, SAGM's ``spl`` and a multi-resolution STFT distance ``mrstft``.
"""

from __future__ import annotations

import numpy as np

from ccstereo.kernels.dsp_basis import hann_periodic

N_FFT, HOP, WIN = 512, 160, 400
SPL_FRAME_S = 0.1
SPL_P_REF = 2e-5
# (n_fft, hop, win) of the multi-resolution STFT distance (the Parallel WaveGAN / auraloss defaults).
MRSTFT_RESOLUTIONS = ((1024, 120, 600), (2048, 240, 1200), (512, 50, 240))


def peak_normalize(x: np.ndarray) -> np.ndarray:
    """Return x divided by its peak over all channels (floored at 1e-20), as the official evaluation."""
    return x / max(1e-20, float(np.max(np.abs(x))))


def _stft(x: np.ndarray, n_fft: int, hop: int, win: int, pad_mode: str) -> np.ndarray:
    """Centred one-sided STFT of a 1-D signal -> complex [n_bins, frames] (float64)."""
    pad = n_fft // 2
    padded = np.pad(np.asarray(x, np.float64), pad, mode=pad_mode)
    n_frames = 1 + (len(padded) - n_fft) // hop
    idx = np.arange(n_fft)[None, :] + hop * np.arange(n_frames)[:, None]
    return np.fft.rfft(padded[idx] * hann_periodic(win, n_fft), axis=-1).T


def spec_librosa(x: np.ndarray) -> np.ndarray:
    """STFT as ``librosa.stft(n_fft=512, hop_length=160, win_length=400, center=True)`` (zero padding)."""
    return _stft(x, N_FFT, HOP, WIN, "constant")


def spec_torch(x: np.ndarray) -> np.ndarray:
    """STFT as ``torch.stft`` with the same sizes and its default reflect padding."""
    return _stft(x, N_FFT, HOP, WIN, "reflect")


def stft_distance(pred: np.ndarray, gt: np.ndarray) -> float:
    """Sum over channels of the mean squared error of stacked real/imag STFTs (paper: STFT)."""
    total = 0.0
    for c in range(2):
        d = spec_librosa(pred[c]) - spec_librosa(gt[c])
        total += float(np.mean(np.concatenate([d.real, d.imag]) ** 2))
    return total


def magnitude_distance(pred: np.ndarray, gt: np.ndarray) -> float:
    """Sum over channels of the mean squared complex STFT error (paper: Mag; = 2 x STFT)."""
    return float(sum(np.mean(np.abs(spec_librosa(pred[c]) - spec_librosa(gt[c])) ** 2) for c in range(2)))


def analytic_signal(x: np.ndarray) -> np.ndarray:
    """Return the analytic signal of real ``x`` [N] as the official evaluation's ``scipy.signal.hilbert`` computes
    it (its spectrum with the negative frequencies removed and the positive ones doubled), in ``x``'s precision.

    numpy's FFT instead of scipy's: importing scipy.signal takes ~1 s, which every ``ccs-run --precision`` start
    paid for the accuracy check of its engine (``runtime.verification``). Same algorithm; the two FFT libraries
    round differently (float64: within 1e-14 of scipy's; float32: within a few float32 ulps)."""
    n = x.shape[-1]
    spectrum = np.fft.fft(x)
    weights = np.zeros(n, dtype=spectrum.real.dtype)
    weights[0] = 1
    if n % 2 == 0:
        weights[n // 2] = 1
    weights[1 : (n + 1) // 2] = 2
    return np.fft.ifft(spectrum * weights)


def envelope_distance(pred: np.ndarray, gt: np.ndarray) -> float:
    """Sum over channels of the RMS difference of Hilbert envelopes (paper: ENV)."""
    envelopes = [(np.abs(analytic_signal(gt[c])), np.abs(analytic_signal(pred[c]))) for c in range(2)]
    return float(sum(np.sqrt(np.mean((truth - ours) ** 2)) for truth, ours in envelopes))


def wav_distance(pred: np.ndarray, gt: np.ndarray) -> float:
    """1000 x the sum over channels of the waveform mean squared error (paper: WAV)."""
    return 1e3 * float(sum(np.mean((pred[c].astype(np.float64) - gt[c]) ** 2) for c in range(2)))


def snr(pred: np.ndarray, gt: np.ndarray) -> float:
    """Signal-to-noise ratio in dB over both channels, with the official 1e-4 regularisers."""
    gt = gt.astype(np.float64)
    mse = np.mean((pred.astype(np.float64) - gt) ** 2)
    return float(10.0 * np.log10((np.mean(gt**2) + 1e-4) / (mse + 1e-4)))


def amplitude_distance(pred: np.ndarray, gt: np.ndarray) -> float:
    """Sum over channels of the mean absolute STFT magnitude error (official ``amp``; reflect padding)."""
    total = 0.0
    for c in range(2):
        p, g = spec_torch(pred[c]), spec_torch(gt[c])
        mag_p = np.sqrt(np.maximum(1e-12, p.real**2 + p.imag**2))
        mag_g = np.sqrt(np.maximum(1e-12, g.real**2 + g.imag**2))
        total += float(np.mean(np.abs(mag_p - mag_g)))
    return total


def phase_distance(pred: np.ndarray, gt: np.ndarray, ignore_below: float = 0.2) -> float:
    """Sum over channels of the mean wrapped phase error over bins with energy in both signals.

    A bin counts when ``|re| + |im|`` exceeds ``ignore_below`` x the target's mean of that quantity in the
    target and in the prediction (official ``phase``).
    """
    total = 0.0
    for c in range(2):
        p, g = spec_torch(pred[c]).ravel(), spec_torch(gt[c]).ravel()
        e_p, e_g = np.abs(p.real) + np.abs(p.imag), np.abs(g.real) + np.abs(g.imag)
        threshold = ignore_below * np.mean(e_g)
        keep = (e_g > threshold) & (e_p > threshold)
        if not np.any(keep):
            continue
        err = np.abs(np.angle(p[keep]) - np.angle(g[keep]))
        total += float(np.mean(np.pi - np.abs(err - np.pi)))
    return total


def _unit_phase(spec: np.ndarray) -> np.ndarray:
    mag = np.abs(spec)
    zero = mag == 0
    return spec / (mag + zero) + zero  # zero bins get phase 0, as librosa.magphase


def difference_phase_distance(pred: np.ndarray, gt: np.ndarray) -> float:
    """Mean wrapped phase difference of the STFTs of the L-R signals (paper: Phs; official ``ang_diff``)."""
    a_p = np.angle(_unit_phase(spec_librosa(pred[0] - pred[1])))
    a_g = np.angle(_unit_phase(spec_librosa(gt[0] - gt[1])))
    d = np.abs(a_p - a_g)
    return float(np.mean(np.minimum(d, np.clip(2 * np.pi - d, 0, 2 * np.pi))))


def spl_curve(x: np.ndarray, sample_rate_hz: int = 16000, frame_s: float = SPL_FRAME_S) -> np.ndarray:
    """Return SPL_L(t) - SPL_R(t) in dB over non-overlapping frames of ``frame_s`` (SAGM eqs. 18-20).

    SPL(t) = 20 log10(rms(A(t)) / p_ref); frame energies are floored at 1e-10 to keep silence finite.
    """
    n = max(1, int(round(frame_s * sample_rate_hz)))
    frames = x.shape[-1] // n
    if frames == 0:
        raise ValueError(f"signal of {x.shape[-1]} samples is shorter than one SPL frame ({n})")
    blocks = np.asarray(x[:, : frames * n], np.float64).reshape(2, frames, n)
    rms = np.sqrt(np.maximum(np.mean(blocks**2, axis=-1), 1e-10))
    spl = 20.0 * np.log10(rms / SPL_P_REF)
    return spl[0] - spl[1]


def spl_distance(pred: np.ndarray, gt: np.ndarray, sample_rate_hz: int = 16000) -> float:
    """RMS over frames of the SPL-difference error in dB (SAGM eq. 21 divided by sqrt(frames))."""
    d = spl_curve(gt, sample_rate_hz) - spl_curve(pred, sample_rate_hz)
    return float(np.sqrt(np.mean(d**2)))


def mrstft_distance(pred: np.ndarray, gt: np.ndarray) -> float:
    """Multi-resolution STFT distance: mean over resolutions and channels of spectral convergence + mean
    |log10 magnitude| error + mean |magnitude| error (magnitudes floored at 1e-7)."""
    values = []
    for n_fft, hop, win in MRSTFT_RESOLUTIONS:
        for c in range(2):
            p = np.maximum(np.abs(_stft(pred[c], n_fft, hop, win, "reflect")), 1e-7)
            g = np.maximum(np.abs(_stft(gt[c], n_fft, hop, win, "reflect")), 1e-7)
            sc = np.linalg.norm(g - p) / max(np.linalg.norm(g), 1e-12)
            log_mag = np.mean(np.abs(np.log10(g) - np.log10(p)))
            lin_mag = np.mean(np.abs(g - p))
            values.append(sc + log_mag + lin_mag)
    return float(np.mean(values))


def evaluate(pred: np.ndarray, gt: np.ndarray, sample_rate_hz: int = 16000) -> dict[str, float]:
    """Return every metric of ``pred`` against ``gt`` (both [2, N], already peak-normalised)."""
    pred, gt = np.asarray(pred), np.asarray(gt)
    if pred.ndim != 2 or pred.shape[0] != 2 or pred.shape != gt.shape:
        raise ValueError(f"pred {pred.shape} and gt {gt.shape} must both be [2, N]")
    return {
        "stft": stft_distance(pred, gt),
        "env": envelope_distance(pred, gt),
        "wav": wav_distance(pred, gt),
        "mag": magnitude_distance(pred, gt),
        "phs": difference_phase_distance(pred, gt),
        "snr": snr(pred, gt),
        "amp": amplitude_distance(pred, gt),
        "phase": phase_distance(pred, gt),
        "spl": spl_distance(pred, gt, sample_rate_hz),
        "mrstft": mrstft_distance(pred, gt),
    }


# Our names -> the keys of the official evaluation (expected_metrics.json).
OFFICIAL_NAMES = {
    "stft": "stft_l2_dist",
    "env": "env_dist",
    "wav": "wav_dist",
    "mag": "mag_dist",
    "phs": "ang_diff",
    "snr": "snr",
    "amp": "amp_dist",
    "phase": "phase_dist",
}


def segment_ild_db(x: np.ndarray, sample_rate_hz: int = 16000, segment_s: float = 0.5, floor: float = 1e-10):
    """Return (ILD in dB per ``segment_s`` segment, + = left louder; energy per segment) of binaural [2, N]."""
    x = np.asarray(x, np.float64)
    seg = int(segment_s * sample_rate_hz)
    count = x.shape[1] // seg
    energy = (x[:, : count * seg].reshape(2, count, seg) ** 2).sum(axis=2)
    return 10.0 * np.log10((energy[0] + floor) / (energy[1] + floor)), energy.sum(axis=0)


def _decided_segments(pred: np.ndarray, truth: np.ndarray, sample_rate_hz: int, min_ild_db: float):
    """(output ILD, truth ILD, segments that carry sound, those whose truth |ILD| >= ``min_ild_db``) per 0.5 s."""
    ild_p, energy = segment_ild_db(pred, sample_rate_hz)
    ild_t, _ = segment_ild_db(truth, sample_rate_hz)
    live = energy > 1e-4 * max(float(energy.max()), 1e-20)
    return ild_p, ild_t, live, live & (np.abs(ild_t) >= min_ild_db)


def direction_scores(pred: np.ndarray, truth: np.ndarray, sample_rate_hz: int = 16000, min_ild_db: float = 1.0):
    """Direction measures of a binaural ``pred`` against ``truth`` ([2, N] each), on 0.5 s segments that carry
    sound: which side louder agrees where the truth's |ILD| >= ``min_ild_db`` (overall, truth-left, truth-right
    as (agreeing, counted) pairs), and both ILD series for correlation across clips."""
    ild_p, ild_t, live, decided = _decided_segments(pred, truth, sample_rate_hz, min_ild_db)
    agree = np.sign(ild_p) == np.sign(ild_t)
    left, right = decided & (ild_t > 0), decided & (ild_t < 0)
    return {
        "all": (int((agree & decided).sum()), int(decided.sum())),
        "left": (int((agree & left).sum()), int(left.sum())),
        "right": (int((agree & right).sum()), int(right.sum())),
        "ild_pred": ild_p[live],
        "ild_truth": ild_t[live],
    }


def picture_side_scores(
    pred: np.ndarray,
    truth: np.ndarray,
    azimuth_per_tick: np.ndarray,
    sample_rate_hz: int = 16000,
    min_ild_db: float = 1.0,
    min_azimuth_deg: float = 2.0,
) -> dict[str, tuple[int, int]]:
    """One visible sounding source, its azimuth given per 0.1 s picture tick (+ = left, as the ILD): on the
    segments ``direction_scores`` decides whose source is, on average over the segment's five ticks, at least
    ``min_azimuth_deg`` off centre, how often the truth's louder ear is on the side the picture shows, how often
    the output's is, and how often output and truth agree there — (agreeing, counted) each. Where the truth leaves
    the picture's side (a room's reflections on a narrow-band sound), no model that follows the picture agrees."""
    ild_p, ild_t, _, decided = _decided_segments(pred, truth, sample_rate_hz, min_ild_db)
    azimuths, ticks_per_segment = np.asarray(azimuth_per_tick, np.float64), 5  # 0.5 s segments, 0.1 s ticks
    count = min(len(ild_t), len(azimuths) // ticks_per_segment)
    side = azimuths[: count * ticks_per_segment].reshape(count, ticks_per_segment).mean(axis=1)
    decided = decided[:count] & (np.abs(side) >= min_azimuth_deg)
    t, p, s = np.sign(ild_t[:count]), np.sign(ild_p[:count]), np.sign(side)
    n = int(decided.sum())
    return {
        "truth_vs_picture": (int((decided & (t == s)).sum()), n),
        "output_vs_picture": (int((decided & (p == s)).sum()), n),
        "output_vs_truth": (int((decided & (p == t)).sum()), n),
    }
