"""HuBERT as a pretraining family (see :mod:`audiossl.models.families` for the contract)."""

from __future__ import annotations

from pathlib import Path

from audiossl.models.checkpoint import load_model
from audiossl.models.hubert.flops import hubert_train_flops_per_second
from audiossl.models.hubert.model import CONFIGS, HubertConfig, build_hubert

__all__ = ["CONFIGS", "config_from_dict", "build_pretrain_model", "train_flops_per_second", "load_pretrain_checkpoint", "load_encoder"]

config_from_dict = HubertConfig.from_dict
build_pretrain_model = build_hubert


def train_flops_per_second(cfg: HubertConfig, crop_samples: int) -> float:
    return hubert_train_flops_per_second(cfg, crop_samples)


def load_pretrain_checkpoint(ckpt_dir: str | Path):
    return load_model(ckpt_dir, pretrain=True)


def load_encoder(ckpt_dir: str | Path):
    """The :class:`~audiossl.models.hubert.model.HubertModel` encoder of a checkpoint (on the CPU)."""
    return load_model(ckpt_dir, pretrain=False, map_location="cpu")
