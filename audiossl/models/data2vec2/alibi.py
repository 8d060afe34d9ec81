"""ALiBi attention biases of data2vec 2.0 (fairseq ``modalities/base.py`` ``get_alibi`` with
``use_alibi_encoder``, ``learned_alibi_scale_per_head``): head ``h`` adds ``-slope_h * scale_h * |i - j|``
to the attention logit of query frame ``i`` and key frame ``j``. ``i`` and ``j`` are positions in the
*unmasked* sequence, so a student that sees only the kept frames still gets their true distances
(fairseq ``masked_alibi``). One learned scale per head (initialised to 1, clamped at 0) is shared by
every layer.

Two paths build the same bias (``attention_impl`` of :class:`~audiossl.models.data2vec2.model.Data2Vec2Config`):

* ``eager`` (CPU default, debugging): :func:`alibi_bias` materialises a float ``[B, H, T, T]`` tensor and
  :func:`attention_bias` folds key padding into it; it is the SDPA ``attn_mask`` of every layer (no
  flash kernel can take it).
* ``flex`` (``auto`` on CUDA): :func:`alibi_score_mod` adds the bias inside
  :func:`torch.nn.attention.flex_attention` from ``[H]`` per-head factors and ``[B, K]`` positions, so
  nothing quadratic in ``T`` is stored; key padding is a block mask
  (:func:`audiossl.models.rel_pos.key_keep_block_mask`), none for an unpadded batch.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor

ScoreMod = Callable[[Tensor, Tensor, Tensor, Tensor, Tensor], Tensor]


def alibi_slopes(num_heads: int) -> list[float]:
    """The ALiBi slopes of Press et al. (geometric from ``2^(-8/n)``; non-powers of two interleave)."""

    def power_of_2(n: int) -> list[float]:
        start = 2 ** (-(2 ** -(math.log2(n) - 3)))
        return [start * start**i for i in range(n)]

    if math.log2(num_heads).is_integer():
        return power_of_2(num_heads)
    closest = 2 ** math.floor(math.log2(num_heads))
    return power_of_2(closest) + alibi_slopes(2 * closest)[0::2][: num_heads - closest]


def alibi_bias(positions: Tensor, slopes: Tensor, scale: Tensor) -> Tensor:
    """Additive attention bias.

    Args:
        positions: ``[batch, frame]`` positions of the frames in the full sequence (any int/float dtype).
        slopes: ``[heads]`` fixed slopes (:func:`alibi_slopes`).
        scale: ``[heads]`` learned scales (clamped at 0 here, fairseq ``alibi_scale.clamp_min(0)``).
    Returns:
        ``[batch, heads, frame, frame]`` float32 bias (0 on the diagonal, negative elsewhere).
    """
    p = positions.to(torch.float32)
    dist = (p[:, :, None] - p[:, None, :]).abs()
    per_head = (slopes.to(torch.float32) * scale.to(torch.float32).clamp_min(0))[None, :, None, None]
    return -dist[:, None] * per_head


def alibi_score_mod(positions: Tensor | None, slopes: Tensor, scale: Tensor) -> ScoreMod:
    """The :func:`alibi_bias` of one logit as a flex_attention ``score_mod`` (no ``[B, H, T, T]`` tensor).

    ``positions``: ``[B, K]`` positions of the frames in the full sequence (the student's ``ids_keep``),
    or None for frames at ``0 .. T-1`` (the distance is then ``|q - kv|`` and no position is read).
    ``slopes``, ``scale``: ``[H]``; the gradient reaches ``scale`` through the captured per-head factor.
    """
    per_head = slopes.to(torch.float32) * scale.to(torch.float32).clamp_min(0)  # [H]
    if positions is None:

        def score_mod(score: Tensor, b: Tensor, h: Tensor, q: Tensor, kv: Tensor) -> Tensor:
            return score - per_head[h] * (q - kv).abs().to(torch.float32)

        return score_mod
    pos = positions.to(torch.float32)

    def score_mod_at(score: Tensor, b: Tensor, h: Tensor, q: Tensor, kv: Tensor) -> Tensor:
        return score - per_head[h] * (pos[b, q] - pos[b, kv]).abs()

    return score_mod_at


def attention_bias(bias: Tensor | None, padding_mask: Tensor | None, dtype: torch.dtype) -> Tensor | None:
    """ALiBi bias and key padding as one SDPA mask.

    ``bias [B, H, T, T]`` or None; ``padding_mask [B, T]`` (True = padding) or None. Returns None (no
    mask), a bool ``[B, 1, 1, T]`` (True = attend) without ALiBi, or a float ``[B, H, T, T]`` in
    ``dtype`` with ``-inf`` at padded keys. A row of all padding attends everywhere (no NaN; its
    outputs are padding anyway).
    """
    keep = None
    if padding_mask is not None:
        all_pad = padding_mask.all(dim=1, keepdim=True)
        keep = ~(padding_mask & ~all_pad)
    if bias is None:
        return None if keep is None else keep[:, None, None, :]
    bias = bias.to(dtype)
    if keep is not None:
        bias = bias.masked_fill(~keep[:, None, None, :], float("-inf"))
    return bias
