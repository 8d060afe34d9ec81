"""ALiBi attention biases of data2vec 2.0 (fairseq ``modalities/base.py`` ``get_alibi`` with
``use_alibi_encoder``, ``learned_alibi_scale_per_head``): head ``h`` adds ``-slope_h * scale_h * |i - j|``
to the attention logit of query frame ``i`` and key frame ``j``. ``i`` and ``j`` are positions in the
*unmasked* sequence, so a student that sees only the kept frames still gets their true distances
(fairseq ``masked_alibi``). One learned scale per head (initialised to 1, clamped at 0) is shared by
every layer.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


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
