"""BEATs' tokenizers, one room (torchaudio style): ``random_projection`` (iteration 1's frozen
random-projection quantiser), ``model`` (the self-distilled tokenizer: config + builders, encoder,
VQ head, estimator and loss), ``family`` (its pretraining-family contract of
:mod:`audiossl.models.families`) and ``checkpoint`` (load, upstream view and export to the released
``Tokenizers.py`` layout). The shared VQ pieces live in :mod:`audiossl.tokenizers.vq`.
"""
