"""The protocol every family's encoder implements, so :mod:`audiossl.upstream` wraps any of them
generically (:class:`audiossl.upstream.encoder.EncoderUpstream`)."""

from __future__ import annotations

from typing import Protocol

from torch import Tensor


class Encoder(Protocol):
    """An encoder of audio at ``cfg.sample_rate`` into ``num_hidden_states`` layers of width ``hidden_dim``."""

    cfg: object  # has ``sample_rate``
    frame_rate: float
    """Frames per second of the hidden states."""
    num_hidden_states: int
    """Transformer layers + 1 (``[0]`` = input of the first layer)."""
    hidden_dim: int

    def num_frames(self, num_samples: int) -> int:
        """Frames one pass over ``num_samples`` samples yields (0 below one frame)."""

    def frame_lengths(self, lengths: Tensor) -> Tensor:
        """Valid samples ``[B]`` → valid frames ``[B]`` (same device)."""

    def layer_states(self, wavs: Tensor, lengths: Tensor | None, max_layer: int | None = None) -> tuple[list[Tensor], Tensor]:
        """``wavs [B, S]`` (``lengths [B]`` valid samples, None = unpadded) → (hidden states
        ``[0..max_layer]``, each ``[B, T, D]``; valid frames ``[B]``). Layers above ``max_layer`` are not run."""
