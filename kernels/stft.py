"""STFT / inverse STFT as convolutions with fixed DFT bases, RMS normalisation and the complex mask.

Written with static shapes and plain Conv/ConvTranspose/Mul ops so the ONNX graph has no FFT, no
Shape->Gather chains and fuses in TensorRT.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ccstereo.kernels.dsp_basis import forward_basis, inverse_basis, window_envelope


class ConvSTFT(nn.Module):
    """Centred, zero-padded, one-sided STFT: [B, N] -> [B, 2, n_bins, frames] (channels real, imag)."""

    def __init__(self, n_fft: int = 512, hop: int = 160, win: int = 400, n_frames: int = -1) -> None:
        super().__init__()
        # n_frames fixes the output shape for export (no Shape op); -1 derives it from the input.
        self.n_fft, self.hop, self.n_bins, self.n_frames = n_fft, hop, n_fft // 2 + 1, n_frames
        real, imag = forward_basis(n_fft, win)
        basis = torch.cat([torch.from_numpy(real), torch.from_numpy(imag)])
        self.register_buffer("basis", basis.float().unsqueeze(1), persistent=False)  # [2F, 1, n_fft]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        spec = F.conv1d(x.unsqueeze(1), self.basis, stride=self.hop, padding=self.n_fft // 2)
        n_frames = self.n_frames if self.n_frames > 0 else spec.shape[-1]
        return spec.reshape(-1, 2, self.n_bins, n_frames)


class ConvISTFT(nn.Module):
    """Inverse of ConvSTFT with window-sum normalisation: [B, 2, n_bins, frames] -> [B, length]."""

    def __init__(self, length: int, n_frames: int, n_fft: int = 512, hop: int = 160, win: int = 400) -> None:
        super().__init__()
        self.n_fft, self.hop, self.length, self.n_bins = n_fft, hop, length, n_fft // 2 + 1
        self.n_frames = n_frames
        self.out_samples = (n_frames - 1) * hop
        if (n_frames - 1) * hop < length:
            raise ValueError(f"{n_frames} frames of hop {hop} cannot cover {length} samples")
        real, imag = inverse_basis(n_fft, win)
        basis = torch.cat([torch.from_numpy(real), torch.from_numpy(imag)]).float().unsqueeze(1)
        self.register_buffer("basis", basis, persistent=False)  # [2F, 1, n_fft]
        envelope = window_envelope(n_fft, win, hop, n_frames)[n_fft // 2 : n_fft // 2 + length]
        if (envelope <= 1e-11).any():
            raise ValueError("window envelope vanishes inside the output")
        self.register_buffer("inv_envelope", torch.from_numpy(1.0 / envelope).float(), persistent=False)

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        frames = spec.reshape(-1, 2 * self.n_bins, self.n_frames)
        out = F.conv_transpose1d(frames, self.basis, stride=self.hop, padding=self.n_fft // 2)
        out = out.reshape(-1, self.out_samples)
        if self.out_samples != self.length:
            out = out[:, : self.length]
        return out * self.inv_envelope


class RMSNormalize(nn.Module):
    """Scale each row to RMS ``target``: returns (scaled [B, N], normalizer = rms / target [B, 1])."""

    def __init__(self, target: float = 0.1, floor: float = 1e-4) -> None:
        super().__init__()
        self.target, self.floor = target, floor

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        rms = torch.sqrt(torch.mean(x * x, dim=-1, keepdim=True)).clamp_min(self.floor)
        return x * (self.target / rms), rms * (1.0 / self.target)


def complex_mask(spec: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Return the complex product of spec and mask, both [B, 2, F, T] with channels (real, imag)."""
    s_re, s_im = spec[:, 0], spec[:, 1]
    m_re, m_im = mask[:, 0], mask[:, 1]
    return torch.stack([s_re * m_re - s_im * m_im, s_re * m_im + s_im * m_re], dim=1)
