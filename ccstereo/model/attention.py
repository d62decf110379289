"""Audio-visual attention fusion: cross-attention (audio queries, visual keys/values), self-attention, FFN.

Post-norm residual blocks; learned position embeddings are added to queries and keys only (never values),
as in DETR-style decoders. Shapes are static apart from the batch so the exported graph has no shape ops.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ccstereo.config import ModelConfig


class MultiHeadAttention(nn.Module):
    """Multi-head scaled dot-product attention on batch-first tokens [B, L, C].

    Parameters are named like ``torch.nn.MultiheadAttention`` (packed ``in_proj_weight`` [3C, C],
    ``in_proj_bias``, ``out_proj``) so that released weights map one to one.
    """

    def __init__(self, channels: int, heads: int, q_len: int, kv_len: int) -> None:
        super().__init__()
        self.channels, self.heads, self.q_len, self.kv_len = channels, heads, q_len, kv_len
        self.head_dim = channels // heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * channels, channels))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * channels))
        self.out_proj = nn.Linear(channels, channels)
        nn.init.xavier_uniform_(self.in_proj_weight)

    def _split(self, x: torch.Tensor, length: int) -> torch.Tensor:
        return x.reshape(-1, length, self.heads, self.head_dim).transpose(1, 2)

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        w_q, w_k, w_v = self.in_proj_weight.chunk(3)
        b_q, b_k, b_v = self.in_proj_bias.chunk(3)
        q = self._split(F.linear(query, w_q, b_q), self.q_len) * (1.0 / math.sqrt(self.head_dim))
        k = self._split(F.linear(key, w_k, b_k), self.kv_len)
        v = self._split(F.linear(value, w_v, b_v), self.kv_len)
        attn = torch.softmax(q @ k.transpose(-2, -1), dim=-1)
        out = (attn @ v).transpose(1, 2).reshape(-1, self.q_len, self.channels)
        return self.out_proj(out)


class AudioVisualFusion(nn.Module):
    """Fuse the audio bottleneck [B, C, ah, aw] with visual features [B, C, vh, vw] -> [B, C, ah, aw]."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        c = config.img_dim
        vh, vw = config.visual_grid
        ah, aw = config.audio_grid
        self.channels, self.audio_grid = c, (ah, aw)
        self.n_visual, self.n_audio = vh * vw, ah * aw
        self.visual_proj = nn.Sequential(nn.Conv2d(c, c, 1), nn.BatchNorm2d(c), nn.ReLU())
        self.visual_pos = nn.Embedding(self.n_visual, c)
        self.audio_pos = nn.Embedding(self.n_audio, c)
        heads = config.attention_heads
        self.cross_attn = MultiHeadAttention(c, heads, self.n_audio, self.n_visual)
        self.cross_norm = nn.LayerNorm(c)
        self.self_attn = MultiHeadAttention(c, heads, self.n_audio, self.n_audio)
        self.self_norm = nn.LayerNorm(c)
        self.ffn1 = nn.Linear(c, c)
        self.ffn2 = nn.Linear(c, c)
        self.ffn_norm = nn.LayerNorm(c)

    def tokens(self, x: torch.Tensor, n: int) -> torch.Tensor:
        """Return [B, C, h, w] as row-major tokens [B, h*w, C]."""
        return x.reshape(-1, self.channels, n).transpose(1, 2)

    def forward(self, visual: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        v = self.tokens(self.visual_proj(visual), self.n_visual)
        a = self.tokens(audio, self.n_audio)
        v_pos, a_pos = self.visual_pos.weight, self.audio_pos.weight
        x = self.cross_norm(a + self.cross_attn(a + a_pos, v + v_pos, v))
        q = x + a_pos
        x = self.self_norm(x + self.self_attn(q, q, x))
        x = self.ffn_norm(x + self.ffn2(F.relu(self.ffn1(x))))
        ah, aw = self.audio_grid
        return x.transpose(1, 2).reshape(-1, self.channels, ah, aw)
