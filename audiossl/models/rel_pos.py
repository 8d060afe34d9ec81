"""Bucketed relative position bias and the gated self-attention that uses it (BEATs / WavLM style)."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F


def relative_position_bucket(relative: Tensor, num_buckets: int, max_distance: int) -> Tensor:
    """T5/WavLM bidirectional buckets of ``relative = key - query`` (long, any shape → same shape).

    Half the buckets per direction; the first half of those are exact distances, the rest
    log-spaced up to ``max_distance`` (larger distances share the last bucket).
    """
    half, dist = num_buckets // 2, relative.abs()
    exact, bucket = half // 2, (relative > 0).long() * half
    log_ratio = torch.log(dist.clamp(min=1).float() / exact) / math.log(max_distance / exact)
    far = (exact + (log_ratio * (half - exact)).long()).clamp(max=half - 1)
    return bucket + torch.where(dist < exact, dist, far)


class BeatsAttention(nn.Module):
    """Self-attention with separate q/k/v projections (unilm key names) and the WavLM gated bias.

    With a relative bias the scores are ``q·k/√d + g(q) * bias[h, i, j]`` where the gate
    ``g = a * (b * grep_a - 1) + 2`` comes from ``sigmoid(grep_linear(q))`` per query and head.
    That bias is a dense float ``[B, H, T, T]`` attn_mask, so SDPA cannot use its flash kernel
    (no arbitrary additive bias there) and falls back to memory-efficient / math kernels; without
    it the mask is a boolean key-padding mask and flash stays available.
    """

    def __init__(self, dim: int, num_heads: int, dropout: float, *, has_bias_table: bool, num_buckets: int, gru_rel_pos: bool):
        super().__init__()
        self.num_heads, self.head_dim, self.dropout = num_heads, dim // num_heads, dropout
        self.k_proj, self.v_proj, self.q_proj = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)
        if has_bias_table:
            self.relative_attention_bias = nn.Embedding(num_buckets, num_heads)
        self.gru_rel_pos = gru_rel_pos
        if gru_rel_pos:
            self.grep_linear = nn.Linear(self.head_dim, 8)
            self.grep_a = nn.Parameter(torch.ones(1, num_heads, 1, 1))

    def forward(self, x: Tensor, key_mask: Tensor | None, pos_bias: Tensor | None) -> Tensor:
        """``x [B, T, D]``; ``key_mask`` bool ``[B, 1, 1, T]`` (True = attend) or None; ``pos_bias [H, T, T]`` or None."""
        b, t, d = x.shape
        q, k, v = (p(x).view(b, t, self.num_heads, self.head_dim).transpose(1, 2) for p in (self.q_proj, self.k_proj, self.v_proj))
        mask = key_mask
        if pos_bias is not None:
            bias = pos_bias[None].to(q.dtype)
            if self.gru_rel_pos:
                gates = torch.sigmoid(self.grep_linear(q).view(b, self.num_heads, t, 2, 4).sum(-1))  # [B, H, T, 2]
                gate_a, gate_b = gates[..., :1], gates[..., 1:]
                bias = (gate_a * (gate_b * self.grep_a - 1.0) + 2.0) * bias  # [B, H, T, T]
            if key_mask is not None:
                bias = bias.masked_fill(~key_mask, float("-inf"))
            mask = bias.expand(b, self.num_heads, t, t)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0)
        return self.out_proj(y.transpose(1, 2).reshape(b, t, d))
