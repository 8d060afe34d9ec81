"""Bucketed relative position bias and the gated self-attention that uses it (BEATs / WavLM style).

Two implementations of the same attention (``attention_impl`` of :class:`~audiossl.models.beats.model.BeatsConfig`):

* ``eager``: the bias is materialised as a float ``[B, H, T, T]`` ``attn_mask`` of SDPA (CPU, debugging;
  no flash kernel can take it).
* ``flex``: :func:`torch.nn.attention.flex_attention` (compiled) with a ``score_mod`` that reads the
  bias from a ``[H, 2T - 1]`` table indexed by ``key - query`` and the ``[B, H, T]`` gate, so nothing
  quadratic in ``T`` is ever stored; key padding is a :class:`BlockMask` built from the item lengths
  (fully padded blocks are skipped; :func:`key_keep_block_mask`), and an unpadded batch passes no mask at all.

``auto`` (the default) resolves per call from the device of the input: ``flex`` on CUDA, ``eager``
elsewhere (compiled flex on CPU costs ~30 s of compilation per shape family). flex has no attention
dropout: a layer with ``attention_dropout > 0`` in training runs ``eager``.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor, nn
from torch.nn import functional as F

ATTENTION_IMPLS = ("auto", "eager", "flex")

_FLEX: Callable | None = None
FLEX_COMPILE = True
"""Run flex_attention compiled (its fused kernel). Tests set this False to check the ``score_mod``
maths with flex's unfused eager fallback, which needs no C++ compile."""


def flex_attention_fn(device: torch.device | None = None, needs_grad: bool = False) -> Callable:
    """``torch.compile(flex_attention)`` built once per process (or the eager op, see :data:`FLEX_COMPILE`).

    On CPU the compiled kernel (torch 2.9 inductor C++ template) is forward-only: it returns no
    logsumexp, so a CPU call that needs gradients runs flex's unfused eager fallback instead.
    """
    global _FLEX
    from torch.nn.attention.flex_attention import flex_attention  # lazy: flex_attention pulls in inductor pieces; only the flex path needs it

    if not FLEX_COMPILE or (needs_grad and device is not None and device.type == "cpu"):
        return flex_attention
    if _FLEX is None:
        _FLEX = torch.compile(flex_attention)  # default dynamic: one recompile, then symbolic T and B
    return _FLEX


def resolve_impl(impl: str, device: torch.device) -> str:
    """``auto`` → ``flex`` on CUDA, ``eager`` otherwise; other values unchanged (host-side, no sync)."""
    if impl not in ATTENTION_IMPLS:
        raise ValueError(f"attention_impl must be one of {ATTENTION_IMPLS}, got {impl!r}")
    if impl == "auto":
        return "flex" if device.type == "cuda" else "eager"
    return impl


def relative_bias_by_distance(table: nn.Embedding, t: int, num_buckets: int, max_distance: int) -> Tensor:
    """``[H, 2t - 1]`` bias of each relative distance ``key - query`` in ``-(t-1) .. t-1`` (column
    ``t - 1`` is distance 0), from the bucket ``table`` ``[num_buckets, H]``: O(H·T), not O(H·T²)."""
    rel = torch.arange(-(t - 1), t, device=table.weight.device)
    return table(relative_position_bucket(rel, num_buckets, max_distance)).t().contiguous()


