"""Helpers for parity tests: weights that make a mapping mistake visible, and padded-batch checks."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn


@torch.no_grad()
def randomize_affine(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every LayerNorm/GroupNorm a random affine (weight ~ U[0.5, 1.5], bias ~ N(0, 0.1)) and every
    Linear/Conv bias a random value, in place. With identity norms and zero biases a swapped or
    dropped norm/bias mapping still passes a parity test; with these it cannot."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, (nn.LayerNorm, nn.GroupNorm)) and m.weight is not None:
            m.weight.copy_(0.5 + torch.rand(m.weight.shape, generator=g))
            m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=g))
        elif isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d)) and m.bias is not None:
            m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=g))
    return model


def assert_padded_batch_matches_single(
    batched: Sequence[Tensor], frames: Sequence[int], single: Callable[[int], Sequence[Tensor]], atol: float = 1e-4
) -> None:
    """``batched``: layers of ``[B, T, D]`` from one padded batch; ``frames[i]``: item i's valid frames;
    ``single(i)``: the reference's layers ``[1, t_i, D]`` for item i run alone. Each item's valid
    frames must equal the reference's, layer by layer."""
    for i, t in enumerate(frames):
        ref = single(i)
        assert len(ref) == len(batched)
        for k, (b, r) in enumerate(zip(batched, ref)):
            assert r.shape[1] == t, f"item {i} layer {k}: reference has {r.shape[1]} frames, ours {t}"
            torch.testing.assert_close(b[i, :t], r[0], atol=atol, rtol=0, msg=lambda m: f"item {i} layer {k}: {m}")
