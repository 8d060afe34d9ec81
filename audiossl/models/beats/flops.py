"""Analytic FLOP count of BEATs (nanoGPT ``estimate_mfu`` style), the MFU input of ``audiossl pretrain``.

Counted (FLOPs = 2 × multiply-accumulates; matmuls and convolutions only, as
``torch.utils.flop_counter.FlopCounterMode`` counts them): the fbank's mel projection (the FFT is
not a matmul and is left out, as FlopCounterMode does), the 16 × 16 patch embedding, the
projection, the positional conv, per layer the q/k/v/out projections, the relative-bias gate
(``grep_linear``), ``QK^T`` and ``AV`` and the FFN; in pretraining the encoder sees only the kept
patches (``K = round(0.25 P)``) and the predictor sees all ``P`` patches, then the class head.

A training step is taken as 3 × the forward of the trained parts (backward ≈ 2 × forward) plus
one fbank (computed without gradient).
"""

from __future__ import annotations

from audiossl.models.beats.model import BeatsConfig
from audiossl.models.patch_frontend import NUM_MEL_BINS, num_fbank_frames

DEFAULT_CROP_SAMPLES = 160_000  # 10 s at 16 kHz (AudioSet clips are 10 s)
_FFT_BINS = 257  # torchaudio kaldi fbank: 400-sample window padded to 512 → 257 bins


def fbank_flops(num_samples: int) -> int:
    """The mel projection of the Kaldi fbank: ``[frames, 257] @ [257, 128]``."""
    return 2 * num_fbank_frames(num_samples) * _FFT_BINS * NUM_MEL_BINS


def _layers_flops(cfg: BeatsConfig, t: int, d: int, ffn: int, num_layers: int) -> int:
    per_layer = 2 * t * d * 4 * d + 2 * 2 * t * d * ffn + 2 * 2 * t * t * d  # q, k, v, out; FFN; QK^T, AV
    if cfg.relative_position_embedding and cfg.gru_rel_pos:
        per_layer += 2 * t * d * 8  # grep_linear: head_dim → 8 for every head
    return num_layers * per_layer


def encoder_flops(cfg: BeatsConfig, num_patches: int, num_encoded: int | None = None) -> int:
    """Patch embedding over ``num_patches`` patches + projection and transformer over ``num_encoded`` (default all)."""
    k = num_patches if num_encoded is None else num_encoded
    d = cfg.encoder_embed_dim
    flops = 2 * num_patches * cfg.embed_dim * cfg.input_patch_size**2
    if cfg.embed_dim != d:
        flops += 2 * k * cfg.embed_dim * d
    pos_out = k + 1 - cfg.conv_pos % 2  # the even kernel's extra frame is computed, then trimmed
    flops += 2 * pos_out * d * (d // cfg.conv_pos_groups) * cfg.conv_pos
    return flops + _layers_flops(cfg, k, d, cfg.encoder_ffn_embed_dim, cfg.encoder_layers)


def num_kept(cfg: BeatsConfig, num_patches: int) -> int:
    """Patches the encoder sees in pretraining (what :func:`~audiossl.models.beats.model.random_patch_mask` keeps)."""
    return int(round(num_patches * (1.0 - cfg.mask_prob)))


def pretrain_forward_flops(cfg: BeatsConfig, num_samples: int, *, num_encoded: int | None = None) -> int:
    """Forward FLOPs of one pretraining step on one unpadded utterance, fbank excluded.

    ``num_encoded``: patches the encoder sees (default :func:`num_kept`; the model's compacted
    sequence may carry one filler patch more, which this count leaves out).
    """
    p = cfg.num_codebooks * (num_fbank_frames(num_samples) // cfg.input_patch_size)
    if p == 0:
        return 0
    k = num_kept(cfg, p) if num_encoded is None else num_encoded
    dp = cfg.predictor_embed_dim
    flops = encoder_flops(cfg, p, k)
    flops += 2 * k * cfg.encoder_embed_dim * dp
    flops += _layers_flops(cfg, p, dp, cfg.predictor_ffn_embed_dim, cfg.predictor_layers)
    return flops + 2 * p * dp * cfg.num_classes


def train_flops(cfg: BeatsConfig, num_samples: int) -> int:
    """One training step on one utterance: 3 × forward of the trained parts + the fbank."""
    return 3 * pretrain_forward_flops(cfg, num_samples) + fbank_flops(num_samples)


def beats_train_flops_per_second(cfg: BeatsConfig, crop_samples: int = DEFAULT_CROP_SAMPLES) -> float:
    """Training FLOPs per second of audio for utterances of ``crop_samples`` samples."""
    return train_flops(cfg, crop_samples) / (crop_samples / cfg.sample_rate)
