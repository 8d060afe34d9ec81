"""BEATs, one room per family (torchaudio style): ``model`` (config + builders, encoder, pretraining
model and loss), ``family`` (the pretraining-family contract of :mod:`audiossl.models.families`),
``flops`` (analytic FLOP count) and the import/export of the reference layouts.
"""

from audiossl.models.beats.model import (
    BeatsConfig,
    BeatsLayer,
    BeatsTransformer,
    BeatsOutput,
    BeatsModel,
    BeatsPretrainOutput,
    random_patch_mask,
    BeatsPredictor,
    BeatsPretrainModel,
    beats_tiny,
    beats_base,
    build_beats,
    CONFIGS,
)

__all__ = [
    "BeatsConfig",
    "BeatsLayer",
    "BeatsTransformer",
    "BeatsOutput",
    "BeatsModel",
    "BeatsPretrainOutput",
    "random_patch_mask",
    "BeatsPredictor",
    "BeatsPretrainModel",
    "beats_tiny",
    "beats_base",
    "build_beats",
    "CONFIGS",
]
