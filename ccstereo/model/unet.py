"""Audio U-Net: 5-level encoder, attention fusion at the bottleneck, decoder with optional AVAD layers."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ccstereo.config import ConfigError, ModelConfig
from ccstereo.kernels.dsp_basis import linear_resize_matrix
from ccstereo.model.attention import AudioVisualFusion
from ccstereo.model.avad import AVAD


def _down(in_ch: int, out_ch: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_ch, out_ch, 4, stride=2, padding=1), nn.BatchNorm2d(out_ch), nn.LeakyReLU(0.2))


class UpBlock(nn.Module):
    """Transposed convolution (x2), then BatchNorm or AVAD, then ReLU."""

    def __init__(self, in_ch: int, out_ch: int, norm: nn.Module) -> None:
        super().__init__()
        self.conv = nn.ConvTranspose2d(in_ch, out_ch, 4, stride=2, padding=1)
        self.norm = norm

    def forward(self, x: torch.Tensor, visual: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        x = self.norm(x, visual) if isinstance(self.norm, AVAD) else self.norm(x)
        return torch.relu(x)


def _grid_sizes(n_freq: int, n_time: int, levels: int) -> list[tuple[int, int]]:
    sizes, (f, t) = [], (n_freq, n_time)
    for _ in range(levels):
        f, t = (f + 2 - 4) // 2 + 1, (t + 2 - 4) // 2 + 1
        sizes.append((f, t))
    return sizes


class AudioUNet(nn.Module):
    """[B, 2, F, T] mono spectrogram + [B, img_dim, 7, 14] visual features -> complex mask [B, 2, F, T]."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        g, c = config.ngf, config.img_dim
        n_freq, n_time = config.n_freq_bins, config.n_stft_frames
        enc = _grid_sizes(n_freq, n_time, 5)  # sizes after down1..down5
        # Decoder level k doubles the grid; its skip partner must already have that size.
        for level in range(1, 5):
            up = (enc[5 - level][0] * 2, enc[5 - level][1] * 2)
            if up != enc[4 - level]:
                raise ConfigError(f"U-Net skip size mismatch at decoder layer {level}: {up} vs {enc[4 - level]}")
        chans = [2, g, 2 * g, 4 * g, 8 * g, 8 * g]
        for i in range(5):
            self.add_module(f"down{i + 1}", _down(chans[i], chans[i + 1]))
        self.fusion = AudioVisualFusion(config)
        up_io = [(8 * g, 8 * g), (16 * g, 4 * g), (8 * g, 2 * g), (4 * g, g)]
        tokens = config.visual_grid[0] * config.visual_grid[1]
        for level, ((cin, cout), use_avad) in enumerate(zip(up_io, config.avad_layers, strict=True), start=1):
            hw = enc[4 - level]
            norm = AVAD(cout, hw, c, tokens, config.avad_kernel) if use_avad else nn.BatchNorm2d(cout)
            self.add_module(f"up{level}", UpBlock(cin, cout, norm))
        self.up5 = nn.Module()
        self.up5.conv = nn.ConvTranspose2d(2 * g, 2, 4, stride=2, padding=1)
        out_f, out_t = enc[0][0] * 2, enc[0][1] * 2
        self.out_size = (out_f, out_t)
        self.register_buffer(
            "freq_resize",
            torch.from_numpy(linear_resize_matrix(out_f, n_freq).astype(np.float32)),
            persistent=False,
        )
        self.time_resize: torch.Tensor | None = None
        if out_t != n_time:
            self.register_buffer(
                "time_resize",
                torch.from_numpy(linear_resize_matrix(out_t, n_time).T.astype(np.float32)),
                persistent=False,
            )

    def encode(self, spec: torch.Tensor) -> list[torch.Tensor]:
        feats, x = [], spec
        for i in range(1, 6):
            x = getattr(self, f"down{i}")(x)
            feats.append(x)
        return feats

    def decode(self, fused: torch.Tensor, skips: list[torch.Tensor], visual: torch.Tensor) -> torch.Tensor:
        x = self.up1(fused, visual)
        for level in range(2, 5):
            x = getattr(self, f"up{level}")(torch.cat([x, skips[4 - level + 1]], dim=1), visual)
        x = self.up5.conv(torch.cat([x, skips[0]], dim=1))
        mask = torch.sigmoid(x) * 2.0 - 1.0
        # Bilinear resize to the STFT grid with align_corners=True, as a fixed matrix (exact, export-friendly).
        mask = torch.matmul(self.freq_resize, mask)
        if self.time_resize is not None:
            mask = torch.matmul(mask, self.time_resize)
        return mask

    def forward(self, spec: torch.Tensor, visual: torch.Tensor) -> torch.Tensor:
        feats = self.encode(spec)
        fused = self.fusion(visual, feats[4])
        return self.decode(fused, feats[:4], visual)
