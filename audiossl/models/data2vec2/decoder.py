"""The light convolutional decoder of data2vec 2.0 (fairseq ``Decoder1d`` + ``decoder_input``).

The student's outputs for the kept frames and Gaussian mask tokens (std ``mask_noise_std``) for the
removed ones are put back in time order, then ``decoder_layers`` blocks of grouped Conv1d → LayerNorm
(no affine) → GELU (a residual around every block whose width does not change) and a Linear back to
the model width predict the teacher's target at every frame.

Padded frames are zeroed before each block (fairseq lets them into the convolutions), so an item's
predictions do not depend on how much padding its batch has.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from audiossl.models.conv_pos import PosConvBlock


class ConvDecoder(nn.Module):
    """``[R, K, D]`` kept-frame outputs → ``[R, T, D]`` predictions."""

    def __init__(self, dim: int, decoder_dim: int, kernel: int, groups: int, layers: int, input_dropout: float, noise_std: float):
        super().__init__()
        self.blocks = nn.ModuleList(PosConvBlock(dim if i == 0 else decoder_dim, kernel, groups, decoder_dim) for i in range(layers))
        self.proj = nn.Linear(decoder_dim, dim)
        self.input_dropout, self.noise_std = input_dropout, noise_std

    def forward(self, x: Tensor, ids_restore: Tensor, valid: Tensor | None = None, generator: torch.Generator | None = None) -> Tensor:
        """Args:
            x: ``[R, K, D]`` student outputs of the kept frames.
            ids_restore: ``[R, T]`` index into ``cat([kept, removed])`` restoring time order.
            valid: ``[R, T]`` bool, False at padding; None = nothing padded.
            generator: for the mask tokens.
        Returns: ``[R, T, D]``.
        """
        x = F.dropout(x, self.input_dropout, training=self.training)
        r, k, d = x.shape
        t = ids_restore.shape[1]
        tokens = torch.randn(r, t - k, d, device=x.device, dtype=x.dtype, generator=generator) * self.noise_std
        x = torch.cat([x, tokens], dim=1).gather(1, ids_restore[..., None].expand(-1, -1, d))
        keep = None if valid is None else valid[:, None, :].to(x.dtype)
        y = x.transpose(1, 2)
        for block in self.blocks:
            if keep is not None:
                y = y * keep
            out = block(y)
            y = out + y if out.shape[1] == y.shape[1] else out
        return self.proj(y.transpose(1, 2))
