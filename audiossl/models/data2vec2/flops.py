"""Analytic training FLOPs of data2vec 2.0 (FLOPs = 2 × multiply-accumulates of matmuls and
convolutions; norms, activations, softmax, ALiBi and the loss are negligible and not counted).

Per utterance of ``T`` frames with ``M = clone_batch`` copies and ``K = T - m`` kept frames per copy
(``m`` from :func:`~audiossl.models.data2vec2.masking.num_removed`, as the model draws it):

* conv frontend + feature LN/projection: once per utterance, forward + backward (3 ×);
* student, per copy: positional conv on all ``T`` frames, the transformer on the ``K`` kept frames,
  the decoder on all ``T`` frames: forward + backward (3 ×), ``M`` times;
* teacher: positional conv + transformer on all ``T`` frames, forward only (1 ×).

The ``T²`` attention terms make the per-second figure depend on the utterance length; it is given for
a crop length (10 s by default, as for HuBERT).
"""

from __future__ import annotations

from audiossl.models.conv_frontend import conv_output_length
from audiossl.models.data2vec2.masking import masked_share, num_removed
from audiossl.models.data2vec2.model import Data2Vec2Config
from audiossl.models.flops import DEFAULT_CROP_SAMPLES


def frontend_flops(cfg: Data2Vec2Config, num_samples: int) -> int:
    """Conv frontend + feature projection, forward."""
    flops, length, in_ch = 0, num_samples, 1
    for out_ch, kernel, stride in cfg.conv_layers:
        length = max(0, (length - kernel) // stride + 1)
        flops += 2 * length * out_ch * in_ch * kernel
        in_ch = out_ch
    return flops + 2 * length * in_ch * cfg.embed_dim


def pos_conv_flops(cfg: Data2Vec2Config, t: int) -> int:
    d = cfg.embed_dim
    out = t + 1 - cfg.pos_conv_kernel % 2  # an even kernel's extra frame is computed, then trimmed
    return cfg.pos_conv_depth * 2 * out * d * (d // cfg.pos_conv_groups) * cfg.pos_conv_kernel


def transformer_flops(cfg: Data2Vec2Config, t: int) -> int:
    d, f = cfg.embed_dim, cfg.ffn_dim
    per_layer = 2 * t * d * 3 * d + 2 * t * d * d + 2 * 2 * t * d * f + 2 * 2 * t * t * d
    return cfg.num_layers * per_layer


def decoder_flops(cfg: Data2Vec2Config, t: int) -> int:
    d, dd, k, g = cfg.embed_dim, cfg.decoder_dim, cfg.decoder_kernel, cfg.decoder_groups
    out = t + 1 - k % 2
    flops = 2 * out * dd * (d // g) * k
    flops += (cfg.decoder_layers - 1) * 2 * out * dd * (dd // g) * k
    return flops + 2 * t * dd * d


def kept_frames(cfg: Data2Vec2Config, t: int) -> int:
    """Frames each student copy encodes."""
    return t - num_removed(t, masked_share(cfg.mask_prob, cfg.mask_length, cfg.inverse_mask))


def forward_flops(cfg: Data2Vec2Config, num_samples: int) -> dict[str, int]:
    """Forward FLOPs of one unpadded utterance by part: ``frontend``, ``student`` (all copies: pos conv,
    transformer on kept frames), ``decoder`` (all copies), ``teacher``. Zeros below the receptive field."""
    t = conv_output_length(num_samples, cfg.conv_layers)
    if t == 0:
        return {"frontend": 0, "student": 0, "decoder": 0, "teacher": 0}
    k, m = kept_frames(cfg, t), cfg.clone_batch
    return {
        "frontend": frontend_flops(cfg, num_samples),
        "student": m * (pos_conv_flops(cfg, t) + transformer_flops(cfg, k)),
        "decoder": m * decoder_flops(cfg, t),
        "teacher": pos_conv_flops(cfg, t) + transformer_flops(cfg, t),
    }


def train_flops(cfg: Data2Vec2Config, num_samples: int) -> int:
    """One training step on one utterance: 3 × (frontend + student + decoder) + 1 × teacher."""
    f = forward_flops(cfg, num_samples)
    return 3 * (f["frontend"] + f["student"] + f["decoder"]) + f["teacher"]


def data2vec2_train_flops_per_second(cfg: Data2Vec2Config, crop_samples: int = DEFAULT_CROP_SAMPLES) -> float:
    """Training FLOPs per second of audio for utterances of ``crop_samples`` samples."""
    return train_flops(cfg, crop_samples) / (crop_samples / cfg.sample_rate)
