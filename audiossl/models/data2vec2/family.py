"""data2vec 2.0 as a pretraining family (contract: :mod:`audiossl.models.families`).

Trained on audio alone: ``audiossl pretrain`` needs no ``--labels`` (``AUDIO_ONLY``; the trainer passes
empty targets, which the model ignores). The checkpoint holds the student, the decoder and the EMA teacher (buffers);
the upstream (``load_encoder``) is the **student** encoder, as fairseq's fine-tuning code loads it
(the ``_ema`` teacher entry is dropped there).
"""

from __future__ import annotations

from pathlib import Path
import logging

from audiossl.models.checkpoint import load_family_checkpoint
from audiossl.models.data2vec2.flops import data2vec2_train_flops_per_second
from audiossl.models.data2vec2.model import CONFIGS, Data2Vec2Config, Data2Vec2Model
from audiossl.models.data2vec2.pretrain import Data2Vec2PretrainModel, build_data2vec2

__all__ = [
    "CONFIGS", "METRICS", "EXTRA_METRICS", "AUDIO_ONLY", "DATA_PARALLELISM", "config_from_dict", "build_pretrain_model", "train_flops_per_second",
    "load_pretrain_checkpoint", "load_encoder", "on_metrics",
]

config_from_dict = Data2Vec2Config.from_dict
build_pretrain_model = build_data2vec2
METRICS = ("loss",)
AUDIO_ONLY = True
"""No labels: ``audiossl pretrain`` defaults to ``--labels none`` for this family."""
DATA_PARALLELISM = ("ddp",)
"""The EMA teacher is updated from the full student weights on every rank; FSDP shards them."""
EXTRA_METRICS = {
    "target_var": "Target Std",
    "pred_var": "Prediction Std",
    "ema_decay": "Teacher EMA Decay",
    "masked_frac": "Masked Fraction",
}
MIN_TARGET_VAR = 0.1
"""fairseq ``min_target_var``: below it the targets have collapsed."""


def on_metrics(values: dict) -> None:
    """Warn when the teacher's targets collapse (fairseq stops the run after 5000 updates instead)."""

    v = values.get("target_var")
    if v is not None and float(v) < MIN_TARGET_VAR:
        logging.getLogger(__name__).warning(
            "target std %.4f < %.2f: the teacher's targets are collapsing; lower optim.lr or raise "
            "model.ema_decay", float(v), MIN_TARGET_VAR,
        )


def train_flops_per_second(cfg: Data2Vec2Config, crop_samples: int) -> float:
    return data2vec2_train_flops_per_second(cfg, crop_samples)


def _load(ckpt_dir: str | Path, pretrain: bool):
    return load_family_checkpoint(ckpt_dir, "data2vec2", Data2Vec2Config, Data2Vec2PretrainModel if pretrain else Data2Vec2Model,
                                  what="the data2vec2 config in config.json", strip_prefix=None if pretrain else "encoder.")


def load_pretrain_checkpoint(ckpt_dir: str | Path) -> Data2Vec2PretrainModel:
    """Student, decoder and EMA teacher of a checkpoint."""
    return _load(ckpt_dir, pretrain=True)


def load_encoder(ckpt_dir: str | Path) -> Data2Vec2Model:
    """The student encoder of a checkpoint (eval mode)."""
    return _load(ckpt_dir, pretrain=False).eval()
