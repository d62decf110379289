"""Fixed bases for STFT/ISTFT written as convolutions (numpy only).

Conventions follow torch.stft/torch.istft with ``center=True``: a periodic Hann window of ``win`` samples,
zero-padded symmetrically to ``n_fft``; one-sided spectrum of ``n_fft // 2 + 1`` bins.
"""

from __future__ import annotations

import numpy as np


def hann_periodic(win_samples: int, n_fft: int) -> np.ndarray:
    """Return the periodic Hann window of ``win_samples``, centred and zero-padded to ``n_fft`` (float64)."""
    n = np.arange(win_samples)
    window = 0.5 - 0.5 * np.cos(2.0 * np.pi * n / win_samples)
    left = (n_fft - win_samples) // 2
    padded = np.zeros(n_fft)
    padded[left : left + win_samples] = window
    return padded


def forward_basis(n_fft: int, win_samples: int) -> tuple[np.ndarray, np.ndarray]:
    """Return (real, imag) analysis bases, each [n_bins, n_fft], window folded in (float64).

    ``X_k = sum_n x[n] w[n] exp(-2 pi i k n / n_fft)``, so the imaginary basis is ``-w sin``.
    """
    window = hann_periodic(win_samples, n_fft)
    k = np.arange(n_fft // 2 + 1)[:, None]
    n = np.arange(n_fft)[None, :]
    phase = 2.0 * np.pi * k * n / n_fft
    return np.cos(phase) * window, -np.sin(phase) * window


def inverse_basis(n_fft: int, win_samples: int) -> tuple[np.ndarray, np.ndarray]:
    """Return (real, imag) synthesis bases, each [n_bins, n_fft]: windowed one-sided inverse DFT (float64).

    Frame ``y[n] = w[n] * irfft(X)[n]``; irfft ignores the imaginary part of the DC and Nyquist bins, which the
    sine basis does by construction (sin(0) = sin(pi n) = 0).
    """
    window = hann_periodic(win_samples, n_fft)
    n_bins = n_fft // 2 + 1
    k = np.arange(n_bins)[:, None]
    n = np.arange(n_fft)[None, :]
    phase = 2.0 * np.pi * k * n / n_fft
    weight = np.full((n_bins, 1), 2.0)
    weight[0] = 1.0
    if n_fft % 2 == 0:
        weight[-1] = 1.0
    real = weight * np.cos(phase) / n_fft * window
    imag = -weight * np.sin(phase) / n_fft * window
    return real, imag


def window_envelope(n_fft: int, win_samples: int, hop: int, n_frames: int) -> np.ndarray:
    """Return the overlap-added squared window over the padded signal (length n_fft + hop * (n_frames - 1))."""
    window_sq = hann_periodic(win_samples, n_fft) ** 2
    envelope = np.zeros(n_fft + hop * (n_frames - 1))
    for t in range(n_frames):
        envelope[t * hop : t * hop + n_fft] += window_sq
    return envelope


def linear_resize_matrix(n_in: int, n_out: int) -> np.ndarray:
    """Return M [n_out, n_in] so that ``M @ x`` is 1-D linear interpolation with align_corners=True."""
    matrix = np.zeros((n_out, n_in))
    if n_out == 1:
        matrix[0, 0] = 1.0
        return matrix
    src = np.arange(n_out) * (n_in - 1) / (n_out - 1)
    lo = np.clip(np.floor(src).astype(int), 0, n_in - 1)
    hi = np.clip(lo + 1, 0, n_in - 1)
    frac = src - lo
    matrix[np.arange(n_out), lo] += 1.0 - frac
    matrix[np.arange(n_out), hi] += frac
    return matrix
