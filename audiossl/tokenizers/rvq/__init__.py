"""MERT's acoustic teacher, the RVQ-VAE, one room (torchaudio style): ``quantizer`` (residual vector
quantisation), ``vae`` (config + builders, conv encoder/decoder, losses, FLOP count) and ``family``
(its pretraining-family contract of :mod:`audiossl.models.families`). Coding a corpus with it (or
with EnCodec) is :mod:`audiossl.tokenizers.coders` + :mod:`audiossl.tokenizers.labelling`.
"""
