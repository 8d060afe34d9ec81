"""Lightweight downstream heads (SUPERB / MARBLE), all on top of the featurizer output.

Frame inputs are ``[batch, frame, dim]`` with ``lengths [batch]`` (long); pooled inputs are
``[batch, dim]``. Masks are boolean (True = real frame); nothing here syncs with the host.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


def length_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """``[batch]`` → boolean ``[batch, max_len]``, True on real frames."""
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]


def masked_mean(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """``[batch, frame, dim]`` → ``[batch, dim]`` averaging real frames only."""
    m = length_mask(lengths, x.shape[1]).to(x.dtype)[..., None]
    return (x * m).sum(1) / m.sum(1).clamp_min(1.0)


@dataclass
class HeadConfig:
    """Sizes of a head; task specs set SUPERB/MARBLE defaults, the demo uses smaller ones."""

    kind: str = "linear"
    """linear | bilstm | pool_linear | pool_mlp | xvector"""
    hidden: int = 256
    """BiLSTM cells per direction (SUPERB ASR: 1024), MLP hidden units, or TDNN channels."""
    num_layers: int = 2
    """BiLSTM layers."""
    dropout: float = 0.1
    embed_dim: int = 128
    """x-vector embedding size (512 in the x-vector paper)."""


class LinearHead(nn.Module):
    """Frame-wise linear layer: ``[batch, frame, dim]`` → ``[batch, frame, out]`` (PR: SUPERB linear CTC)."""

    def __init__(self, in_dim: int, out_dim: int, cfg: HeadConfig) -> None:
        super().__init__()
        self.proj = nn.Linear(in_dim, out_dim)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


class BiLSTMHead(nn.Module):
    """Stacked BiLSTM + linear: ``[batch, frame, dim]`` → ``[batch, frame, out]`` (SUPERB ASR).

    Each layer is two unidirectional LSTMs over the padded batch; the backward one reads every item
    reversed *within its length* (padding stays at the end), so no output of a valid frame ever sees
    padding: the same function as ``nn.LSTM(bidirectional=True)`` on a packed sequence (tested), but
    on the padded fast path (oneDNN on CPU, ~3× faster for the demo's ASR head than packing).
    Outputs at padded frames are unspecified (every objective masks them).
    """

    def __init__(self, in_dim: int, out_dim: int, cfg: HeadConfig) -> None:
        super().__init__()
        dims = [in_dim] + [2 * cfg.hidden] * (cfg.num_layers - 1)
        self.forward_lstms = nn.ModuleList(nn.LSTM(d, cfg.hidden, batch_first=True) for d in dims)
        self.backward_lstms = nn.ModuleList(nn.LSTM(d, cfg.hidden, batch_first=True) for d in dims)
        self.dropout = nn.Dropout(cfg.dropout if cfg.num_layers > 1 else 0.0)  # between layers, as nn.LSTM
        self.proj = nn.Linear(2 * cfg.hidden, out_dim)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        t = torch.arange(x.shape[1], device=x.device)[None, :]
        lengths = lengths.to(x.device)[:, None]
        reverse = torch.where(t < lengths, lengths - 1 - t, t)[..., None]  # [B, T, 1]: an involution
        for i, (fwd, bwd) in enumerate(zip(self.forward_lstms, self.backward_lstms)):
            if i:
                x = self.dropout(x)
            a, _ = fwd(x)
            b, _ = bwd(x.gather(1, reverse.expand(-1, -1, x.shape[-1])))
            x = torch.cat([a, b.gather(1, reverse.expand(-1, -1, b.shape[-1]))], dim=-1)
        return self.proj(x)


class PooledHead(nn.Module):
    """Mean-pool (when given frames) + linear, or + one-hidden-layer MLP (MARBLE probe).

    ``[batch, frame, dim]`` with lengths, or already pooled ``[batch, dim]`` → ``[batch, out]``.
    """

    def __init__(self, in_dim: int, out_dim: int, cfg: HeadConfig) -> None:
        super().__init__()
        if cfg.kind == "pool_mlp":
            self.net = nn.Sequential(nn.Linear(in_dim, cfg.hidden), nn.ReLU(), nn.Dropout(cfg.dropout), nn.Linear(cfg.hidden, out_dim))
        else:
            self.net = nn.Linear(in_dim, out_dim)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        if x.dim() == 3:
            x = masked_mean(x, lengths)
        return self.net(x)


class XVector(nn.Module):
    """TDNN x-vector (Snyder et al. 2018): 5 dilated conv layers, mean+std pooling, embedding.

    ``[batch, frame, dim]`` → speaker embedding ``[batch, embed_dim]``.
    """

    def __init__(self, in_dim: int, cfg: HeadConfig) -> None:
        super().__init__()
        c = cfg.hidden
        spec = [(in_dim, c, 5, 1), (c, c, 3, 2), (c, c, 3, 3), (c, c, 1, 1), (c, 3 * c, 1, 1)]
        self.tdnn = nn.ModuleList(
            nn.Sequential(nn.Conv1d(i, o, k, dilation=d, padding=d * (k - 1) // 2), nn.ReLU(), nn.BatchNorm1d(o))
            for i, o, k, d in spec
        )
        self.embed = nn.Linear(6 * c, cfg.embed_dim)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        m = length_mask(lengths, x.shape[1]).to(x.dtype)[:, None, :]  # [batch, 1, frame]
        h = x.transpose(1, 2) * m  # [batch, dim, frame]
        for layer in self.tdnn:
            h = layer(h) * m  # zero the padding so it never leaks into real frames through the context
        n = m.sum(2).clamp_min(1.0)
        mean = (h * m).sum(2) / n
        var = ((h - mean[..., None]) ** 2 * m).sum(2) / n
        return self.embed(torch.cat([mean, var.clamp_min(1e-6).sqrt()], dim=1))


class AMSoftmax(nn.Module):
    """Additive-margin softmax (Wang et al. 2018): logits ``s·(cos θ − m·onehot)``.

    ``embeddings [batch, dim]``, ``targets [batch]`` → scalar loss; :meth:`logits` for accuracy.
    """

    def __init__(self, dim: int, num_classes: int, margin: float = 0.2, scale: float = 30.0) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(num_classes, dim) * 0.01)
        self.margin, self.scale = margin, scale

    def logits(self, emb: torch.Tensor) -> torch.Tensor:
        return F.normalize(emb, dim=-1) @ F.normalize(self.weight, dim=-1).t()

    def forward(self, emb: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        cos = self.logits(emb)
        cos = cos - self.margin * F.one_hot(targets, cos.shape[1]).to(cos.dtype)
        return F.cross_entropy(self.scale * cos, targets)


def build_head(cfg: HeadConfig, in_dim: int, out_dim: int) -> nn.Module:
    """The head module for ``cfg.kind`` (x-vector: ``out_dim`` is the number of train speakers)."""
    if cfg.kind == "linear":
        return LinearHead(in_dim, out_dim, cfg)
    if cfg.kind == "bilstm":
        return BiLSTMHead(in_dim, out_dim, cfg)
    if cfg.kind in ("pool_linear", "pool_mlp"):
        return PooledHead(in_dim, out_dim, cfg)
    if cfg.kind == "xvector":
        return XVectorHead(in_dim, out_dim, cfg)
    raise ValueError(f"unknown head kind {cfg.kind!r}; choose linear, bilstm, pool_linear, pool_mlp or xvector")


class XVectorHead(nn.Module):
    """x-vector + AM-softmax classifier over the train speakers; ``forward`` gives embeddings."""

    def __init__(self, in_dim: int, num_speakers: int, cfg: HeadConfig) -> None:
        super().__init__()
        self.xvector = XVector(in_dim, cfg)
        self.amsoftmax = AMSoftmax(cfg.embed_dim, num_speakers)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.xvector(x, lengths)
