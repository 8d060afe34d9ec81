"""Analytic training FLOPs of WavLM (counted like :mod:`audiossl.models.hubert.flops`: 2 × MACs of matmuls
and convolutions; a step is 3 × forward).

WavLM is HuBERT (:func:`audiossl.models.hubert.flops.forward_flops`, head included) plus, per layer, the
relative-bias gate ``grep_linear`` (``head_dim → 8`` for every head and frame: ``2 · T · D · 8``). The
bucket lookup, the gate × bias product and the utterance mixing are elementwise or gathers: not counted.
"""

from __future__ import annotations

from audiossl.models.conv_frontend import conv_output_length
from audiossl.models.flops import DEFAULT_CROP_SAMPLES
from audiossl.models.hubert.flops import forward_flops as hubert_forward_flops
from audiossl.models.wavlm.model import WavlmConfig


def forward_flops(cfg: WavlmConfig, num_samples: int, *, include_head: bool = True) -> int:
    """Forward FLOPs of one unpadded utterance of ``num_samples`` samples (0 below the receptive field)."""
    t = conv_output_length(num_samples, cfg.conv_layers)
    if t == 0:
        return 0
    gate = 2 * t * cfg.embed_dim * 8 * cfg.num_layers if cfg.gru_rel_pos else 0
    return hubert_forward_flops(cfg, num_samples, include_head=include_head) + gate


def train_flops(cfg: WavlmConfig, num_samples: int) -> int:
    """FLOPs of one training step (forward + backward ≈ 3 × forward) on one utterance."""
    return 3 * forward_flops(cfg, num_samples)


def wavlm_train_flops_per_second(cfg: WavlmConfig, crop_samples: int = DEFAULT_CROP_SAMPLES) -> float:
    """Training FLOPs per second of audio for utterances of ``crop_samples`` samples (default 10 s)."""
    return train_flops(cfg, crop_samples) / (crop_samples / cfg.sample_rate)
