"""STFT/ISTFT-as-convolution kernels against torch.stft/istft and the numpy references."""

import numpy as np
import pytest
import torch

from ccstereo.kernels import reference
from ccstereo.kernels.stft import ConvISTFT, ConvSTFT, RMSNormalize, complex_mask

N = 10080


def unit_rms(shape, seed=0):
    x = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    return x / np.sqrt(np.mean(x**2, axis=-1, keepdims=True))


def torch_stft(x):
    spec = torch.stft(
        torch.from_numpy(x),
        512,
        160,
        400,
        window=torch.hann_window(400),
        center=True,
        pad_mode="constant",
        return_complex=True,
    )
    return spec


def test_conv_stft_matches_torch_stft_and_numpy():
    # At the model's operating level (RMS 0.1 after normalisation) the absolute error is within 1e-5.
    x = unit_rms((3, N)) * 0.1
    ours = ConvSTFT()(torch.from_numpy(x)).numpy()
    assert ours.shape == (3, 2, 257, 64)
    z = ours[:, 0] + 1j * ours[:, 1]
    assert np.abs(z - torch_stft(x).numpy()).max() <= 1e-5
    assert np.abs(z - reference.stft(x)).max() <= 1e-5


def test_conv_stft_error_at_unit_rms_is_float32_accumulation():
    # A 512-tap float32 dot product: |X| reaches ~40 at unit RMS, so the error is bounded relative to the
    # peak (measured 6e-7; torch's FFT is at 2e-7 against the float64 reference).
    x = unit_rms((3, N))
    z = ConvSTFT()(torch.from_numpy(x)).numpy()
    z = z[:, 0] + 1j * z[:, 1]
    ref = reference.stft(x)
    assert np.abs(z - ref).max() <= 1e-6 * np.abs(ref).max()


def test_conv_istft_matches_torch_istft_and_inverts_stft():
    x = unit_rms((2, N), seed=1)
    spec = torch_stft(x)
    ours = ConvISTFT(N, 64)(torch.stack([spec.real, spec.imag], dim=1)).numpy()
    ref = torch.istft(spec, 512, 160, 400, window=torch.hann_window(400), center=True, length=N).numpy()
    assert np.abs(ours - ref).max() <= 1e-5
    assert np.abs(ours - x).max() <= 1e-5  # perfect reconstruction
    np_back = reference.istft(reference.stft(x), N)
    assert np.abs(np_back - x).max() <= 1e-9


def test_istft_of_arbitrary_spectrum_matches_torch():
    rng = np.random.default_rng(2)
    spec = (rng.standard_normal((2, 257, 64)) + 1j * rng.standard_normal((2, 257, 64))).astype(np.complex64)
    ref = torch.istft(torch.from_numpy(spec), 512, 160, 400, window=torch.hann_window(400), length=N).numpy()
    ours = ConvISTFT(N, 64)(torch.from_numpy(np.stack([spec.real, spec.imag], 1))).numpy()
    assert np.abs(ours - ref).max() <= 1e-5
    assert np.abs(reference.istft(spec, N) - ref).max() <= 1e-5


def test_rms_normalize_matches_reference_and_floors_silence():
    x = np.concatenate([unit_rms((2, N)) * 0.3, np.zeros((1, N), np.float32)])
    scaled, norm = RMSNormalize()(torch.from_numpy(x))
    ref_scaled, ref_norm = reference.rms_normalize(x)
    assert np.abs(scaled.numpy() - ref_scaled).max() <= 1e-6
    assert np.abs(norm.numpy() - ref_norm).max() <= 1e-6 * np.abs(ref_norm).max()
    assert norm[2, 0].item() == pytest.approx(1e-3)  # floor 1e-4 / target 0.1
    assert np.sqrt(np.mean(scaled.numpy()[:2] ** 2, axis=-1)) == pytest.approx([0.1, 0.1], rel=1e-5)


def test_complex_mask_is_a_complex_product():
    rng = np.random.default_rng(3)
    spec, mask = rng.standard_normal((2, 1, 2, 5, 4)).astype(np.float32)
    out = complex_mask(torch.from_numpy(spec), torch.from_numpy(mask)).numpy()
    z = (spec[:, 0] + 1j * spec[:, 1]) * (mask[:, 0] + 1j * mask[:, 1])
    assert np.abs(out[:, 0] + 1j * out[:, 1] - z).max() <= 1e-6
    ref = reference.complex_mask(spec[:, 0], spec[:, 1], mask[:, 0], mask[:, 1])
    assert np.abs(out[:, 0] - ref[0]).max() <= 1e-6
