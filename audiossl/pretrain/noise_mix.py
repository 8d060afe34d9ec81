"""MERT's in-batch noise mixture: add short segments of *other* clips of the batch to the input.

With probability ``prob`` per item, ``1..max_segments`` segments of ``min_seconds..max_seconds``
are cut from random other clips of the batch and added at random positions inside the item's
valid samples, each scaled to a random signal-to-noise ratio (``snr_db``) against the item's
own energy. The teachers never see the mixture: :class:`audiossl.models.mert.MertPretrainModel`
computes the CQT target from the clean crop before calling :func:`mix_in_batch_noise`, and the
RVQ codes come from the label files (made from clean audio), so the targets are clean by
construction.

Fully vectorised on the batch's device (``[batch, segment, sample]`` index arithmetic, one
gather), no ``.item()`` / host sync; every random draw comes from ``generator`` when given.
The SNR range is our choice (MERT's paper gives no value); 0–10 dB keeps the original clip
dominant.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class NoiseMixConfig:
    prob: float = 0.5
    """Probability that an item gets mixed (MERT: 0.5)."""
    min_segments: int = 1
    """Fewest segments added to a mixed item."""
    max_segments: int = 3
    """Most segments added to a mixed item (MERT: 1–3)."""
    min_seconds: float = 0.5
    """Shortest segment (MERT: 0.5 s); clipped to the shorter of the two clips."""
    max_seconds: float = 1.0
    """Longest segment (MERT: 1 s)."""
    snr_db: tuple[float, float] = (0.0, 10.0)
    """Range of the clean-to-segment energy ratio in dB, drawn uniformly per segment."""


def mix_in_batch_noise(
    wavs: Tensor,
    lengths: Tensor | None,
    sample_rate: int,
    cfg: NoiseMixConfig | None = None,
    *,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Mixed copy of ``wavs``; ``wavs`` itself is not modified.

    Args:
        wavs: ``[batch, sample]`` clean audio, zero padded.
        lengths: ``[batch]`` valid samples (None: all valid).
        sample_rate: rate of ``wavs`` (segment durations are in seconds).
        cfg: :class:`NoiseMixConfig` (default: MERT's settings).
        generator: ``torch.Generator`` on ``wavs.device`` for reproducible mixtures.
    Returns:
        ``[batch, sample]``; padding stays zero, unmixed items are unchanged.
    """
    cfg = cfg or NoiseMixConfig()
    b, s = wavs.shape
    if b < 2 or cfg.prob <= 0 or s == 0:
        return wavs.clone()
    dev, j = wavs.device, cfg.max_segments
    if lengths is None:
        lengths = torch.full((b,), s, dtype=torch.long, device=dev)
    lengths = lengths.to(dev).long()

    def rand(*shape: int) -> Tensor:
        return torch.rand(*shape, device=dev, generator=generator)

    mixed_item = rand(b) < cfg.prob
    n_seg = cfg.min_segments + (rand(b) * (cfg.max_segments - cfg.min_segments + 1)).long().clamp(max=j - cfg.min_segments)
    active = mixed_item[:, None] & (torch.arange(j, device=dev)[None, :] < n_seg[:, None])  # [b, j]
    # another clip of the batch: shift by 1..b-1 so it is never the item itself
    src = (torch.arange(b, device=dev)[:, None] + 1 + (rand(b, j) * (b - 1)).long().clamp(max=b - 2)) % b
    src_len = lengths[src]
    lo, hi = cfg.min_seconds * sample_rate, cfg.max_seconds * sample_rate
    seg = (lo + rand(b, j) * (hi - lo)).long()
    seg = torch.minimum(seg, torch.minimum(src_len, lengths[:, None])).clamp(min=0)
    dst_start = (rand(b, j) * (lengths[:, None] - seg + 1).float()).long()
    src_start = (rand(b, j) * (src_len - seg + 1).float()).long()

    pos = torch.arange(s, device=dev)[None, None, :]
    inside = (pos >= dst_start[..., None]) & (pos < (dst_start + seg)[..., None]) & active[..., None]  # [b, j, s]
    src_pos = (pos - dst_start[..., None] + src_start[..., None]).clamp(0, s - 1)
    noise = torch.gather(wavs[src], 2, src_pos) * inside  # [b, j, s]

    x = wavs.float()
    valid = torch.arange(s, device=dev)[None, :] < lengths[:, None]
    clean_energy = (x.pow(2) * valid).sum(1) / lengths.clamp(min=1)  # [b]
    seg_energy = noise.float().pow(2).sum(2) / seg.clamp(min=1)  # [b, j]
    snr = cfg.snr_db[0] + rand(b, j) * (cfg.snr_db[1] - cfg.snr_db[0])
    gain = torch.sqrt(clean_energy[:, None] / (seg_energy * 10.0 ** (snr / 10.0)).clamp(min=1e-10))
    gain = torch.where(seg_energy > 1e-10, gain, torch.zeros_like(gain))
    return (x + (noise.float() * gain[..., None]).sum(1)).to(wavs.dtype)
