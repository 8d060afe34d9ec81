"""Block masking of data2vec 2.0 with the same number of hidden frames in every row, decided on the host.

fairseq (``modalities/base.py`` ``compute_mask``) draws span masks (``compute_mask_indices`` with
``mask_prob``, ``mask_length``, ``min_masks=1``; with ``inverse_mask`` the spans are the frames *kept*)
and then forces every row to the same masked count (``require_same_masks``) so the student can gather
the kept frames into one ``[rows, kept, dim]`` tensor. Reading that count back to size the gather is a
host sync. Here the count ``m`` of frames removed from each row is fixed on the host from the padded
length ``T`` and the scheme's expected masked share (:func:`masked_share`), and each row is adjusted on
the device:

1. span mask within the row's valid frames (:func:`audiossl.models.masking.compute_span_mask`);
2. the row's masked count is set to ``round(share * n)`` for ``n`` valid frames, dropping random
   masked frames or adding random unmasked ones (fairseq ``require_same_masks`` / ``add_masks``);
3. the ``m`` removed positions are those masked frames plus, for a padded row, enough of its padding.

So masks never leave an item's real frames, every row's masked share is the scheme's expected share,
and ``m`` needs no device read. Shapes: ``R`` rows (batch × copies), ``T`` frames, ``K = T - m`` kept.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from audiossl.models.masking import compute_span_mask, expected_mask_fraction


def masked_share(mask_prob: float, mask_length: int, inverse: bool) -> float:
    """Expected masked fraction of a long row under fairseq's span scheme (spans overlap).

    Plain: ``1 - (1 - p/L)^L`` (0.41 for ``p=0.5, L=5``). Inverse (the spans are kept):
    ``(1 - (1-p)/L)^L`` (0.59 for ``p=0.5, L=5``).
    """
    if inverse:
        return 1.0 - expected_mask_fraction(1.0 - mask_prob, mask_length)
    return expected_mask_fraction(mask_prob, mask_length)


def num_removed(num_frames: int, share: float) -> int:
    """Frames removed from every row of ``num_frames`` (at least one frame is kept)."""
    return max(0, min(num_frames - 1, int(round(share * num_frames))))


@dataclass
class BlockMask:
    """One masking of ``R`` rows of ``T`` frames."""

    masked: Tensor
    """``[R, T]`` bool: valid frames hidden from the student and predicted (the loss positions)."""
    removed: Tensor
    """``[R, T]`` bool: frames the student does not see (``masked`` plus filler padding), ``m`` per row."""
    ids_keep: Tensor
    """``[R, K]`` long: the kept frames in time order."""
    ids_restore: Tensor
    """``[R, T]`` long: index into ``cat([kept (K), removed (m)])`` that restores time order."""


def compute_block_mask(
    lengths: Tensor,
    num_frames: int,
    mask_prob: float,
    mask_length: int,
    *,
    inverse: bool = False,
    generator: torch.Generator | None = None,
) -> BlockMask:
    """Block mask with ``m = num_removed(T, masked_share(...))`` removed frames per row.

    Args:
        lengths: ``[R]`` valid frames per row (its device is used).
        num_frames: padded frame count ``T``.
        mask_prob, mask_length, inverse: fairseq ``mask_prob``, ``mask_length``, ``inverse_mask``.
        generator: a ``torch.Generator`` on ``lengths.device``.
    """
    device = lengths.device
    rows, t = lengths.shape[0], num_frames
    share = masked_share(mask_prob, mask_length, inverse)
    m = num_removed(t, share)
    n = lengths.clamp(min=0, max=t)
    frames = torch.arange(t, device=device)[None, :]
    valid = frames < n[:, None]
    span_prob = 1.0 - mask_prob if inverse else mask_prob
    span = compute_span_mask(n, t, span_prob, mask_length, min_masks=1, generator=generator)
    if inverse:
        span = ~span & valid
    # 2. exactly `target` masked valid frames: random span frames first, then random other valid frames
    target = torch.round(share * n.to(torch.float32)).long()
    target = torch.minimum(torch.maximum(target, m - (t - n)), torch.minimum(n, torch.full_like(n, m)))
    u = torch.rand(rows, t, device=device, generator=generator)
    key = torch.where(span, u, torch.where(valid, 1.0 + u, 3.0))
    rank = key.argsort(dim=1, stable=True).argsort(dim=1, stable=True)
    masked = (rank < target[:, None]) & valid
    # 3. removed = masked + leading padding filler; kept = the rest, in time order
    pos = frames.to(torch.float32) / max(t, 1)
    key2 = torch.where(masked, pos, torch.where(valid, 2.0 + pos, 1.0 + pos))
    order = key2.argsort(dim=1, stable=True)
    ids_removed = order[:, :m]
    ids_keep = order[:, m:].sort(dim=1).values
    ids_restore = torch.cat([ids_keep, ids_removed], dim=1).argsort(dim=1, stable=True)
    removed = torch.zeros(rows, t, dtype=torch.bool, device=device).scatter(1, ids_removed, True)
    return BlockMask(masked=masked, removed=removed, ids_keep=ids_keep, ids_restore=ids_restore)
