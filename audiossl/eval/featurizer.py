"""Learnable weighted sum of frozen upstream layers (SUPERB's featurizer).

Input is the stack of all cached layers ``[batch, frame, layer, dim]`` (or ``[batch, layer, dim]``
for mean-pooled utterance features); the output drops the layer axis. Weights are a softmax over
per-layer logits initialised to zero, so training starts from the plain average of the layers.
With ``layer=N`` the featurizer picks one layer and learns nothing.
"""

from __future__ import annotations

import torch
from torch import nn


class Featurizer(nn.Module):
    def __init__(self, num_layers: int, layer: int | None = None) -> None:
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"num_layers must be ≥ 1, got {num_layers}")
        if layer is not None and not 0 <= layer < num_layers:
            raise ValueError(f"--layer {layer} is out of range: the upstream has layers 0..{num_layers - 1}")
        self.num_layers = num_layers
        self.layer = layer
        # With a fixed layer the cache holds just that one layer, so the stack has size 1.
        self.weights = nn.Parameter(torch.zeros(num_layers)) if layer is None else None

    @property
    def stacked_layers(self) -> int:
        """How many layers the input stack carries (all, or the one picked)."""
        return self.num_layers if self.layer is None else 1

    def forward(self, stack: torch.Tensor) -> torch.Tensor:
        """``[..., layer, dim]`` → ``[..., dim]``."""
        if stack.shape[-2] != self.stacked_layers:
            raise ValueError(f"expected {self.stacked_layers} stacked layers, got input {tuple(stack.shape)}")
        if self.weights is None:
            return stack[..., 0, :]
        w = torch.softmax(self.weights, dim=0).to(stack.dtype)
        # Summed in the stack's dtype even under autocast, which would first copy the whole stack to bf16
        # (2x the time of this sum on a CPU); only the [..., dim] result is cast to the autocast dtype,
        # so the head's masks and elementwise ops stay in that dtype as they would under autocast.
        device = stack.device.type
        with torch.autocast(device, enabled=False):
            out = torch.einsum("...ld,l->...d", stack, w)
        return out.to(torch.get_autocast_dtype(device)) if torch.is_autocast_enabled(device) else out

    def layer_weights(self) -> list[float]:
        """The normalised weight of each upstream layer (one-hot for a fixed layer)."""
        if self.weights is None:
            return [1.0 if i == self.layer else 0.0 for i in range(self.num_layers)]
        return torch.softmax(self.weights.detach().float(), dim=0).tolist()
