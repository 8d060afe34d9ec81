"""Model code: shared encoder blocks, front ends and checkpoint io, the family registry, and one sub-package per
family (:mod:`audiossl.models.hubert`, :mod:`audiossl.models.beats`, :mod:`audiossl.models.mert`,
:mod:`audiossl.models.data2vec2`). HuBERT is re-exported here."""

from audiossl.models.hubert.model import (
    CONFIGS,
    HubertConfig,
    HubertModel,
    HubertOutput,
    HubertPretrainModel,
    PretrainOutput,
    build_hubert,
    hubert_base,
    hubert_large,
    hubert_tiny,
    hubert_xlarge,
)

__all__ = [
    "CONFIGS",
    "HubertConfig",
    "HubertModel",
    "HubertOutput",
    "HubertPretrainModel",
    "PretrainOutput",
    "build_hubert",
    "hubert_base",
    "hubert_large",
    "hubert_tiny",
    "hubert_xlarge",
]
