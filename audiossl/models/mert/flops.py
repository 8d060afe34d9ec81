"""Analytic training FLOPs of MERT (counted like :mod:`audiossl.models.hubert.flops`: 2 × MACs of matmuls and
convolutions; a step is 3 × forward for the trained parts).

The encoder is HuBERT's (:func:`audiossl.models.hubert.flops.forward_flops` without its head); MERT adds the
cosine heads (``final_proj`` + label-embedding similarities), the CQT regression head, and the CQT
teacher (forward only, no gradient: polyphase FFT correlations per bin group, :class:`audiossl.audio.cqt_torch.TorchCQT`).
"""

from __future__ import annotations

from audiossl.models.conv_frontend import conv_output_length
from audiossl.models.hubert.flops import forward_flops as encoder_forward_flops
from audiossl.models.mert.model import MertConfig, build_cqt

DEFAULT_CROP_SAMPLES = 120_000  # 5 s at 24 kHz, MERT's crop


def cqt_flops(cfg: MertConfig, num_samples: int, num_frames: int, method: str = "fft") -> int:
    """FLOPs of the CQT teacher on one utterance (``num_frames`` output frames), computed as ``method``
    computes it (:meth:`audiossl.audio.cqt_torch.TorchCQT.flops`; the model's teacher uses ``fft``)."""
    cqt = build_cqt(cfg)
    cqt.method = method
    return cqt.flops(num_frames)


def head_flops(cfg: MertConfig, num_frames: int) -> int:
    """FLOPs of the cosine heads (``final_proj`` + similarities with every label embedding) and the CQT head."""
    proj = cfg.embed_dim * cfg.num_codebooks * cfg.final_dim
    sims = cfg.num_codebooks * cfg.num_classes * cfg.final_dim
    return 2 * num_frames * (proj + sims + cfg.embed_dim * cfg.cqt_bins)


def forward_flops(cfg: MertConfig, num_samples: int) -> int:
    """Forward FLOPs of one utterance: encoder + heads + CQT teacher (0 below the receptive field)."""
    t = conv_output_length(num_samples, cfg.conv_layers)
    if t == 0:
        return 0
    return encoder_forward_flops(cfg, num_samples, include_head=False) + head_flops(cfg, t) + cqt_flops(cfg, num_samples, t)  # type: ignore[arg-type]


def train_flops(cfg: MertConfig, num_samples: int) -> int:
    """One training step on one utterance: 3 × (encoder + heads) + 1 × CQT (no backward through it)."""
    t = conv_output_length(num_samples, cfg.conv_layers)
    if t == 0:
        return 0
    cqt = cqt_flops(cfg, num_samples, t)
    return 3 * (forward_flops(cfg, num_samples) - cqt) + cqt


def mert_train_flops_per_second(cfg: MertConfig, crop_samples: int = DEFAULT_CROP_SAMPLES) -> float:
    """Training FLOPs per second of audio for utterances of ``crop_samples`` samples."""
    return train_flops(cfg, crop_samples) / (crop_samples / cfg.sample_rate)
