"""The ``flex`` attention path of data2vec 2.0's ALiBi layers (the ``eager`` path is
:class:`audiossl.models.transformer.SelfAttention` with the dense mask of :mod:`~audiossl.models.data2vec2.alibi`).

:func:`alibi_flex_inputs` builds, once per stack, the ALiBi ``score_mod`` and the key-padding
:class:`BlockMask`; :func:`self_attention` runs one layer's :class:`SelfAttention` weights through
flex_attention with them (or through the module itself, eager). Compilation, ``auto`` resolution and
the CPU fallback are those of BEATs / WavLM (:mod:`audiossl.models.rel_pos`).
"""

from __future__ import annotations

import torch
from torch import Tensor

from audiossl.models import rel_pos
from audiossl.models.data2vec2.alibi import ScoreMod, alibi_score_mod
from audiossl.models.transformer import SelfAttention


class AlibiFlex:
    """What every layer of a flex stack shares: the ALiBi ``score_mod``, the key-padding ``block_mask`` (or
    None), and whether the ``score_mod`` captures a tensor that needs a gradient (the learned scales)."""

    __slots__ = ("score_mod", "block_mask", "needs_grad")

    def __init__(self, score_mod: ScoreMod, block_mask, needs_grad: bool) -> None:
        self.score_mod, self.block_mask, self.needs_grad = score_mod, block_mask, needs_grad


def alibi_flex_inputs(positions: Tensor | None, slopes: Tensor, scale: Tensor, padding_mask: Tensor | None) -> AlibiFlex:
    """``positions [B, K]`` (None: ``0 .. K-1``), ``slopes``/``scale [H]``, ``padding_mask [B, K]`` (True = padding;
    None = unpadded → no block mask at all)."""
    block_mask = None if padding_mask is None else rel_pos.key_keep_block_mask(~padding_mask)
    return AlibiFlex(alibi_score_mod(positions, slopes, scale), block_mask, scale.requires_grad)


def self_attention(attn: SelfAttention, x: Tensor, mask: Tensor | None, flex: AlibiFlex | None) -> Tensor:
    """``attn(x, mask)`` (eager SDPA), or with ``flex`` the same projections around flex_attention.

    ``x [B, T, D]`` → ``[B, T, D]``. flex has no attention dropout: the caller passes ``flex`` only when
    the layer's attention dropout is off (eval, or ``attention_dropout == 0``).
    """
    if flex is None:
        return attn(x, mask)
    b, t, _ = x.shape
    q, k, v = attn.qkv(x).view(b, t, 3, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4)
    needs_grad = torch.is_grad_enabled() and (q.requires_grad or flex.needs_grad)
    y = rel_pos.flex_attention_fn(x.device, needs_grad)(q, k, v, score_mod=flex.score_mod, block_mask=flex.block_mask)
    return attn.out_proj(y.transpose(1, 2).reshape(b, t, attn.dim))
