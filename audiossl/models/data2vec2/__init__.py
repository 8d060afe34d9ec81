"""data2vec 2.0 audio, one room per family: ``model`` (config, builders, encoder), ``pretrain`` (student,
EMA teacher, decoder, loss), ``masking``, ``ema``, ``alibi`` (and ``attention``: its flex path), ``decoder``, ``family`` (the
pretraining-family contract), ``flops`` and ``hf`` (transformers ``Data2VecAudioModel`` layout)."""

from audiossl.models.data2vec2.model import (
    CONFIGS,
    ContextEncoder,
    Data2Vec2Config,
    Data2Vec2Model,
    Data2Vec2Output,
    data2vec2_base,
    data2vec2_large,
    data2vec2_tiny,
)
from audiossl.models.data2vec2.pretrain import Data2Vec2PretrainModel, Data2Vec2PretrainOutput, build_data2vec2

__all__ = [
    "CONFIGS",
    "ContextEncoder",
    "Data2Vec2Config",
    "Data2Vec2Model",
    "Data2Vec2Output",
    "Data2Vec2PretrainModel",
    "Data2Vec2PretrainOutput",
    "build_data2vec2",
    "data2vec2_base",
    "data2vec2_large",
    "data2vec2_tiny",
]
