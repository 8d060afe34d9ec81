"""WavLM as a pretraining family (see :mod:`audiossl.models.families` for the contract).

Same targets as HuBERT (k-means units, one per frame, rate from the labels' sidecar), same loss and
metrics; the pretraining model mixes utterances in training (:mod:`audiossl.models.wavlm.mixing`).
"""

from __future__ import annotations

from pathlib import Path

from audiossl.models.checkpoint import load_family_checkpoint
from audiossl.models.wavlm.flops import wavlm_train_flops_per_second
from audiossl.models.wavlm.model import CONFIGS, WavlmConfig, WavlmModel, WavlmPretrainModel, build_wavlm

__all__ = ["CONFIGS", "config_from_dict", "build_pretrain_model", "train_flops_per_second", "load_pretrain_checkpoint", "load_encoder"]

config_from_dict = WavlmConfig.from_dict
build_pretrain_model = build_wavlm


def train_flops_per_second(cfg: WavlmConfig, crop_samples: int) -> float:
    return wavlm_train_flops_per_second(cfg, crop_samples)


def _load(ckpt_dir: str | Path, pretrain: bool, map_location: str = "cpu"):
    def hint(missing: list[str]) -> str:
        if pretrain and any(k in ("label_embs", "final_proj.weight") for k in missing):
            return " (this checkpoint holds the encoder only; load its encoder with load_encoder)"
        return ""

    return load_family_checkpoint(ckpt_dir, "wavlm", WavlmConfig, WavlmPretrainModel if pretrain else WavlmModel,
                                  what="the WavLM config in config.json", map_location=map_location,
                                  strip_prefix=None if pretrain else "encoder.", hint=hint)


def load_pretrain_checkpoint(ckpt_dir: str | Path, map_location: str = "cpu") -> WavlmPretrainModel:
    """Our ``model.safetensors`` + ``config.json`` (family ``wavlm``) → :class:`WavlmPretrainModel`."""
    return _load(ckpt_dir, pretrain=True, map_location=map_location)


def load_encoder(ckpt_dir: str | Path) -> WavlmModel:
    """The :class:`~audiossl.models.wavlm.model.WavlmModel` encoder of a checkpoint (on the CPU, eval mode)."""
    return _load(ckpt_dir, pretrain=False).eval()
