"""numpy references of the exported operators (float64 unless the input says otherwise)."""

from __future__ import annotations

import numpy as np

from ccstereo.kernels.dsp_basis import forward_basis, inverse_basis, window_envelope


def stft(x: np.ndarray, n_fft: int = 512, hop: int = 160, win: int = 400) -> np.ndarray:
    """Return the centred, zero-padded one-sided STFT of ``x`` [..., N] as complex [..., n_bins, frames]."""
    x = np.asarray(x, dtype=np.float64)
    pad = n_fft // 2
    padded = np.pad(x, [(0, 0)] * (x.ndim - 1) + [(pad, pad)])
    n_frames = 1 + (padded.shape[-1] - n_fft) // hop
    idx = np.arange(n_fft)[None, :] + hop * np.arange(n_frames)[:, None]
    frames = padded[..., idx]  # [..., frames, n_fft]
    real_b, imag_b = forward_basis(n_fft, win)
    real = np.einsum("...tn,kn->...kt", frames, real_b)
    imag = np.einsum("...tn,kn->...kt", frames, imag_b)
    return real + 1j * imag


def istft(spec: np.ndarray, length: int, n_fft: int = 512, hop: int = 160, win: int = 400) -> np.ndarray:
    """Return the inverse of ``stft`` (window-sum normalised, centred) cut to ``length`` samples."""
    spec = np.asarray(spec)
    n_frames = spec.shape[-1]
    real_b, imag_b = inverse_basis(n_fft, win)
    frames = np.einsum("...kt,kn->...tn", spec.real, real_b) + np.einsum("...kt,kn->...tn", spec.imag, imag_b)
    total = n_fft + hop * (n_frames - 1)
    out = np.zeros(spec.shape[:-2] + (total,))
    for t in range(n_frames):
        out[..., t * hop : t * hop + n_fft] += frames[..., t, :]
    envelope = window_envelope(n_fft, win, hop, n_frames)
    start = n_fft // 2
    out = out[..., start : start + length]
    env = envelope[start : start + length]
    if np.any(env <= 1e-11):
        raise ValueError(f"window envelope vanishes inside the output (length {length})")
    return out / env


def rms_normalize(x: np.ndarray, target: float = 0.1, floor: float = 1e-4) -> tuple[np.ndarray, np.ndarray]:
    """Return (x scaled to RMS ``target``, normalizer = rms / target), per row of ``x`` [..., N]."""
    rms = np.maximum(floor, np.sqrt(np.mean(np.square(x), axis=-1, keepdims=True)))
    return x * (target / rms), rms / target


def complex_mask(spec_re: np.ndarray, spec_im: np.ndarray, mask_re: np.ndarray, mask_im: np.ndarray):
    """Return (real, imag) of the complex product spec * mask."""
    return spec_re * mask_re - spec_im * mask_im, spec_re * mask_im + spec_im * mask_re
