"""MERT as a pretraining family (see :mod:`audiossl.models.families` for the contract).

Targets are ``[B, T, 8]`` RVQ codes (``audiossl tokenizer label rvq|encodec``: 75 Hz, 1024 classes,
``num_codebooks=8``); the trainer refuses labels whose rate, count, codebooks or classes do not fit.
"""

from __future__ import annotations

from pathlib import Path

from audiossl.models.checkpoint import load_family_checkpoint
from audiossl.models.mert.flops import mert_train_flops_per_second
from audiossl.models.mert.model import CONFIGS, MertConfig, MertModel, MertPretrainModel, build_cqt, build_mert

__all__ = [
    "CONFIGS", "NUM_CODEBOOKS_FIELD", "EXTRA_METRICS", "LABELS_AT_FRAME_RATE", "config_from_dict", "build_pretrain_model",
    "train_flops_per_second", "load_pretrain_checkpoint", "load_encoder",
]

NUM_CODEBOOKS_FIELD = "num_codebooks"
EXTRA_METRICS = {"loss_cqt": "CQT MSE"}
LABELS_AT_FRAME_RATE = True
"""Teacher codes must come at the student's frame rate (75 Hz); nearest-frame resampling of, say,
50 Hz codes is not MERT. Proposed trainer contract (not read yet): with ``data.label_rate`` unset,
the trainer expects ``encoder.frame_rate``. Until then the MERT recipes pin ``data.label_rate: 75``."""

config_from_dict = MertConfig.from_dict
build_pretrain_model = build_mert


def train_flops_per_second(cfg: MertConfig, crop_samples: int) -> float:
    return mert_train_flops_per_second(cfg, crop_samples)


def _load(ckpt_dir: str | Path, pretrain: bool):
    model = load_family_checkpoint(ckpt_dir, "mert", MertConfig, MertPretrainModel if pretrain else MertModel,
                                   what="the MERT config in config.json", strip_prefix=None if pretrain else "encoder.")
    if pretrain:
        model.cqt = build_cqt(model.cfg)  # non-persistent buffers: rebuilt, not stored
    return model


def load_pretrain_checkpoint(ckpt_dir: str | Path) -> MertPretrainModel:
    return _load(ckpt_dir, pretrain=True)


def load_encoder(ckpt_dir: str | Path) -> MertModel:
    """The encoder of a MERT checkpoint (eval mode)."""
    return _load(ckpt_dir, pretrain=False).eval()
