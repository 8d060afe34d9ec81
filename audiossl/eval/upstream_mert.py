"""Our MERT encoder (:class:`audiossl.models.mert.MertModel`) as an :class:`Upstream`.

MERT runs at 24 kHz: ``sample_rate`` is 24000, and the extract CLI / bench harness resample their
16 kHz (or any-rate) audio to ``up.sample_rate`` before calling it. Frames are 75 Hz.
"""

from __future__ import annotations


from audiossl.eval.upstream import HubertUpstream


class MertUpstream(HubertUpstream):  # sample rate (24 kHz) and sizes come from MertConfig
    """Frozen MERT encoder; hidden states follow HuBERT's layer convention (``num_layers + 1``).

    ``normalize``: per-utterance zero-mean/unit-variance waveforms (released MERT checkpoints set
    ``do_normalize`` in their ``preprocessor_config.json``; our config's ``normalize`` also turns it on).
    """
