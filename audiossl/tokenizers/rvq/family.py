"""The RVQ-VAE tokenizer as a pretraining family (``model.family: rvq``), trained on audio alone.

``audiossl tokenizer train rvq`` (or ``audiossl pretrain --labels none`` with a ``recipes/mert/rvq_*.yaml``)
runs it on the shared fairseq2 trainer, so resume, metrics, TensorBoard and export come for free.
See :mod:`audiossl.models.families` for the contract.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from audiossl.models.checkpoint import load_family_checkpoint
from audiossl.tokenizers.rvq.vae import CONFIGS, RVQVAE, RVQVAEConfig, build_rvq_vae, train_flops_per_second
from audiossl.upstream.base import Upstream, UpstreamOutput

__all__ = [
    "CONFIGS", "AUDIO_ONLY", "AUTO_BF16", "METRICS", "EXTRA_METRICS", "config_from_dict", "build_pretrain_model", "train_flops_per_second",
    "load_pretrain_checkpoint", "build_upstream", "on_metrics",
]

log = logging.getLogger(__name__)

config_from_dict = RVQVAEConfig.from_dict
build_pretrain_model = build_rvq_vae
NUM_CODEBOOKS_FIELD = "num_codebooks"
AUDIO_ONLY = True
AUTO_BF16 = False
"""``amp=auto`` trains this family in fp32. Under bf16 autocast its latents (a large common offset plus
small variations: the encoder has no output normalisation) lose the variations the residual codebooks
separate: on the demo music (``recipes/mert/rvq_tiny.yaml``, 800 steps) the valid loss went 6.7 → 39.7 →
22.6 with a gradient norm of ~1800 at the end, against 3.5 at step 100 and 2.7 at 800 in fp32, and the bf16 tokenizer
gave 99.2-99.7 % of the frames one code per level (MERT's targets carried nothing). ``amp=bf16`` still
forces it."""
METRICS = ("loss",)
EXTRA_METRICS = {
    "stft_loss": "STFT Loss",
    "wave_l1": "Waveform L1",
    "commitment": "Commitment",
    "codebook_usage": "Codebook Usage",
    "codebook_perplexity": "Codebook Perplexity",
}
USAGE_WARN = 0.5
"""``on_metrics`` warns when the mean fraction of codes in use falls below this."""


def on_metrics(values: dict) -> None:
    """Warn when codebook usage collapses (most codes unused even after dead-code restarts)."""
    usage = values.get("codebook_usage")
    if usage is not None and float(usage) < USAGE_WARN:
        log.warning(
            "codebook usage %.1f%% < %.0f%%: most codes are unused. Feed more audio per batch "
            "(data.max_tokens), lower model.dead_threshold or model.codebook_size.", 100 * float(usage), 100 * USAGE_WARN,
        )


def load_pretrain_checkpoint(ckpt_dir: str | Path, map_location: str | torch.device = "cpu") -> RVQVAE:
    """The trained :class:`RVQVAE` of an audiossl checkpoint dir (safetensors only), in eval mode."""
    return load_family_checkpoint(ckpt_dir, "rvq", RVQVAEConfig, RVQVAE, what="the RVQ-VAE config", map_location=map_location).eval()


def build_upstream(ckpt_dir: Path, meta: dict):
    """Upstream with two layers: the encoder latents and their quantised sum (``[batch, frame, latent_dim]``)."""
    model = load_pretrain_checkpoint(ckpt_dir)

    class RVQUpstream(Upstream):
        def __init__(self) -> None:
            super().__init__()
            self._wrap(model, name=f"rvq:{ckpt_dir}", sample_rate=model.cfg.sample_rate, frame_rate=model.frame_rate,
                       num_layers=2, hidden_dim=model.cfg.latent_dim)
            self.padding_invariant = False  # the last frames' receptive field reaches into the padding

        def num_frames(self, num_samples: int) -> int:
            return self.model.encoder.num_frames(num_samples)

        def _forward(self, wavs: torch.Tensor, lengths: torch.Tensor) -> UpstreamOutput:
            z = self.model.encoder(wavs)
            q = self.model.quantizer.decode(self.model.quantizer.encode(z))
            hop = self.model.cfg.hop
            return UpstreamOutput([z, q], (lengths + hop - 1) // hop)

    return RVQUpstream()
