"""MERT's in-batch noise mixture: add short segments of *other* clips of the batch to the input.

Reference (MERT fairseq fork, ``MERTModel.inbatch_noise_augment``): each item is mixed with
probability ``prob`` (MERT: ``rand > mixture_prob`` with 0.5); it gets ``1..3`` segments of
``12000..24000`` samples (0.5–1 s at 24 kHz; the 330M config: ``12000..36000``, 0.5–1.5 s), each cut at
a random start from the *pool* = the batch's other clips concatenated (so a segment may run across
two clips), and **added as is** (``inbatch_noise_augment_volume`` 1.0) at a random position of the
item. This is the default here (``snr_db=None``). Differences kept on purpose: segments are
clipped to the item's valid length and land inside it (MERT crops equal-length clips with no
padding; where a segment does not fit MERT silently skips the item), and padding stays zero.

``snr_db=(lo, hi)`` (not MERT, our earlier default) scales each segment to a random SNR against the
item's own energy, so a quiet clip is never drowned by a loud neighbour; there is no evidence yet
that it trains better, so it is an option only.

The teachers never see the mixture: :class:`audiossl.models.mert.model.MertPretrainModel` computes the
CQT target from the clean crop before calling :func:`mix_in_batch_noise`, and the RVQ codes come
from the label files (made from clean audio). Fully vectorised on the batch's device
(``[batch, segment, sample]`` index arithmetic, one gather), no ``.item()`` / host sync; every
random draw comes from ``generator`` when given.
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
    """Fewest segments added to a mixed item (MERT: 1)."""
    max_segments: int = 3
    """Most segments added to a mixed item (MERT: 3)."""
    min_seconds: float = 0.5
    """Shortest segment (MERT: 12000 samples at 24 kHz); clipped to the item's length."""
    max_seconds: float = 1.0
    """Longest segment (MERT 95M: 24000 samples = 1 s; 330M: 1.5 s)."""
    volume: float = 1.0
    """Gain on the raw segments when ``snr_db`` is None (MERT ``inbatch_noise_augment_volume``: 1.0)."""
    snr_db: tuple[float, float] | None = None
    """None (MERT): add segments at ``volume``. ``(lo, hi)``: scale each to an SNR drawn in that range (dB)."""


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
    lo, hi = round(cfg.min_seconds * sample_rate), round(cfg.max_seconds * sample_rate)
    seg = lo + (rand(b, j) * (hi - lo + 1)).long().clamp(max=hi - lo)  # whole samples in [lo, hi], as randint
    seg = torch.minimum(seg, lengths[:, None]).clamp(min=0)
    dst_start = (rand(b, j) * (lengths[:, None] - seg + 1).float()).long()
    # the pool: the other b - 1 rows concatenated; a start leaves room for the longest segment (MERT)
    pool_len = (b - 1) * s
    src_start = (rand(b, j) * max(pool_len - hi + 1, 1)).long()

    pos = torch.arange(s, device=dev)[None, None, :]
    inside = (pos >= dst_start[..., None]) & (pos < (dst_start + seg)[..., None]) & active[..., None]  # [b, j, s]
    q = pos - dst_start[..., None] + src_start[..., None]  # position in item i's pool
    inside = inside & (q < pool_len)
    q = q.clamp(0, pool_len - 1)
    row = q // s
    row = row + (row >= torch.arange(b, device=dev)[:, None, None]).long()  # skip the item itself
    flat = (row * s + q % s).view(b, -1)
    noise = torch.gather(wavs.reshape(1, -1).expand(b, -1), 1, flat).view(b, j, s) * inside  # [b, j, s]

    x = wavs.float()
    if cfg.snr_db is None:
        return (x + cfg.volume * noise.float().sum(1)).to(wavs.dtype)
    valid = torch.arange(s, device=dev)[None, :] < lengths[:, None]
    clean_energy = (x.pow(2) * valid).sum(1) / lengths.clamp(min=1)  # [b]
    seg_energy = noise.float().pow(2).sum(2) / seg.clamp(min=1)  # [b, j]
    snr = cfg.snr_db[0] + rand(b, j) * (cfg.snr_db[1] - cfg.snr_db[0])
    gain = torch.sqrt(clean_energy[:, None] / (seg_energy * 10.0 ** (snr / 10.0)).clamp(min=1e-10))
    gain = torch.where(seg_energy > 1e-10, gain, torch.zeros_like(gain))
    return (x + (noise.float() * gain[..., None]).sum(1)).to(wavs.dtype)
