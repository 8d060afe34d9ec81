"""Our MERT encoder (:class:`audiossl.models.mert.MertModel`) as an :class:`Upstream`.

MERT runs at 24 kHz: ``sample_rate`` is 24000, and the extract CLI / bench harness resample their
16 kHz (or any-rate) audio to ``up.sample_rate`` before calling it. Frames are 75 Hz.
"""

from __future__ import annotations

from torch import nn

from audiossl.eval.upstream import HubertUpstream


class MertUpstream(HubertUpstream):
    """Frozen MERT encoder; hidden states follow HuBERT's layer convention (``num_layers + 1``).

    ``normalize``: per-utterance zero-mean/unit-variance waveforms (released MERT checkpoints set
    ``do_normalize`` in their ``preprocessor_config.json``; our config's ``normalize`` also turns it on).
    """

    def __init__(self, model: nn.Module, name: str = "mert", normalize: bool = False) -> None:
        super().__init__(model, name=name, normalize=normalize)
        self.sample_rate = int(model.cfg.sample_rate)
