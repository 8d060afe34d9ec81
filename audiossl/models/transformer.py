"""Transformer encoder of wav2vec 2.0 / HuBERT (fairseq ``TransformerEncoder``), plain torch.

* :class:`ConvPositionalEmbedding`: grouped, weight-normed Conv1d + GELU added to the input
  (fairseq ``pos_conv``; an even kernel drops the last output frame, fairseq ``SamePad``).
* :class:`EncoderLayer`: self-attention + FFN, post-LN (Base) or pre-LN (Large/XLarge).
* :class:`TransformerEncoder`: pos conv → (LN if post-LN) → dropout → layers (→ LN if pre-LN),
  returning every layer's output. LayerDrop skips a layer by passing its input through, so the
  number of hidden states never changes.

Attention runs through ``F.scaled_dot_product_attention`` with a boolean key-padding mask
broadcast as ``[batch, 1, 1, key]`` (True = attend), or no mask at all for unpadded batches.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F


class ConvPositionalEmbedding(nn.Module):
    """Relative positional information from a wide grouped convolution.

    Args:
        dim: model width (fairseq ``encoder_embed_dim``).
        kernel: kernel size (fairseq ``conv_pos``, 128).
        groups: conv groups (fairseq ``conv_pos_groups``, 16).
    """

    def __init__(self, dim: int, kernel: int = 128, groups: int = 16):
        super().__init__()
        conv = nn.Conv1d(dim, dim, kernel, padding=kernel // 2, groups=groups)
        std = math.sqrt(4.0 / (kernel * dim))
        nn.init.normal_(conv.weight, mean=0.0, std=std)
        nn.init.zeros_(conv.bias)
        self.conv = nn.utils.parametrizations.weight_norm(conv, name="weight", dim=2)
        self.trim = 1 if kernel % 2 == 0 else 0

    def forward(self, x: Tensor) -> Tensor:
        """``x [batch, frame, dim]`` → positional embedding ``[batch, frame, dim]`` (not yet added)."""
        y = self.conv(x.transpose(1, 2))
        if self.trim:
            y = y[..., : -self.trim]
        return F.gelu(y).transpose(1, 2)


class SelfAttention(nn.Module):
    """Multi-head self-attention with a fused QKV projection and SDPA."""

    def __init__(self, dim: int, num_heads: int, dropout: float = 0.0):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"embed_dim {dim} is not divisible by num_heads {num_heads}")
        self.dim, self.num_heads, self.head_dim = dim, num_heads, dim // num_heads
        self.dropout = dropout
        self.qkv = nn.Linear(dim, 3 * dim)  # rows: [q; k; v]
        self.out_proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor, attn_mask: Tensor | None = None) -> Tensor:
        """``x [batch, frame, dim]``, ``attn_mask`` bool ``[batch, 1, 1, frame]`` (True = attend) or None."""
        b, t, _ = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=attn_mask, dropout_p=self.dropout if self.training else 0.0
        )
        return self.out_proj(y.transpose(1, 2).reshape(b, t, self.dim))


class FeedForward(nn.Module):
    """Linear → GELU → dropout → Linear. ``[batch, frame, dim]`` → same."""

    def __init__(self, dim: int, ffn_dim: int, activation_dropout: float = 0.0):
        super().__init__()
        self.fc1 = nn.Linear(dim, ffn_dim)
        self.fc2 = nn.Linear(ffn_dim, dim)
        self.activation_dropout = nn.Dropout(activation_dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.activation_dropout(F.gelu(self.fc1(x))))


class EncoderLayer(nn.Module):
    """One transformer block (fairseq ``TransformerSentenceEncoderLayer``).

    Post-LN (``layer_norm_first=False``): ``x = LN(x + drop(attn(x))); x = LN(x + drop(ffn(x)))``.
    Pre-LN: ``x = x + drop(attn(LN(x))); x = x + drop(ffn(LN(x)))``.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        ffn_dim: int,
        dropout: float = 0.1,
        attention_dropout: float = 0.1,
        activation_dropout: float = 0.0,
        layer_norm_first: bool = False,
    ):
        super().__init__()
        self.self_attn = SelfAttention(dim, num_heads, attention_dropout)
        self.self_attn_layer_norm = nn.LayerNorm(dim)
        self.ffn = FeedForward(dim, ffn_dim, activation_dropout)
        self.final_layer_norm = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)
        self.layer_norm_first = layer_norm_first

    def forward(self, x: Tensor, attn_mask: Tensor | None = None) -> Tensor:
        """``x [batch, frame, dim]`` → ``[batch, frame, dim]``."""
        if self.layer_norm_first:
            x = x + self.dropout(self.self_attn(self.self_attn_layer_norm(x), attn_mask))
            return x + self.dropout(self.ffn(self.final_layer_norm(x)))
        x = self.self_attn_layer_norm(x + self.dropout(self.self_attn(x, attn_mask)))
        return self.final_layer_norm(x + self.dropout(self.ffn(x)))


