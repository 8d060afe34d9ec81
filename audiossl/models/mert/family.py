"""MERT as a pretraining family (see :mod:`audiossl.models.families` for the contract).

Targets are ``[B, T, 8]`` RVQ codes (``audiossl tokenizer label rvq|encodec``: 75 Hz, 1024 classes,
``num_codebooks=8``); the trainer refuses labels whose rate, count, codebooks or classes do not fit.
"""

from __future__ import annotations

from pathlib import Path

import torch

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
    from audiossl.models.mert.flops import mert_train_flops_per_second

    return mert_train_flops_per_second(cfg, crop_samples)


def _load(ckpt_dir: str | Path, pretrain: bool):
    from audiossl.models.checkpoint import CheckpointError, load_state_into, read_meta, read_weights

    meta = read_meta(ckpt_dir, family="mert")
    try:
        cfg = MertConfig.from_dict(meta["config"])
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{Path(ckpt_dir) / 'config.json'}: bad 'config' section: {e}") from e
    path, state = read_weights(ckpt_dir)
    with torch.device("meta"):  # no random init: every tensor comes from the file
        model = MertPretrainModel(cfg) if pretrain else MertModel(cfg)
    if not pretrain:
        state = {k[len("encoder."):]: v for k, v in state.items() if k.startswith("encoder.")}
    load_state_into(model, state, path, what="the MERT config in config.json")
    if pretrain:
        model.cqt = build_cqt(cfg)  # non-persistent buffers: rebuilt, not stored
    return model, meta


def load_pretrain_checkpoint(ckpt_dir: str | Path) -> MertPretrainModel:
    return _load(ckpt_dir, pretrain=True)[0]


def load_encoder(ckpt_dir: str | Path) -> MertModel:
    """The encoder of a MERT checkpoint (eval mode)."""
    return _load(ckpt_dir, pretrain=False)[0].eval()
