"""HuBERT, one room per family (torchaudio style): ``model`` (config + builders, encoder, pretraining
model and loss), ``family`` (the pretraining-family contract of :mod:`audiossl.models.families`),
``flops`` (analytic FLOP count) and the import/export of the reference layouts.
"""

from audiossl.models.hubert.model import (
    HubertConfig,
    HubertOutput,
    PretrainOutput,
    GradMultiply,
    HubertModel,
    HubertPretrainModel,
    hubert_tiny,
    hubert_base,
    hubert_large,
    hubert_xlarge,
    build_hubert,
    CONFIGS,
)

__all__ = [
    "HubertConfig",
    "HubertOutput",
    "PretrainOutput",
    "GradMultiply",
    "HubertModel",
    "HubertPretrainModel",
    "hubert_tiny",
    "hubert_base",
    "hubert_large",
    "hubert_xlarge",
    "build_hubert",
    "CONFIGS",
]
