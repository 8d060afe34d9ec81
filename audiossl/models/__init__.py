"""Model code: encoder blocks, front ends and the HuBERT family (plain torch modules)."""

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
