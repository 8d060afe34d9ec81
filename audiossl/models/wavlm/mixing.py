"""WavLM's utterance mixing (Chen et al., 2022, Sec. III-B, "denoising masked speech modeling").

Per item, with probability ``prob``: a *secondary* signal (a random segment of another utterance of the
batch, or with probability ``noise_share`` Gaussian noise) of length uniform in ``[0, max_ratio · L]``
(``L`` = the item's valid samples; paper: up to 50 %, so the primary stays the main speaker) is added at
a random position inside the item, scaled so that the energy ratio primary / secondary is ``r`` dB with
``r ~ U[energy_db]`` (paper: [-5, 5]). The energies are mean powers: the primary's over its ``L`` valid
samples, the secondary's over the segment. The targets are not touched (they stay the primary's).

The paper's pretraining code is not public; the paper's settings are the defaults (``prob`` 0.2, up to
50 %, [-5, 5] dB); the paper draws noise from the DNS challenge set, here it is Gaussian and off by
default (``noise_share`` 0). Padding stays zero and is never used: the segment lands inside the item's
valid samples and is cut from inside the source's. A source shorter than the drawn length shortens the
segment. A batch of one has no other utterance: its item is mixed only when noise is drawn.

Everything is drawn with torch ops on ``wavs.device`` (from ``generator`` when given), vectorised over the
batch with one gather: no ``.item()``, no host sync, no Python loop over items.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class MixConfig:
    prob: float = 0.2
    """Probability per item of being mixed."""
    max_ratio: float = 0.5
    """Longest segment as a fraction of the primary's valid length."""
    noise_share: float = 0.0
    """Of the mixed items, the share that gets Gaussian noise instead of speech."""
    energy_db: tuple[float, float] = (-5.0, 5.0)
    """Range of the primary / secondary energy ratio in dB (uniform)."""


@dataclass
class MixResult:
    """The mixed batch and what was drawn (all ``[B]`` tensors on the device of the input)."""

    wavs: Tensor
    """``[B, S]`` mixed audio (same dtype as the input); unmixed items are bit-identical copies."""
    mixed: Tensor
    """bool: the item got a non-empty secondary segment."""
    noise: Tensor
    """bool: that secondary is Gaussian noise (else speech from ``source``)."""
    source: Tensor
    """long: the batch index the speech segment was cut from (meaningless where ``noise``)."""
    start: Tensor
    """long: first sample of the segment in the primary."""
    length: Tensor
    """long: segment length in samples (0 where not mixed)."""
    src_start: Tensor
    """long: first sample of the segment in the source."""
    ratio_db: Tensor
    """float: drawn energy ratio primary / secondary in dB."""


def mix_utterances(wavs: Tensor, lengths: Tensor | None, cfg: MixConfig = MixConfig(), *,
                   generator: torch.Generator | None = None) -> MixResult:
    """Utterance-mix ``wavs [B, S]`` (``lengths [B]`` valid samples, None = all valid); see module docstring.

    ``wavs`` is not modified. Seven ``[B]`` random draws are made in a fixed order (even for items that end
    up unmixed, so the draws never depend on the data), plus ``[B, S]`` Gaussian noise when ``noise_share > 0``.
    """
    if wavs.ndim != 2:
        raise ValueError(f"wavs must be [batch, samples], got shape {list(wavs.shape)}")
    b, s = wavs.shape
    dev = wavs.device
    lengths = torch.full((b,), s, dtype=torch.long, device=dev) if lengths is None else lengths.to(dev).long().clamp(0, s)

    def rand(*shape: int) -> Tensor:
        return torch.rand(*shape, device=dev, generator=generator)

    chosen = rand(b) < cfg.prob
    noise = rand(b) < cfg.noise_share
    if b < 2:
        chosen = chosen & noise  # no other utterance to take speech from
    idx = torch.arange(b, device=dev)
    source = (idx + 1 + (rand(b) * max(b - 1, 1)).long().clamp(max=max(b - 2, 0))) % b  # uniform over the others
    max_len = torch.floor(lengths.float() * cfg.max_ratio).long()
    length = (rand(b) * (max_len + 1).float()).long().clamp(max=max_len)  # uniform integer in [0, max_len]
    length = torch.where(noise, length, torch.minimum(length, lengths[source]))
    length = torch.where(chosen, length, torch.zeros_like(length))
    start = (rand(b) * (lengths - length + 1).float()).long().clamp(max=lengths - length)
    src_start = (rand(b) * (lengths[source] - length + 1).clamp(min=1).float()).long().clamp(min=0)
    src_start = torch.minimum(src_start, (lengths[source] - length).clamp(min=0))
    lo, hi = cfg.energy_db
    ratio_db = lo + rand(b) * (hi - lo)

    pos = torch.arange(s, device=dev)[None, :]
    inside = (pos >= start[:, None]) & (pos < (start + length)[:, None])  # [B, S]
    src_pos = (pos - start[:, None] + src_start[:, None]).clamp(0, s - 1)
    x = wavs.float()
    secondary = x[source].gather(1, src_pos)
    if cfg.noise_share > 0:
        gaussian = torch.randn(b, s, device=dev, generator=generator)
        secondary = torch.where(noise[:, None], gaussian, secondary)
    secondary = secondary * inside

    valid = pos < lengths[:, None]
    primary_energy = (x.pow(2) * valid).sum(1) / lengths.clamp(min=1)
    secondary_energy = secondary.pow(2).sum(1) / length.clamp(min=1)
    gain = torch.sqrt(primary_energy / (secondary_energy * 10.0 ** (ratio_db / 10.0)).clamp(min=1e-20))
    gain = torch.where(secondary_energy > 1e-12, gain, torch.zeros_like(gain))  # silent segment: nothing to add
    mixed = chosen & (length > 0)
    out = torch.where(mixed[:, None], x + gain[:, None] * secondary, x).to(wavs.dtype)
    return MixResult(out, mixed, noise & mixed, source, start, length, src_start, ratio_db)
