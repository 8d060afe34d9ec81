"""Per-utterance waveform normalisation (fairseq task ``normalize``, HF ``do_normalize``)."""

from __future__ import annotations

import torch


def normalize_waveform(wavs: torch.Tensor, lengths: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Zero mean / unit variance per utterance over its valid samples only (fairseq ``normalize``,
    HF ``do_normalize``); padding stays zero. ``[batch, sample]`` → ``[batch, sample]``."""
    mask = torch.arange(wavs.shape[1], device=wavs.device)[None, :] < lengths[:, None]
    n = lengths.clamp(min=1).to(wavs.dtype)[:, None]
    mean = (wavs * mask).sum(1, keepdim=True) / n
    var = (((wavs - mean) * mask) ** 2).sum(1, keepdim=True) / n
    return ((wavs - mean) / torch.sqrt(var + eps)) * mask
