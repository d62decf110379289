"""Parity of the PyTorch model with the official implementation (fixture made by the official code)."""

import numpy as np
import pytest
import torch

import ccstereo
from conftest import overlap_average


def official_inputs(model, fx):
    """Per-window inputs exactly as the official test mode builds them (torch STFT, +1e-12)."""
    mono = torch.from_numpy(fx.windows)
    mono_n, _ = model.rms(mono)
    spec = torch.stft(
        mono_n,
        512,
        160,
        400,
        window=torch.hann_window(400),
        center=True,
        pad_mode="constant",
        return_complex=True,
    )
    frames = model.normalize_frames(torch.from_numpy(fx.crops_u8))
    return frames, torch.stack([spec.real, spec.imag], dim=1) + 1e-12


@pytest.fixture(scope="module")
def model(official):
    return ccstereo.load_checkpoint(official.checkpoint)


def test_config_is_inferred_from_the_official_shapes(model):
    cfg = model.config
    assert (cfg.ngf, cfg.img_dim, cfg.resnet_width, cfg.aspp_hidden) == (16, 128, 64, 256)
    assert cfg.avad_layers == (True, False, False, False)
    assert not model.training


def test_forward_reproduces_official_masks(model, official):
    frames, spec = official_inputs(model, official)
    with torch.no_grad():
        mask = model(frames, spec).numpy()
    assert mask.shape == official.expected["masks"].shape
    assert np.abs(mask - official.expected["masks"]).max() <= 1e-4


def test_normalizer_matches_official(model, official):
    _, normalizer = model.rms(torch.from_numpy(official.windows))
    np.testing.assert_allclose(normalizer.numpy()[:, 0], official.expected["normalizer"], rtol=1e-6)


def test_forward_windows_reproduces_official_binaural(model, official):
    with torch.no_grad():
        out = model.forward_windows(torch.from_numpy(official.crops_u8), torch.from_numpy(official.windows))
    assert out.shape == (len(official.windows), 2, 10080)
    binaural = overlap_average(out.numpy(), official.expected["window_starts"], official.clip.shape[1])
    assert np.abs(binaural - official.expected["binaural"]).max() <= 1e-4


def test_forward_windows_with_deduplicated_frames(model, official):
    """Distinct frames once + frame_index gives the same windows as one crop per window."""
    numbers = official.expected["frame_numbers"]
    distinct, index = np.unique(numbers, return_inverse=True)
    first = [int(np.argmax(numbers == n)) for n in distinct]
    frames = torch.from_numpy(official.crops_u8[first])
    mono = torch.from_numpy(official.windows[:8])
    with torch.no_grad():
        dedup = model.forward_windows(frames, mono, torch.from_numpy(index[:8].astype(np.int64)))
        full = model.forward_windows(torch.from_numpy(official.crops_u8[:8]), mono)
    assert np.abs(dedup.numpy() - full.numpy()).max() <= 1e-6


def test_flipped_frames_change_the_masks(model, official):
    """The visual path is live: mirrored frames move the mask well above float32 noise."""
    frames, spec = official_inputs(model, official)
    with torch.no_grad():
        mask = model(frames, spec)
        flipped = model(torch.flip(frames, dims=[3]), spec)
    assert (mask - flipped).abs().max().item() > 0.01


def test_frame_count_mismatch_without_index_is_an_error(model, official):
    with pytest.raises(ValueError, match="frame_index"):
        model.forward_windows(torch.from_numpy(official.crops_u8[:2]), torch.from_numpy(official.windows[:3]))
