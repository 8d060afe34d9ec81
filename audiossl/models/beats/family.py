"""BEATs as a pretraining family (see :mod:`audiossl.models.families` for the contract).

Targets are ``[frames, 8]`` codes per utterance at 6.25 Hz (one code per frequency patch of a time
step), so ``NUM_CODEBOOKS_FIELD = "num_codebooks"``; the loss has no feature penalty.
"""

from __future__ import annotations

from pathlib import Path

from audiossl.models.beats.flops import beats_train_flops_per_second
from audiossl.models.beats.model import CONFIGS, BeatsConfig, BeatsPretrainModel, build_beats
from audiossl.models.checkpoint import load_family_checkpoint

__all__ = [
    "CONFIGS", "config_from_dict", "build_pretrain_model", "train_flops_per_second", "load_pretrain_checkpoint",
    "load_encoder", "NUM_CODEBOOKS_FIELD", "METRICS",
]

NUM_CODEBOOKS_FIELD = "num_codebooks"
METRICS = ("loss", "loss_masked", "masked_acc")

config_from_dict = BeatsConfig.from_dict
build_pretrain_model = build_beats


def train_flops_per_second(cfg: BeatsConfig, crop_samples: int) -> float:
    return beats_train_flops_per_second(cfg, crop_samples)


def load_pretrain_checkpoint(ckpt_dir: str | Path, map_location: str = "cpu") -> BeatsPretrainModel:
    """Our ``model.safetensors`` + ``config.json`` (family ``beats``) → :class:`BeatsPretrainModel`."""
    return load_family_checkpoint(ckpt_dir, "beats", BeatsConfig, BeatsPretrainModel,
                                  what="the BEATs config in config.json", map_location=map_location)


def load_encoder(ckpt_dir: str | Path):
    """The :class:`~audiossl.models.beats.model.BeatsModel` encoder of a checkpoint."""
    return load_pretrain_checkpoint(ckpt_dir).encoder
