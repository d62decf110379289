"""AVAD: audio-visual adaptive de-normalisation (a SPADE-style conditional BatchNorm).

The decoder feature is batch-normalised without affine parameters, then modulated as
``norm * (1 + gamma) + beta``, where gamma and beta come from convolutions over the cosine-similarity
map between every visual token and every audio position (98 visual tokens act as input channels).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _l2_normalize(x: torch.Tensor) -> torch.Tensor:
    """Return x / max(||x||_2, 1e-12) along the last axis (F.normalize without its expand, for export)."""
    return x / torch.linalg.vector_norm(x, dim=-1, keepdim=True).clamp_min(1e-12)


class AVAD(nn.Module):
    """Conditional normalisation of [B, C, h, w] decoder features by visual features [B, Cv, vh, vw]."""

    def __init__(
        self, channels: int, audio_hw: tuple[int, int], visual_channels: int, visual_tokens: int, kernel: int
    ) -> None:
        super().__init__()
        self.channels, self.audio_hw, self.visual_tokens = channels, audio_hw, visual_tokens
        self.n_audio = audio_hw[0] * audio_hw[1]
        self.bn = nn.BatchNorm2d(channels, affine=False)
        self.visual_proj = nn.Conv2d(visual_channels, channels, 1)
        self.pos_visual = nn.Parameter(torch.randn(1, visual_tokens, channels) * 0.02)
        self.pos_audio = nn.Parameter(torch.randn(1, self.n_audio, channels) * 0.02)
        pad = kernel // 2
        self.shared = nn.Conv2d(visual_tokens, channels, kernel, padding=pad)
        self.gamma = nn.Conv2d(channels, channels, kernel, padding=pad)
        self.beta = nn.Conv2d(channels, channels, kernel, padding=pad)

    def similarity(self, normalized: torch.Tensor, visual: torch.Tensor) -> torch.Tensor:
        """Return the cosine similarity of visual tokens and audio positions as [B, tokens, h, w]."""
        a = normalized.reshape(-1, self.channels, self.n_audio).transpose(1, 2) + self.pos_audio
        v = self.visual_proj(visual).reshape(-1, self.channels, self.visual_tokens).transpose(1, 2)
        v = v + self.pos_visual
        sim = _l2_normalize(v) @ _l2_normalize(a).transpose(1, 2)
        return sim.reshape(-1, self.visual_tokens, self.audio_hw[0], self.audio_hw[1])

    def forward(self, x: torch.Tensor, visual: torch.Tensor) -> torch.Tensor:
        normalized = self.bn(x)
        actv = F.relu(self.shared(self.similarity(normalized, visual)))
        return normalized * (1.0 + self.gamma(actv)) + self.beta(actv)
