"""A BEATs encoder (ours, or a released checkpoint mapped onto it) as an :class:`Upstream`.

BEATs encodes a time-major patch sequence ``[B, T * 8, D]`` (8 frequency patches per 160 ms time
step). The upstream API needs frames in time, so each layer's output is averaged over the 8
frequency patches of a time step: ``[B, T * 8, D]`` → ``[B, T, 8, D]`` → mean → ``[B, T, D]`` at
6.25 Hz (as the BEATs authors pool patches for clip-level tasks). Padding is exact: an item's
fbank is computed over its own samples and padded patches are masked out of attention, so a
padded batch gives each item its single-pass values.
"""

from __future__ import annotations

import torch
from torch import nn

from audiossl.eval.upstream import Upstream, UpstreamOutput, unpadded


class BeatsUpstream(Upstream):
    """``hidden_states``: ``encoder_layers + 1`` tensors ``[B, T, D]`` ([0] = input of layer 1)."""

    early_exit = True

    def __init__(self, model: nn.Module, name: str = "beats") -> None:
        super().__init__()
        cfg = model.cfg
        self._wrap(model, name=name, sample_rate=cfg.sample_rate, frame_rate=model.frame_rate,
                   num_layers=cfg.encoder_layers + 1, hidden_dim=cfg.encoder_embed_dim)
        self.padding_invariant = True

    def num_frames(self, num_samples: int) -> int:
        return int(self.model.num_frames(int(num_samples)))

    def frame_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        return self.model.frame_lengths(lengths)

    def _forward(self, wavs: torch.Tensor, lengths: torch.Tensor, max_layer: int | None = None) -> UpstreamOutput:
        batch = wavs.shape[0]
        steps = self.num_frames(wavs.shape[1])
        if steps == 0:  # whole batch shorter than one patch
            empty = wavs.new_zeros(batch, 0, self.hidden_dim)
            return UpstreamOutput([empty] * (self.num_layers if max_layer is None else max_layer + 1), self.frame_lengths(lengths))
        out = self.model(wavs, None if unpadded(wavs, lengths) else lengths, output_layers=max_layer)
        f = self.model.cfg.num_codebooks
        hidden = [h.view(batch, steps, f, h.shape[-1]).mean(2) for h in out.hidden_states]
        return UpstreamOutput(hidden_states=hidden, lengths=out.lengths)
