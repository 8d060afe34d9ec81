"""Multi-layer convolutional positional encoder of data2vec (fairseq data2vec 2.0 ``AudioEncoder``
``relative_positional_encoder``, HF ``Data2VecAudioPositionalConvEmbedding``).

``depth`` blocks of grouped Conv1d (kernel ``k``, padding ``k // 2``; an even kernel drops the last
output frame, fairseq ``SamePad``) → LayerNorm over channels *without* affine → GELU. The result is
added to the input by the caller. Unlike wav2vec 2.0's single wide conv
(:class:`audiossl.models.transformer.ConvPositionalEmbedding`) there is no weight norm.
"""

from __future__ import annotations

from torch import Tensor, nn
from torch.nn import functional as F


class PosConvBlock(nn.Module):
    """Conv1d → (trim) → LayerNorm(no affine) → GELU: ``[batch, in_dim, frame]`` → ``[batch, out_dim, frame]``
    (also the block of data2vec 2.0's convolutional decoder, fairseq ``Decoder1d``)."""

    def __init__(self, dim: int, kernel: int, groups: int, out_dim: int | None = None):
        super().__init__()
        out_dim = dim if out_dim is None else out_dim
        self.conv = nn.Conv1d(dim, out_dim, kernel, padding=kernel // 2, groups=groups)
        self.norm = nn.LayerNorm(out_dim, elementwise_affine=False)
        self.trim = 1 if kernel % 2 == 0 else 0

    def forward(self, x: Tensor) -> Tensor:
        y = self.conv(x)
        if self.trim:
            y = y[..., : -self.trim]
        return F.gelu(self.norm(y.transpose(1, 2)).transpose(1, 2))


class StackedConvPositionalEncoder(nn.Module):
    """``x [batch, frame, dim]`` → positional term ``[batch, frame, dim]`` (not yet added).

    Args:
        dim: model width (fairseq ``embed_dim``, HF ``hidden_size``).
        depth: number of conv blocks (fairseq ``conv_pos_depth``, HF ``num_conv_pos_embeddings``).
        kernel: kernel of each block (fairseq ``max(3, conv_pos_width // conv_pos_depth)``, HF
            ``conv_pos_kernel_size``; 19 for data2vec Base).
        groups: conv groups (fairseq ``conv_pos_groups``, HF ``num_conv_pos_embedding_groups``).
    """

    def __init__(self, dim: int, depth: int = 5, kernel: int = 19, groups: int = 16):
        super().__init__()
        if dim % groups:
            raise ValueError(f"positional conv: dim {dim} is not divisible by groups {groups}")
        self.layers = nn.ModuleList(PosConvBlock(dim, kernel, groups) for _ in range(depth))
        self.kernel, self.groups = kernel, groups

    def forward(self, x: Tensor, padding_mask: Tensor | None = None) -> Tensor:
        """``x [B, T, D]`` with padded frames zeroed; ``padding_mask [B, T]`` (True = padding) or None.

        Padded frames are zeroed again before every block: a block turns zeros into non-zeros (bias, LN),
        which the next block's kernel would carry into the item's last frames. So a padded batch gives
        each item its single-pass values (HF and fairseq do not re-zero, so their padded batches differ
        from single items in the last few frames)."""
        keep = None if padding_mask is None else (~padding_mask)[:, None, :].to(x.dtype)
        y = x.transpose(1, 2)
        for i, layer in enumerate(self.layers):
            if keep is not None and i > 0:
                y = y * keep
            y = layer(y)
        return y.transpose(1, 2)