def key_keep_block_mask(keep: Tensor, block: int = 128):
    """:class:`BlockMask` letting every query of item ``b`` see the keys ``kv`` with ``keep[b, kv]``.

    ``keep``: ``[B, T]`` bool, any pattern (after the student's ``ids_keep`` gather the padding need
    not be a suffix). Built from per-block counts (``[B, T / block]``; no ``[B, T, T]`` tensor, no host
    sync): blocks with every key kept are "full" (no mask_mod evaluated), blocks with some kept are
    partial, blocks with none are skipped. A row with no kept key attends everywhere (as the eager
    path: finite outputs, which are padding anyway).
    """
    from torch.nn.attention.flex_attention import BlockMask  # lazy: flex_attention pulls in inductor pieces; only the flex path needs it

    b, t = keep.shape
    n = -(-t // block)
    keep = keep | ~keep.any(dim=1, keepdim=True)
    padded = F.pad(keep, (0, n * block - t), value=False)  # [B, n·block]: the mask_mod never reads past T
    count = padded.view(b, n, block).sum(-1)  # [B, n]
    full = count == block
    partial = (count > 0) & ~full

    def first(sel: Tensor) -> tuple[Tensor, Tensor]:
        """``[B, 1, n]`` block counts and ``[B, 1, n, n]`` indices (selected blocks first), the same for every query block."""
        num = sel.sum(1, dtype=torch.int32)
        idx = torch.argsort((~sel).to(torch.int32), dim=1, stable=True).to(torch.int32)
        return num[:, None, None].expand(b, 1, n).contiguous(), idx[:, None, None, :].expand(b, 1, n, n).contiguous()

    def mask_mod(bi: Tensor, h: Tensor, q: Tensor, kv: Tensor) -> Tensor:
        return padded[bi, kv]

    part_num, part_idx = first(partial)
    full_num, full_idx = first(full)
    return BlockMask.from_kv_blocks(part_num, part_idx, full_num, full_idx, BLOCK_SIZE=block, mask_mod=mask_mod, seq_lengths=(t, t))


def key_padding_block_mask(key_lengths: Tensor, t: int, block: int = 128):
    """:class:`BlockMask` letting query ``i`` of item ``b`` see keys ``< key_lengths[b]`` (right padding):
    :func:`key_keep_block_mask` of the lengths' keep pattern. An item of length 0 attends everywhere."""
    keep = torch.arange(t, device=key_lengths.device)[None, :] < key_lengths[:, None]
    return key_keep_block_mask(keep, block)


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


class FlexInputs:
    """What the ``flex`` path of :class:`BeatsAttention` needs, shared by all layers of a stack.

    ``bias_rel``: ``[H, 2T - 1]`` bias by relative distance (:func:`relative_bias_by_distance`);
    ``block_mask``: key padding (:func:`key_keep_block_mask`) or None for an unpadded batch.
    """

    __slots__ = ("bias_rel", "block_mask")

    def __init__(self, bias_rel: Tensor, block_mask) -> None:
        self.bias_rel, self.block_mask = bias_rel, block_mask

    def dense(self, t: int) -> Tensor:
        """``[H, T, T]`` bias (what the eager path takes): ``bias[h, i, j] = bias_rel[h, j - i + T - 1]``."""
        pos = torch.arange(t, device=self.bias_rel.device)
        return self.bias_rel[:, pos[None, :] - pos[:, None] + (t - 1)]


def key_mask_from_padding(padding_mask: Tensor | None) -> Tensor | None:
    """``[B, T]`` True = padding → ``[B, 1, 1, T]`` True = attend (all-padding rows attend everywhere: no NaN)."""
    if padding_mask is None:
        return None
    all_pad = padding_mask.all(dim=1, keepdim=True)
    return (~(padding_mask & ~all_pad))[:, None, None, :]


def dense_position_bias(table: nn.Embedding, t: int, num_buckets: int, max_distance: int) -> Tensor:
    """``[H, T, T]`` bias ``table[bucket(key - query)]`` (the eager path's input)."""
    pos = torch.arange(t, device=table.weight.device)
    buckets = relative_position_bucket(pos[None, :] - pos[:, None], num_buckets, max_distance)
    return table(buckets).permute(2, 0, 1).contiguous()  # SDPA wants stride 1 last


def attention_inputs(table: nn.Embedding | None, num_buckets: int, max_distance: int, impl: str,
                     padding_mask: Tensor | None, t: int, device: torch.device):
    """``(key_mask, pos_bias, flex)`` for a stack sharing one bucket ``table`` (None: no relative bias):
    the eager inputs (``[B, 1, 1, T]`` mask, ``[H, T, T]`` bias), or :class:`FlexInputs` (then ``pos_bias``
    is None: no ``[H, T, T]`` tensor). ``padding_mask`` None (unpadded) → no mask at all."""
    key_mask = key_mask_from_padding(padding_mask)
    if table is None:
        return key_mask, None, None
    if resolve_impl(impl, device) == "flex":
        bias_rel = relative_bias_by_distance(table, t, num_buckets, max_distance)
        block_mask = None if padding_mask is None else key_keep_block_mask(~padding_mask)
        return key_mask, None, FlexInputs(bias_rel, block_mask)
    return key_mask, dense_position_bias(table, t, num_buckets, max_distance), None


class BeatsAttention(nn.Module):
    """Self-attention with separate q/k/v projections (unilm key names) and the WavLM gated bias.

    With a relative bias the scores are ``q·k/√d + g(q) * bias[h, i, j]`` where the gate
    ``g = a * (b * grep_a - 1) + 2`` comes from ``sigmoid(grep_linear(q))`` per query and head.
    Eager path: that bias is a dense float ``[B, H, T, T]`` attn_mask, so SDPA cannot use its flash
    kernel; without a bias the mask is a boolean key-padding mask (or None) and flash stays available.
    flex path (``flex`` given): the same scores from a ``score_mod`` over ``[H, 2T-1]`` and ``[B, H, T]``.
    """

    def __init__(self, dim: int, num_heads: int, dropout: float, *, has_bias_table: bool, num_buckets: int, gru_rel_pos: bool,
                 gate_from_input: bool = False):
        super().__init__()
        self.gate_from_input = gate_from_input  # WavLM: the gate reads the layer input x per head, BEATs the projected q
        self.num_heads, self.head_dim, self.dropout = num_heads, dim // num_heads, dropout
        self.k_proj, self.v_proj, self.q_proj = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)
        if has_bias_table:
            self.relative_attention_bias = nn.Embedding(num_buckets, num_heads)
        self.gru_rel_pos = gru_rel_pos
        if gru_rel_pos:
            self.grep_linear = nn.Linear(self.head_dim, 8)
            self.grep_a = nn.Parameter(torch.ones(1, num_heads, 1, 1))

    def _gate(self, q: Tensor) -> Tensor:
        """``q [B, H, T, d]`` (or the input split into heads, ``gate_from_input``) → gate ``[B, H, T, 1]``."""
        b, _, t, _ = q.shape
        gates = torch.sigmoid(self.grep_linear(q).view(b, self.num_heads, t, 2, 4).sum(-1))  # [B, H, T, 2]
        gate_a, gate_b = gates[..., :1], gates[..., 1:]
        return gate_a * (gate_b * self.grep_a - 1.0) + 2.0

    def forward(self, x: Tensor, key_mask: Tensor | None, pos_bias: Tensor | None, flex: FlexInputs | None = None) -> Tensor:
        """``x [B, T, D]``; ``key_mask`` bool ``[B, 1, 1, T]`` (True = attend) or None; ``pos_bias [H, T, T]``
        or None; ``flex``: run the flex path instead (``pos_bias`` unused)."""
        b, t, d = x.shape
        q, k, v = (p(x).view(b, t, self.num_heads, self.head_dim).transpose(1, 2) for p in (self.q_proj, self.k_proj, self.v_proj))
        gate_src = x.view(b, t, self.num_heads, self.head_dim).transpose(1, 2) if self.gate_from_input else q
        dropout = self.dropout if self.training else 0.0
        if flex is not None and dropout > 0:
            pos_bias = flex.dense(t)  # flex has no attention dropout
            flex = None
        if flex is not None:
            y = self._flex(q, k, v, flex, gate_src)
            return self.out_proj(y.transpose(1, 2).reshape(b, t, d))
        mask = key_mask
        if pos_bias is not None:
            bias = pos_bias[None].to(q.dtype)
            if self.gru_rel_pos:
                bias = self._gate(gate_src) * bias  # [B, H, T, T]
            if key_mask is not None:
                bias = bias.masked_fill(~key_mask, float("-inf"))
            mask = bias.expand(b, self.num_heads, t, t)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout)
        return self.out_proj(y.transpose(1, 2).reshape(b, t, d))

    def _flex(self, q: Tensor, k: Tensor, v: Tensor, flex: FlexInputs, gate_src: Tensor) -> Tensor:
        bias_rel = flex.bias_rel.to(q.dtype)  # [H, 2T-1]
        if self.gru_rel_pos:
            gate = self._gate(gate_src)[..., 0]  # [B, H, T]

            def score_mod(score: Tensor, b: Tensor, h: Tensor, qi: Tensor, kv: Tensor) -> Tensor:
                return score + gate[b, h, qi] * bias_rel[h, kv - qi + (bias_rel.shape[1] - 1) // 2]
        else:

            def score_mod(score: Tensor, b: Tensor, h: Tensor, qi: Tensor, kv: Tensor) -> Tensor:
                return score + bias_rel[h, kv - qi + (bias_rel.shape[1] - 1) // 2]

        needs_grad = torch.is_grad_enabled() and (q.requires_grad or bias_rel.requires_grad)
        return flex_attention_fn(q.device, needs_grad)(q, k, v, score_mod=score_mod, block_mask=flex.block_mask)
