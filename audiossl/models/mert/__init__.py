"""MERT, one room per family (torchaudio style): ``model`` (config + builders, encoder, pretraining
model and loss), ``family`` (the pretraining-family contract of :mod:`audiossl.models.families`),
``flops`` (analytic FLOP count) and the import/export of the reference layouts.
"""

from audiossl.models.mert.model import (
    MertConfig,
    RelaxedSelfAttention,
    MertModel,
    MertPretrainOutput,
    MertPretrainModel,
    build_cqt,
    mert_tiny,
    mert_95m,
    mert_330m,
    build_mert,
    CONFIGS,
)

__all__ = [
    "MertConfig",
    "RelaxedSelfAttention",
    "MertModel",
    "MertPretrainOutput",
    "MertPretrainModel",
    "build_cqt",
    "mert_tiny",
    "mert_95m",
    "mert_330m",
    "build_mert",
    "CONFIGS",
]
