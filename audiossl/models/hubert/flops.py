"""Analytic FLOP count of HuBERT (nanoGPT ``estimate_mfu`` style); peak FLOP/s and MFU helpers are in
:mod:`audiossl.models.flops`.

Counted (FLOPs = 2 × multiply-accumulates, matmuls and convolutions only; norms, activations,
softmax and dropout are ignored as negligible): the conv frontend, the feature projection, the
positional conv, per layer the QKV / output projections, ``QK^T`` and ``AV`` (``T²`` terms) and the
FFN, and the prediction head (``final_proj`` + cosine logits against every label embedding).

A training step is taken as 3 × forward (backward ≈ 2 × forward). The ``T²`` attention terms make
the per-second cost depend on utterance length, so the per-second figure is computed for a given
utterance length. The default is 10 s (160 000 samples at 16 kHz, about the mean LibriSpeech
utterance after fairseq's 15.6 s crop), where HuBERT Base comes out at 44.5 training GFLOP per
audio-second (the design card's ≈ 44.6). For reference: 41.6 at 1 s, 43.1 at 5 s, 46.1 at the
full 15.625 s crop (``max_sample_size=250000``).
"""

from __future__ import annotations

from audiossl.models.conv_frontend import conv_output_length
from audiossl.models.flops import DEFAULT_CROP_SAMPLES, mfu, peak_flops
from audiossl.models.hubert.model import HubertConfig


def forward_flops(cfg: HubertConfig, num_samples: int, *, include_head: bool = True) -> int:
    """Forward-pass FLOPs of one utterance of ``num_samples`` samples (no padding).

    0 below the receptive field, where the model refuses the input.
    """
    t = conv_output_length(num_samples, cfg.conv_layers)
    if t == 0:
        return 0
    flops = 0
    length, in_ch = num_samples, 1
    for out_ch, kernel, stride in cfg.conv_layers:
        length = max(0, (length - kernel) // stride + 1)
        flops += 2 * length * out_ch * in_ch * kernel
        in_ch = out_ch
    d = cfg.embed_dim
    flops += 2 * t * in_ch * d  # feature projection
    pos_out = t + 1 - cfg.pos_conv_kernel % 2  # SamePad trims one frame for even kernels (computed anyway)
    flops += 2 * pos_out * d * (d // cfg.pos_conv_groups) * cfg.pos_conv_kernel
    per_layer = 2 * t * d * 3 * d + 2 * t * d * d + 2 * 2 * t * d * cfg.ffn_dim  # qkv, out, ffn
    per_layer += 2 * 2 * t * t * d  # QK^T and AV
    flops += cfg.num_layers * per_layer
    if include_head:
        flops += 2 * t * d * cfg.final_dim + 2 * t * cfg.final_dim * cfg.num_classes
    return flops


def train_flops(cfg: HubertConfig, num_samples: int) -> int:
    """FLOPs of one training step (forward + backward ≈ 3 × forward) on one utterance."""
    return 3 * forward_flops(cfg, num_samples)


def hubert_train_flops_per_second(cfg: HubertConfig, crop_samples: int = DEFAULT_CROP_SAMPLES) -> float:
    """Training FLOPs per second of audio for utterances of ``crop_samples`` samples."""
    return train_flops(cfg, crop_samples) / (crop_samples / cfg.sample_rate)


def estimate_mfu(
    cfg: HubertConfig,
    audio_seconds_per_second: float,
    *,
    device_name: str | None = None,
    peak: float | None = None,
    crop_samples: int = DEFAULT_CROP_SAMPLES,
) -> float:
    """MFU of a training run that processes ``audio_seconds_per_second`` per device."""
    achieved = audio_seconds_per_second * hubert_train_flops_per_second(cfg, crop_samples)
    return mfu(achieved, peak_flops(device_name, peak))