def layerdrop_keep(num_layers: int, p: float, generator: torch.Generator | None = None) -> list[bool]:
    """Which of ``num_layers`` layers run under LayerDrop probability ``p`` (all of them when ``p`` is 0).

    One draw for the whole stack on the host (a CPU tensor and ``tolist()``, never a device sync),
    from ``generator``, or from torch's global CPU generator when it is None.
    """
    if p <= 0:
        return [True] * num_layers
    return (torch.rand(num_layers, generator=generator, device="cpu") >= p).tolist()


def uses_layerdrop(model: nn.Module) -> bool:
    """True when a LayerDrop stack in ``model`` may skip layers in training (see :func:`layerdrop_keep`)."""
    return any(hasattr(m, "layerdrop_generator") and m.layerdrop > 0 for m in model.modules())


def seed_layerdrop(model: nn.Module, seed: int, step: int) -> None:
    """Make every LayerDrop stack in ``model`` draw from a CPU generator seeded with ``(seed, step)``.

    The pretraining unit calls this before each step. The drops are then a function of the run's
    seed and the step number only: a resumed run draws what the uninterrupted one drew, and every
    data-parallel rank skips the same layers without communicating (fairseq2 seeds the global
    generators with ``seed + rank``, so those would differ between ranks; DDP and FSDP need the
    same layers on every rank). Stacks never seeded draw from torch's global CPU generator.
    """
    state = int(np.random.SeedSequence([seed, step]).generate_state(1)[0])
    for m in model.modules():
        if hasattr(m, "layerdrop_generator"):
            if m.layerdrop_generator is None:
                m.layerdrop_generator = torch.Generator()
            m.layerdrop_generator.manual_seed(state)


class TransformerEncoder(nn.Module):
    """Positional conv + stack of :class:`EncoderLayer` returning all hidden states."""

    def __init__(
        self,
        dim: int,
        num_layers: int,
        num_heads: int,
        ffn_dim: int,
        *,
        pos_conv_kernel: int = 128,
        pos_conv_groups: int = 16,
        dropout: float = 0.1,
        attention_dropout: float = 0.1,
        activation_dropout: float = 0.0,
        layer_norm_first: bool = False,
        layerdrop: float = 0.0,
    ):
        super().__init__()
        self.pos_conv = ConvPositionalEmbedding(dim, pos_conv_kernel, pos_conv_groups)
        self.layer_norm = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)
        self.layers = nn.ModuleList(
            EncoderLayer(dim, num_heads, ffn_dim, dropout, attention_dropout, activation_dropout, layer_norm_first)
            for _ in range(num_layers)
        )
        self.layer_norm_first = layer_norm_first
        self.layerdrop = layerdrop
        self.layerdrop_generator: torch.Generator | None = None  # see seed_layerdrop

    def forward(
        self, x: Tensor, padding_mask: Tensor | None = None, num_layers: int | None = None
    ) -> list[Tensor]:
        """Run the stack.

        Args:
            x: ``[batch, frame, dim]`` projected (and possibly masked) features, padding zeroed.
            padding_mask: ``[batch, frame]`` bool, True = padding; None when nothing is padded.
            num_layers: stop after this many layers (default: all).
        Returns:
            ``num_layers + 1`` tensors ``[batch, frame, dim]``: [0] the input of the first layer
            (after pos conv, and LN for post-LN), [i] the output of layer i. For pre-LN models
            the final LayerNorm is applied to the last one when the whole stack runs (fairseq's
            encoder output and HF ``hidden_states[-1]``).
        """
        n = len(self.layers) if num_layers is None else num_layers
        if not 0 <= n <= len(self.layers):
            raise ValueError(f"num_layers must be in [0, {len(self.layers)}], got {n}")
        attn_mask = None
        if padding_mask is not None:
            # A row with no valid frame would make SDPA produce NaN; let it attend to everything
            # (its outputs are padding anyway).
            all_pad = padding_mask.all(dim=1, keepdim=True)
            attn_mask = (~(padding_mask & ~all_pad))[:, None, None, :]
        x = x + self.pos_conv(x)
        if not self.layer_norm_first:
            x = self.layer_norm(x)
        x = self.dropout(x)
        hidden = [x]
        keep = layerdrop_keep(len(self.layers), self.layerdrop if self.training else 0.0, self.layerdrop_generator)
        for layer, kept in zip(self.layers[:n], keep):
            if kept:
                x = layer(x, attn_mask)
            hidden.append(x)
        if self.layer_norm_first and n == len(self.layers):
            hidden[-1] = self.layer_norm(hidden[-1])
        return hidden
