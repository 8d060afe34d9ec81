"""The BEATs self-distilled tokenizer as a pretraining family (contract: :mod:`audiossl.models.families`).

Trained by the shared fairseq2 trainer on audio alone (``labels=None``), so resume, metrics,
TensorBoard and export come from :func:`audiossl.pretrain.trainer.run_pretraining`. The frozen
teacher is not part of the checkpoint: ``config.json`` records its spec only.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import torch

from audiossl.models.checkpoint import load_family_checkpoint
from audiossl.models.patch_frontend import num_patch_frames
from audiossl.tokenizers.beats.model import CONFIGS, BeatsTokenizer, BeatsTokenizerConfig, build_beats_tokenizer
from audiossl.upstream.base import Upstream, UpstreamOutput

__all__ = [
    "CONFIGS", "config_from_dict", "build_pretrain_model", "train_flops_per_second", "load_pretrain_checkpoint", "build_upstream",
    "METRICS", "EXTRA_METRICS", "on_metrics", "BeatsTokenizerUpstream",
]

log = logging.getLogger(__name__)

config_from_dict = BeatsTokenizerConfig.from_dict
build_pretrain_model = build_beats_tokenizer

METRICS = ("loss",)
EXTRA_METRICS = {
    "cos_loss": "Cosine Loss",
    "commit_loss": "Commitment Loss",
    "codebook_usage": "Codebook Usage",
    "perplexity": "Codebook Perplexity",
}
USAGE_WARNING = 0.10
"""Warn when batches use fewer than this fraction of the codes they could use (see VQOutput.usage)."""


def on_metrics(values: dict) -> None:
    """Warn when codebook usage collapses (called with each published set of metric values)."""
    usage = values.get("codebook_usage")
    if usage is None:
        return
    usage = float(usage)
    if usage < USAGE_WARNING:
        log.warning(
            "codebook usage collapsed: %.1f%% of the codes used per batch (perplexity %.1f); consider a lower "
            "model.overrides.codebook_decay, dead_code_threshold > 0 (restart dead codes), or larger batches",
            100 * usage, float(values.get("perplexity", float("nan"))),
        )


def _layer_flops(tokens: int, dim: int, ffn: int) -> float:
    return 2 * tokens * (4 * dim * dim + 2 * dim * ffn) + 4 * tokens * tokens * dim


def forward_flops(cfg: BeatsTokenizerConfig, num_samples: int) -> float:
    """Forward FLOPs of one utterance (matmuls only: patch projection, both transformers, VQ distances, heads).

    The teacher's forward is not counted (it depends on the teacher; it runs without backward).
    """
    tokens = num_patch_frames(num_samples, cfg.patch) * cfg.bands
    pp = cfg.patch * cfg.patch
    if cfg.encoder_type == "beats":  # Conv2d patches, post_extract_proj, Linear–Tanh–Linear quantize_layer
        fl = 2 * tokens * pp * cfg.patch_embed_dim
        fl += 2 * tokens * cfg.patch_embed_dim * cfg.embed_dim if cfg.patch_embed_dim != cfg.embed_dim else 0
        fl += 2 * tokens * cfg.embed_dim * cfg.embed_dim
    else:
        fl = 2 * tokens * pp * cfg.embed_dim
    fl += cfg.num_layers * _layer_flops(tokens, cfg.embed_dim, cfg.ffn_dim)
    fl += 2 * tokens * cfg.embed_dim * cfg.codebook_dim + 2 * tokens * cfg.codebook_dim * cfg.codebook_size
    fl += 2 * tokens * cfg.codebook_dim * cfg.estimator_dim
    fl += cfg.estimator_layers * _layer_flops(tokens, cfg.estimator_dim, cfg.estimator_ffn_dim)
    fl += 2 * tokens * cfg.estimator_dim * cfg.teacher_dim
    for dim in (cfg.embed_dim, cfg.estimator_dim):  # positional convs
        fl += 2 * tokens * dim * (dim // cfg.pos_conv_groups) * cfg.pos_conv_kernel
    return float(fl)


def train_flops_per_second(cfg: BeatsTokenizerConfig, crop_samples: int) -> float:
    """Training FLOPs (3 × forward) per second of audio for crops of ``crop_samples``."""
    seconds = crop_samples / cfg.sample_rate
    return 3 * forward_flops(cfg, crop_samples) / seconds if seconds > 0 else math.nan


def load_pretrain_checkpoint(ckpt_dir: str | Path) -> BeatsTokenizer:
    """The tokenizer stored in ``ckpt_dir`` (safetensors; the teacher is not loaded)."""
    model = load_family_checkpoint(ckpt_dir, "beats_tokenizer", BeatsTokenizerConfig, BeatsTokenizer, what="the BEATs tokenizer config")
    # Restore the non-persistent pieces that meta-device construction left empty.
    model.quantizer._forget_flag()
    return model.eval()


def build_upstream(ckpt_dir: Path, meta: dict):
    """The tokenizer encoder as an upstream: every layer, averaged over the 8 frequency patches (6.25 Hz)."""
    return BeatsTokenizerUpstream(load_pretrain_checkpoint(ckpt_dir), name=f"beats_tokenizer:{ckpt_dir}")


class BeatsTokenizerUpstream(Upstream):
    """A trained tokenizer's encoder: ``hidden_states[i]`` ``[B, T, D]`` = layer ``i`` averaged over the 8 bands."""

    def __init__(self, model: BeatsTokenizer, name: str = "beats_tokenizer") -> None:
        super().__init__()
        self._wrap(model, name=name, sample_rate=model.cfg.sample_rate, frame_rate=model.frame_rate,
                   num_layers=model.cfg.num_layers + 1, hidden_dim=model.cfg.embed_dim)

    def num_frames(self, num_samples: int) -> int:
        return self.model.encoder.num_frames(num_samples)

    def frame_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        return self.model.encoder.frame_lengths(lengths)

    def _forward(self, wavs: torch.Tensor, lengths: torch.Tensor) -> UpstreamOutput:
        hidden, _, frames, _ = self.model.encoder(wavs, lengths)
        b, f = wavs.shape[0], self.model.cfg.bands
        pooled = [h.view(b, -1, f, h.shape[-1]).mean(2) for h in hidden]
        return UpstreamOutput(pooled, frames)
