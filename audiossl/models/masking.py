"""Span masking for masked prediction (fairseq ``compute_mask_indices``, ``mask_selection=static``),
computed on the device of ``lengths``, vectorised over the batch, with no host sync.

Per item with ``n`` valid frames: ``k = floor(mask_prob * n / mask_length + u)`` spans
(``u ~ U[0, 1)`` is probabilistic rounding, at least ``min_masks``), with start positions drawn
without replacement from ``[0, n - mask_length]`` so no span crosses into padding. Spans may
overlap, so the masked fraction is below ``mask_prob``: about ``1 - (1 - p/L)^L`` ≈ 0.57 for the
HuBERT default ``p = 0.8, L = 10`` (:func:`expected_mask_fraction`).

Differences from fairseq, on purpose: each item keeps its own mask count (fairseq's
``require_same_masks`` trims all rows to the smallest count, only needed by wav2vec 2.0's
negative sampling), and ``no_overlap`` / ``mask_min_space`` are not offered.
"""

from __future__ import annotations

import torch
from torch import Tensor


def compute_span_mask(
    lengths: Tensor,
    num_frames: int,
    mask_prob: float,
    mask_length: int,
    *,
    min_masks: int = 2,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Random span mask.

    Args:
        lengths: ``[batch]`` valid frames per item (integer tensor; its device is used).
        num_frames: padded frame count ``T``.
        mask_prob: fraction of frames chosen as span starts × ``mask_length`` (fairseq ``mask_prob``).
        mask_length: span length in frames (fairseq ``mask_length``).
        min_masks: minimum spans per non-empty item (fairseq HuBERT uses 2).
        generator: a ``torch.Generator`` on ``lengths.device`` for reproducible masks.
    Returns:
        ``[batch, T]`` bool, True = masked; never True at or past an item's length.
    """
    if mask_length < 1:
        raise ValueError(f"mask_length must be >= 1, got {mask_length}")
    if not 0.0 <= mask_prob <= 1.0:
        raise ValueError(f"mask_prob must be in [0, 1], got {mask_prob}")
    device = lengths.device
    batch = lengths.shape[0]
    lengths = lengths.clamp(max=num_frames)
    frames = torch.arange(num_frames, device=device)[None, :]
    if mask_prob == 0.0 or num_frames == 0:
        return torch.zeros(batch, num_frames, dtype=torch.bool, device=device)

    u = torch.rand(batch, device=device, generator=generator)
    num_spans = torch.floor(mask_prob * lengths.to(torch.float32) / mask_length + u).long()
    num_spans = num_spans.clamp(min=min_masks)
    # valid starts: 0 .. n - L (or just 0 when the item is shorter than one span)
    num_starts = (lengths - mask_length + 1).clamp(min=1) * (lengths > 0)
    num_spans = torch.minimum(num_spans, num_starts)

    scores = torch.rand(batch, num_frames, device=device, generator=generator)
    scores = scores.masked_fill(frames >= num_starts[:, None], 2.0)  # invalid starts sort last
    rank = scores.argsort(dim=1).argsort(dim=1)
    starts = (rank < num_spans[:, None]).to(torch.int32)

    # frame t is covered when a start lies in (t - L, t]: windowed sum through a cumulative sum
    csum = starts.cumsum(dim=1)
    shifted = torch.nn.functional.pad(csum, (mask_length, 0))[:, :num_frames]
    covered = (csum - shifted) > 0
    return covered & (frames < lengths[:, None])


def expected_mask_fraction(mask_prob: float, mask_length: int) -> float:
    """Approximate expected masked fraction of a long utterance (overlapping spans)."""
    start_rate = mask_prob / mask_length
    return 1.0 - (1.0 - start_rate) ** mask_length
