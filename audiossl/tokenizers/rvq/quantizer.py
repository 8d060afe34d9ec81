"""Residual vector quantisation with EMA codebooks (SoundStream / EnCodec style).

Each level is an :class:`EMAQuantizer`: its codebook is a *buffer* moved towards the mean of
the vectors assigned to each code by an exponential moving average (van den Oord et al. 2017,
appendix; EnCodec ``core_vq.py``), never by the optimiser. The first training batch initialises
the codebook with a few k-means iterations; codes whose EMA usage falls below
``dead_threshold`` are restarted on vectors of the current batch drawn in proportion to their
quantisation error (dead-code restart, k-means++ style), with a short grace period, so all codes
stay in use. Gradients reach the encoder through the straight-through estimator, and a
commitment loss pulls the encoder output towards its codes.

Everything in ``forward`` stays on the device (no ``.item()``, no data-dependent Python
branches), and it runs in float32 even under bf16/fp16 autocast (distances and EMA sums lose
too much in half precision). Under ``torch.distributed`` the EMA statistics are all-reduced and
initialisation/restarts are broadcast from rank 0, so every rank holds the same codebooks.

Seeds and restarted codes drawn from the batch get a small random offset (:func:`spread`): drawn
with replacement, two codes can land on one vector, and equal codes tie in every nearest-code
search, which the matmul kernel's rounding then decides (AVX2 and AVX-512 CPUs disagree).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from audiossl.tokenizers.vq import JITTER


@dataclass
class RVQConfig:
    num_levels: int = 8
    """Residual codebooks (codes per frame)."""
    codebook_size: int = 1024
    """Codes per level."""
    dim: int = 128
    """Vector size (the encoder's latent dimension)."""
    decay: float = 0.99
    """EMA decay of code counts and sums."""
    eps: float = 1e-5
    """Laplace smoothing of the code counts."""
    dead_threshold: float = 1.0
    """Codes whose EMA count (assignments per batch) falls below this are restarted."""
    kmeans_iters: int = 10
    """k-means iterations on the first batch (0 = random batch vectors)."""
    commitment_weight: float = 1.0
    """Weight of ``||x - sg(q)||^2`` summed over levels."""


@dataclass
class RVQOutput:
    """``quantized [batch, frame, dim]`` (straight-through), ``codes [batch, frame, level]`` int64,
    ``commitment`` scalar, ``usage [level]`` fraction of codes whose EMA count is above the dead
    threshold (in training: before this step's restarts; in eval the stored counts, where freshly
    restarted codes still count as in use), ``perplexity [level]`` of this batch's code histogram."""

    quantized: Tensor
    codes: Tensor
    commitment: Tensor
    usage: Tensor
    perplexity: Tensor


RESTART_GRACE = 2.0
"""A restarted code's EMA count starts at this multiple of the dead threshold."""


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def spread(rows: Tensor, x: Tensor, w: Tensor) -> Tensor:
    """``rows [k, dim]`` drawn from ``x [N, dim]`` (weights ``w [N]``), each moved by a random offset of
    :data:`JITTER` × the batch's per-dimension standard deviation, so copies of one vector differ."""
    n = w.sum().clamp_min(1.0)
    mean = (x * w[:, None]).sum(0) / n
    std = (((x - mean) ** 2 * w[:, None]).sum() / (n * x.shape[-1])).sqrt()
    return rows + JITTER * std * torch.randn_like(rows)


def _kmeans(x: Tensor, w: Tensor, k: int, iters: int) -> tuple[Tensor, Tensor]:
    """Weighted k-means of ``x [N, D]`` (weights ``w [N]``, 0 = padding) → ``(centroids [k, D], counts [k])``.

    Seeds are drawn from the valid vectors with replacement (so ``N < k`` works) and :func:`spread`
    apart; an empty cluster keeps its seed.
    """
    seeds = torch.multinomial(w + 1e-12 * (w.sum() == 0), k, replacement=True)
    c = spread(x[seeds], x, w)
    counts = torch.zeros(k, device=x.device)
    for _ in range(max(iters, 1)):
        codes = torch.cdist(x, c).argmin(-1)
        counts = torch.zeros(k, device=x.device).index_add_(0, codes, w)
        sums = torch.zeros_like(c).index_add_(0, codes, x * w[:, None])
        c = torch.where(counts[:, None] > 0, sums / counts.clamp_min(1e-12)[:, None], c)
    return c, counts


class EMAQuantizer(nn.Module):
    """One codebook ``[codebook_size, dim]`` updated by EMA; see the module docstring."""

    def __init__(self, codebook_size: int, dim: int, *, decay: float = 0.99, eps: float = 1e-5,
                 dead_threshold: float = 1.0, kmeans_iters: int = 10) -> None:
        super().__init__()
        self.codebook_size, self.dim = codebook_size, dim
        self.decay, self.eps, self.dead_threshold, self.kmeans_iters = decay, eps, dead_threshold, kmeans_iters
        self.register_buffer("codebook", torch.randn(codebook_size, dim) * 0.01)
        self.register_buffer("cluster_size", torch.zeros(codebook_size))
        self.register_buffer("embed_sum", self.codebook.clone())
        self.register_buffer("initialized", torch.zeros((), dtype=torch.bool))
        # Host-side mirror of ``initialized`` so forward needs no device→host read; kept in sync on load.
        self._initialized = False

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        flag = state_dict.get(prefix + "initialized")
        if flag is not None and flag.device.type != "meta":
            self._initialized = bool(flag)

    def encode(self, x: Tensor) -> Tensor:
        """``x [N, dim]`` → nearest codes ``[N]``."""
        d = x.pow(2).sum(-1, keepdim=True) - 2 * x @ self.codebook.t() + self.codebook.pow(2).sum(-1)[None]
        return d.argmin(-1)

    def decode(self, codes: Tensor) -> Tensor:
        """``codes [...]`` → vectors ``[..., dim]``."""
        return F.embedding(codes, self.codebook)

    @torch.no_grad()
    def _init(self, x: Tensor, w: Tensor) -> None:
        c, counts = _kmeans(x, w, self.codebook_size, self.kmeans_iters)
        if _distributed():
            dist.broadcast(c, 0)
            dist.broadcast(counts, 0)
        self.codebook.copy_(c)
        self.cluster_size.copy_(counts)
        self.embed_sum.copy_(c * counts[:, None])
        self.initialized.fill_(True)
        self._initialized = True

    @torch.no_grad()
    def _update(self, x: Tensor, w: Tensor, codes: Tensor, err: Tensor) -> Tensor:
        """EMA step + dead-code restart; returns the usage before the restart (scalar tensor)."""
        counts = torch.zeros(self.codebook_size, device=x.device).index_add_(0, codes, w)
        sums = torch.zeros_like(self.codebook).index_add_(0, codes, x * w[:, None])
        if _distributed():
            dist.all_reduce(counts)
            dist.all_reduce(sums)
        self.cluster_size.mul_(self.decay).add_(counts, alpha=1 - self.decay)
        self.embed_sum.mul_(self.decay).add_(sums, alpha=1 - self.decay)
        n = self.cluster_size.sum()
        smoothed = (self.cluster_size + self.eps) / (n + self.codebook_size * self.eps) * n
        self.codebook.copy_(self.embed_sum / smoothed[:, None])
        # Dead-code restart: move rarely used codes onto vectors of this batch drawn in proportion to
        # their quantisation error (k-means++ style), i.e. where the codebook serves the audio worst.
        dead = self.cluster_size < self.dead_threshold
        usage = 1.0 - dead.float().mean()
        p = w * (err + 1e-6 * err.mean() + 1e-12)
        fresh = spread(x[torch.multinomial(p, self.codebook_size, replacement=True)], x, w)
        if _distributed():
            dist.broadcast(fresh, 0)
        self.codebook.copy_(torch.where(dead[:, None], fresh, self.codebook))
        # A restarted code starts at RESTART_GRACE × the threshold, so it survives a few batches
        # that do not contain audio like the one it was placed on.
        size = self.dead_threshold * RESTART_GRACE
        self.embed_sum.copy_(torch.where(dead[:, None], fresh * size, self.embed_sum))
        self.cluster_size.copy_(torch.where(dead, torch.full_like(self.cluster_size, size), self.cluster_size))
        return usage

    def forward(self, x: Tensor, w: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``x [N, dim]`` float32, ``w [N]`` (1 = real frame, 0 = padding) →
        ``(q [N, dim]`` without gradient, ``codes [N]``, ``usage`` scalar, ``perplexity`` scalar)."""
        if self.training and not self._initialized:
            self._init(x.detach(), w)
        codes = self.encode(x.detach())
        q = self.decode(codes).detach()  # the codes chosen before this step's EMA update
        if self.training:
            usage = self._update(x.detach(), w, codes, (x.detach() - q).pow(2).sum(-1))
        else:
            usage = (self.cluster_size >= self.dead_threshold).float().mean()
        hist = torch.zeros(self.codebook_size, device=x.device).index_add_(0, codes, w)
        p = hist / hist.sum().clamp_min(1e-12)
        perplexity = torch.exp(-(p * torch.log(p.clamp_min(1e-12))).sum())
        return q, codes, usage, perplexity


class ResidualVQ(nn.Module):
    """``num_levels`` :class:`EMAQuantizer` s, each quantising the residual the previous ones left."""

    def __init__(self, cfg: RVQConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.levels = nn.ModuleList(
            EMAQuantizer(cfg.codebook_size, cfg.dim, decay=cfg.decay, eps=cfg.eps,
                         dead_threshold=cfg.dead_threshold, kmeans_iters=cfg.kmeans_iters)
            for _ in range(cfg.num_levels)
        )

    def forward(self, x: Tensor, mask: Tensor | None = None, num_levels: int | None = None) -> RVQOutput:
        """``x [batch, frame, dim]``, ``mask [batch, frame]`` (True = real frame) → :class:`RVQOutput`.

        ``num_levels``: use only the first levels (lower bitrate); default all.
        """
        b, t, d = x.shape
        with torch.autocast(x.device.type, enabled=False):
            flat = x.reshape(b * t, d).float()
            w = torch.ones(b * t, device=x.device) if mask is None else mask.reshape(b * t).float()
            residual = flat
            total = torch.zeros_like(flat)
            commitment = flat.new_zeros(())
            codes, usage, perplexity = [], [], []
            denom = w.sum().clamp_min(1.0) * d
            for vq in self.levels[: num_levels or len(self.levels)]:
                q, c, u, p = vq(residual, w)
                commitment = commitment + ((residual - q).pow(2).sum(-1) * w).sum() / denom
                residual = residual - q
                total = total + q
                codes.append(c)
                usage.append(u)
                perplexity.append(p)
            quantized = flat + (total - flat).detach()  # straight-through estimator
        return RVQOutput(
            quantized.reshape(b, t, d).to(x.dtype), torch.stack(codes, -1).reshape(b, t, -1),
            commitment * self.cfg.commitment_weight, torch.stack(usage), torch.stack(perplexity),
        )

    @torch.no_grad()
    def encode(self, x: Tensor, num_levels: int | None = None) -> Tensor:
        """``x [batch, frame, dim]`` → ``codes [batch, frame, level]`` (no EMA update)."""
        b, t, d = x.shape
        residual = x.reshape(b * t, d).float()
        codes = []
        for vq in self.levels[: num_levels or len(self.levels)]:
            c = vq.encode(residual)
            residual = residual - vq.decode(c)
            codes.append(c)
        return torch.stack(codes, -1).reshape(b, t, -1)

    @torch.no_grad()
    def decode(self, codes: Tensor) -> Tensor:
        """``codes [batch, frame, level]`` → ``[batch, frame, dim]`` (sum of the levels' vectors)."""
        return sum(vq.decode(codes[..., i]) for i, vq in enumerate(self.levels[: codes.shape[-1]]))
