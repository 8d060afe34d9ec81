"""Any audiossl encoder (HuBERT, WavLM, BEATs, MERT: the :class:`audiossl.models.encoder.Encoder`
protocol) as a frozen :class:`Upstream` — one wrapper, no per-family adapter classes.

The encoder says its sample rate (``cfg.sample_rate``: MERT runs at 24 kHz, the extract CLI and
the bench resample to ``up.sample_rate``), frame rate, width and number of hidden states, and
returns ``hidden states [B, T, D]`` up to a layer (BEATs pools its 8 frequency patches per time
step itself). Padding is exact for all of them (GroupNorm / fbank over each item's own samples,
padded frames masked out of attention), so a padded batch gives each item its single-pass values.
"""

from __future__ import annotations

import torch
from torch import nn

from audiossl.audio.normalize import normalize_waveform
from audiossl.upstream.base import Upstream, UpstreamOutput, unpadded


class EncoderUpstream(Upstream):
    """``hidden_states``: ``encoder.num_hidden_states`` tensors ``[B, T, D]`` ([0] = input of layer 1).

    ``normalize``: per-utterance zero-mean/unit-variance waveforms first (fairseq task
    ``normalize``; also on when the encoder's config sets ``normalize``).
    """

    early_exit = True

    def __init__(self, model: nn.Module, name: str = "encoder", normalize: bool = False) -> None:
        super().__init__()
        cfg = model.cfg
        self._wrap(model, name=name, sample_rate=cfg.sample_rate, frame_rate=model.frame_rate,
                   num_layers=model.num_hidden_states, hidden_dim=model.hidden_dim)
        self.normalize = normalize or bool(getattr(cfg, "normalize", False))
        self.padding_invariant = True

    def num_frames(self, num_samples: int) -> int:
        return int(self.model.num_frames(int(num_samples)))

    def frame_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        return self.model.frame_lengths(lengths)

    def _forward(self, wavs: torch.Tensor, lengths: torch.Tensor, max_layer: int | None = None) -> UpstreamOutput:
        if self.normalize:
            wavs = normalize_waveform(wavs, lengths)
        if self.num_frames(wavs.shape[1]) == 0:  # whole batch shorter than one frame
            empty = wavs.new_zeros(wavs.shape[0], 0, self.hidden_dim)
            return UpstreamOutput([empty] * (self.num_layers if max_layer is None else max_layer + 1), self.frame_lengths(lengths))
        hidden, frames = self.model.layer_states(wavs, None if unpadded(wavs, lengths) else lengths, max_layer)
        return UpstreamOutput(hidden_states=list(hidden), lengths=frames)
