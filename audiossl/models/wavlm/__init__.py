"""WavLM, one room per family: ``model`` (config + builders, encoder, pretraining model), ``mixing``
(utterance mixing), ``family`` (the pretraining-family contract of :mod:`audiossl.models.families`),
``flops`` (analytic FLOP count), ``hf`` and ``fairseq`` (the transformers and microsoft/unilm layouts).
"""

from audiossl.models.wavlm.mixing import MixConfig, MixResult, mix_utterances
from audiossl.models.wavlm.model import (
    CONFIGS,
    WavlmConfig,
    WavlmLayer,
    WavlmModel,
    WavlmPretrainModel,
    WavlmTransformer,
    build_wavlm,
    wavlm_base,
    wavlm_base_plus,
    wavlm_large,
    wavlm_tiny,
)

__all__ = [
    "CONFIGS",
    "MixConfig",
    "MixResult",
    "WavlmConfig",
    "WavlmLayer",
    "WavlmModel",
    "WavlmPretrainModel",
    "WavlmTransformer",
    "build_wavlm",
    "mix_utterances",
    "wavlm_base",
    "wavlm_base_plus",
    "wavlm_large",
    "wavlm_tiny",
]
