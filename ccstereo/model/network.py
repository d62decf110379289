"""The CCStereo network and its whole per-window computation (the graph that is exported)."""

from __future__ import annotations

import torch
from torch import nn

from ccstereo.config import ModelConfig
from ccstereo.kernels.stft import ConvISTFT, ConvSTFT, RMSNormalize, complex_mask
from ccstereo.model.unet import AudioUNet
from ccstereo.model.visual import VisualEncoder


class CCStereo(nn.Module):
    """CCStereo: visual encoder + audio U-Net, plus the DSP around it.

    Two entry points:

    - ``forward(frames, mono_spec) -> mask``: exactly the official network; ``frames`` float
      [B, 3, 224, 448] ImageNet-normalised, ``mono_spec`` [B, 2, 257, 64], mask [B, 2, 257, 64].
    - ``forward_windows(frames_u8, mono, frame_index) -> binaural``: raw uint8 crops and raw L+R windows in,
      binaural windows out (RMS normalisation, STFT, network, complex mask, ISTFT, L/R, undo RMS).
    """

    def __init__(self, config: ModelConfig | None = None) -> None:
        super().__init__()
        self.config = config or ModelConfig()
        cfg = self.config
        self.visual = VisualEncoder(cfg)
        self.audio = AudioUNet(cfg)
        self.stft = ConvSTFT(cfg.n_fft, cfg.stft_hop_samples, cfg.stft_win_samples, cfg.n_stft_frames)
        self.istft = ConvISTFT(
            cfg.window_samples, cfg.n_stft_frames, cfg.n_fft, cfg.stft_hop_samples, cfg.stft_win_samples
        )
        self.rms = RMSNormalize(cfg.rms_target, cfg.rms_floor)
        mean = torch.tensor(cfg.imagenet_mean, dtype=torch.float32).reshape(1, 3, 1, 1)
        std = torch.tensor(cfg.imagenet_std, dtype=torch.float32).reshape(1, 3, 1, 1)
        self.register_buffer("pixel_mean", mean, persistent=False)
        self.register_buffer("pixel_std", std, persistent=False)
        real_eps = torch.tensor([cfg.spec_eps, 0.0], dtype=torch.float32).reshape(1, 2, 1, 1)
        self.register_buffer("real_eps", real_eps, persistent=False)

    # -- the official network ------------------------------------------------------------------------
    def visual_features(self, frames: torch.Tensor) -> torch.Tensor:
        """Return visual features [F, img_dim, 7, 14] of ImageNet-normalised frames [F, 3, 224, 448]."""
        return self.visual(frames)

    def mask_from_features(self, visual: torch.Tensor, mono_spec: torch.Tensor) -> torch.Tensor:
        """Return the complex mask [B, 2, F, T] from per-window visual features and spectrograms."""
        return self.audio(mono_spec, visual)

    def forward(self, frames: torch.Tensor, mono_spec: torch.Tensor) -> torch.Tensor:
        return self.mask_from_features(self.visual_features(frames), mono_spec)

    # -- the exported per-window graph ---------------------------------------------------------------
    def normalize_frames(self, frames_u8: torch.Tensor) -> torch.Tensor:
        """Return ImageNet-normalised float [F, 3, H, W] from uint8 RGB [F, H, W, 3]."""
        x = frames_u8.permute(0, 3, 1, 2).to(torch.float32) / 255.0
        return (x - self.pixel_mean) / self.pixel_std

    def spectrogram(self, mono: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Return (model input spectrogram [W, 2, F, T], normalised mono [W, N], normalizer [W, 1])."""
        mono_n, normalizer = self.rms(mono)
        return self.stft(mono_n) + self.config.spec_eps, mono_n, normalizer

    def binaural_from_mask(
        self, spec: torch.Tensor, mask: torch.Tensor, mono_n: torch.Tensor, normalizer: torch.Tensor
    ) -> torch.Tensor:
        """Return binaural [W, 2, N]: masked difference spectrogram -> ISTFT -> (M +- D) / 2 -> level."""
        diff_spec = complex_mask(spec, mask)
        # The official inverse subtracts eps from the real part only.
        diff = self.istft(diff_spec - self.real_eps)
        left = (mono_n + diff) * 0.5
        right = (mono_n - diff) * 0.5
        return torch.stack([left, right], dim=1) * normalizer.unsqueeze(1)

    def forward_windows(
        self, frames_u8: torch.Tensor, mono: torch.Tensor, frame_index: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Return binaural windows [W, 2, N] for uint8 crops [F, 224, 448, 3] and L+R windows [W, N].

        ``frame_index`` (int64 [W]) says which frame each window uses; by default window i uses frame i.
        The visual network runs once per distinct frame.
        """
        visual = self.visual_features(self.normalize_frames(frames_u8))
        if frame_index is None:
            if frames_u8.shape[0] != mono.shape[0]:
                raise ValueError(f"{frames_u8.shape[0]} frames for {mono.shape[0]} windows: pass frame_index")
        else:
            visual = visual.index_select(0, frame_index)
        spec, mono_n, normalizer = self.spectrogram(mono)
        mask = self.mask_from_features(visual, spec)
        return self.binaural_from_mask(spec, mask, mono_n, normalizer)
