"""EMA vector quantizer with a cosine (l2-normalised) codebook: unilm's ``NormEMAVectorQuantizer`` (BEATs).

* The codebook and its EMA statistics are **buffers**, not parameters: no optimiser (and no weight
  decay) ever touches them; only :meth:`EMAVectorQuantizer.forward` in training mode changes them.
* Inputs and codes are l2-normalised; the nearest code is found with ``‖x‖² + ‖c‖² − 2 x·c``, one
  matmul per chunk (:func:`audiossl.tokenizers.kmeans.assign`), never a ``[N, K, D]`` broadcast.
* The first training batch initialises the codebook with spherical k-means on its vectors (10
  iterations, as unilm's ``kmeans(use_cosine_sim=True)``), from :func:`distinct_seeds` instead of
  unilm's sampling with replacement: no two codes are ever identical. With two equal codes the
  nearest one is decided by the matmul kernel's rounding, so the trained codebook, and every loss
  after it, would depend on the CPU/GPU the run used (AVX2 and AVX-512 kernels disagree).
* Codebook update, ``update="unilm"`` (default, BEATs ``NormEMAVectorQuantizer.forward``): each code
  used by the batch moves towards the **l2-normalised mean** of its vectors on the unit sphere,
  ``c ← l2norm(decay · c + (1 − decay) · l2norm(sum / count))``; unused codes stay where they are
  (BEATs keeps dead codes). ``ema_count`` is unilm's ``quantize.cluster_size`` (EMA of the per-code
  counts: a statistic, not used by the update); ``ema_sum`` is not used by this update.
* ``update="laplace"`` (our earlier variant, an option): EMA of per-code counts and sums with
  Laplace-smoothed counts (van den Oord et al. 2017), ``c = l2norm(ema_sum / smoothed count)``.
* Both are done in fp32 with autocast off, so bf16 training leaves the statistics exact; counts and
  sums are summed over data-parallel ranks when ``torch.distributed`` is initialised (as unilm).
* Dead-code restart (an option, ``dead_code_threshold > 0``; BEATs: off): a code whose EMA count
  falls below that fraction of the mean count is moved onto a jittered random vector of the current
  batch (Jukebox / SoundStream practice); restarting keeps more of the codebook in use on small corpora.
* Padding: only valid vectors (``mask``) initialise, update and enter the loss; unilm's quantizer
  sees no padding mask.
* Straight-through estimator: the output is ``z + (code − z).detach()``; commitment loss
  ``commitment_weight × mse(z, code)`` (BEATs ``beta``).
* Usage (see :attr:`VQOutput.usage`) and perplexity of the batch are returned as tensors; ``forward`` never syncs with the host
  (apart from one read of the ``initialised`` flag on the first call). Eval mode changes nothing
  (unilm also updates ``cluster_size`` in eval mode; we do not, so labelling is a pure function).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as F
import torch.distributed as dist

from audiossl.tokenizers.kmeans import assign


UPDATES = ("unilm", "laplace")


@dataclass
class VQConfig:
    num_codes: int = 1024
    """Codebook size (BEATs ``quant_n``)."""
    dim: int = 256
    """Code dimension (BEATs ``quant_dim``)."""
    decay: float = 0.99
    """EMA decay of the counts and sums (BEATs ``decay``)."""
    eps: float = 1e-5
    """Laplace smoothing of the EMA counts (``update="laplace"`` only; BEATs ``eps``)."""
    update: str = "unilm"
    """Codebook update: ``unilm`` (EMA of normalised batch means on the sphere, BEATs) or ``laplace``
    (EMA of sums / Laplace-smoothed counts); see the module docstring."""
    commitment_weight: float = 1.0
    """Weight of ``mse(z, code.detach())`` (BEATs ``beta``)."""
    kmeans_init: bool = True
    """Initialise the codebook with spherical k-means on the first training batch (else random unit vectors)."""
    kmeans_iters: int = 10
    """Lloyd iterations of that initialisation."""
    dead_code_threshold: float = 0.0
    """Restart codes whose EMA count is below this fraction of the mean count (0 = never, as BEATs)."""
    chunk_size: int = 16384
    """Vectors per distance matmul (bounds memory at ``chunk_size × num_codes`` floats)."""

    def __post_init__(self) -> None:
        if self.update not in UPDATES:
            raise ValueError(f"VQ update must be one of {UPDATES}, got {self.update!r}")


@dataclass
class VQOutput:
    quantized: Tensor
    """``[..., dim]`` fp32 straight-through codes (gradient flows to the input)."""
    codes: Tensor
    """``[...]`` int64 code indices."""
    commit_loss: Tensor
    """Scalar: ``commitment_weight × mean‖z − code‖²`` over valid vectors."""
    usage: Tensor
    """Scalar: codes used by this batch's valid vectors / ``min(num_codes, valid vectors)``, i.e. the
    fraction of the codes the batch *could* use that it does (1 = no two vectors share a code when
    the batch is smaller than the codebook; for large batches, the fraction of the codebook used)."""
    perplexity: Tensor
    """Scalar: ``exp(H(p))`` of the batch's code distribution (``num_codes`` = uniform use)."""


def l2norm(x: Tensor) -> Tensor:
    return F.normalize(x, p=2.0, dim=-1, eps=1e-6)


JITTER = 1e-2
"""Size of the random offset that separates a code from its copies: ≈ 1e5 × float32 rounding, so no
kernel can flip the nearest code, and small beside the data (unit vectors: cosine ≈ 0.99995)."""


def jitter(x: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Unit rows ``x [n, dim]`` moved by a random offset of norm ≈ :data:`JITTER`, re-normalised."""
    noise = torch.randn(x.shape, generator=generator, device="cpu" if generator is not None else x.device).to(x.device)
    return l2norm(x + JITTER / x.shape[-1] ** 0.5 * noise)


def distinct_seeds(x: Tensor, k: int, generator: torch.Generator | None = None) -> Tensor:
    """``k`` pairwise-distinct seeds ``[k, dim]`` from unit rows ``x [n, dim]``.

    The distinct rows of ``x`` in random order come first; when there are fewer than ``k`` of them
    (a small first batch, or digital silence repeating one vector), the rest are jittered copies of
    random distinct rows. Sampling with replacement instead (BEATs' ``sample_vectors``) gives equal
    seeds, which tie in every nearest-code search.
    """
    u = torch.unique(x, dim=0)  # one-off host sync (initialisation only)
    u = u[torch.randperm(u.shape[0], generator=generator, device="cpu").to(x.device)]
    if u.shape[0] >= k:
        return u[:k].clone()
    extra = torch.randint(0, u.shape[0], (k - u.shape[0],), generator=generator, device="cpu").to(x.device)
    return torch.cat([u, jitter(u[extra], generator)])


def spherical_kmeans(x: Tensor, k: int, iters: int, generator: torch.Generator | None = None, chunk_size: int = 16384) -> Tensor:
    """Cosine k-means on unit vectors ``x [n, dim]`` → unit centroids ``[k, dim]`` (fp32).

    Starts from :func:`distinct_seeds`; empty clusters keep their centre.
    """
    x = l2norm(x.float())
    c = distinct_seeds(x, k, generator)
    for _ in range(iters):
        labels, _ = assign(x, c, chunk_size)
        sums = torch.zeros_like(c).index_add_(0, labels, x)
        counts = torch.zeros(k, device=x.device).index_add_(0, labels, torch.ones_like(labels, dtype=torch.float32))
        c = torch.where(counts[:, None] > 0, l2norm(sums), c)
    return c


def _all_reduce(*tensors: Tensor) -> None:
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        for t in tensors:
            dist.all_reduce(t)


class EMAVectorQuantizer(nn.Module):
    """Cosine EMA vector quantizer; see the module docstring.

    Buffers: ``codebook [K, D]`` (unit rows), ``ema_count [K]``, ``ema_sum [K, D]``,
    ``initialised`` (bool scalar). All fp32.
    """

    def __init__(self, cfg: VQConfig, seed: int = 0):
        super().__init__()
        self.cfg = cfg
        g = torch.Generator().manual_seed(seed)
        self.register_buffer("codebook", l2norm(torch.randn(cfg.num_codes, cfg.dim, generator=g)))
        self.register_buffer("ema_count", torch.ones(cfg.num_codes))
        self.register_buffer("ema_sum", self.codebook.clone())
        self.register_buffer("initialised", torch.tensor(not cfg.kmeans_init))
        self._initialised: bool | None = None  # host copy of the flag (read once, then kept)
        # k-means init and dead-code restarts draw from the global torch RNG: the trainer saves and
        # restores it with every checkpoint, so a resumed run restarts exactly the same codes.
        self._register_load_state_dict_pre_hook(self._forget_flag)

    def _forget_flag(self, *args, **kwargs) -> None:
        self._initialised = None

    @torch.no_grad()
    def nearest(self, z: Tensor) -> Tensor:
        """Code index of each ``z [..., dim]`` (normalised first) → ``[...]`` int64."""
        flat = l2norm(z.reshape(-1, z.shape[-1]).float())
        codes, _ = assign(flat, self.codebook, self.cfg.chunk_size)
        return codes.view(z.shape[:-1])

    def forward(self, z: Tensor, mask: Tensor | None = None) -> VQOutput:
        """``z [..., dim]``, ``mask [...]`` bool (True = valid vector; None = all) → :class:`VQOutput`.

        In training mode also initialises (first call) and EMA-updates the codebook from the valid vectors.
        """
        shape = z.shape[:-1]
        with torch.autocast(device_type=z.device.type, enabled=False):
            flat = l2norm(z.reshape(-1, z.shape[-1]).float())
            valid = (torch.ones(flat.shape[0], device=z.device) if mask is None else mask.reshape(-1).to(flat.dtype))
            if self.training:
                self._maybe_init(flat, valid)
            codes, _ = assign(flat.detach(), self.codebook, self.cfg.chunk_size)
            counts = torch.zeros(self.cfg.num_codes, device=z.device).index_add_(0, codes, valid)
            q = self.codebook[codes]  # the codes as they were when chosen (a copy; the update below is in place)
            if self.training:
                self._ema_update(flat.detach(), codes, valid, counts.clone())
            n_valid = valid.sum().clamp_min(1.0)
            sq_err = ((flat - q.detach()) ** 2).sum(-1) * valid
            commit = self.cfg.commitment_weight * sq_err.sum() / (n_valid * flat.shape[-1])
            quantized = flat + (q - flat).detach()
            p = counts / counts.sum().clamp_min(1.0)
            perplexity = torch.exp(-(p * torch.log(p.clamp_min(1e-10))).sum())
            usage = (counts > 0).float().sum() / n_valid.clamp(max=float(self.cfg.num_codes))
        return VQOutput(quantized.view(*shape, -1), codes.view(shape), commit, usage, perplexity)

    @torch.no_grad()
    def _maybe_init(self, flat: Tensor, valid: Tensor) -> None:
        if self._initialised is None:
            self._initialised = bool(self.initialised)
        if self._initialised:
            return
        # One-off host sync: pick the valid rows for k-means.

        x = flat[valid > 0]
        distributed = dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
        if x.shape[0] == 0 and not distributed:
            return  # an all-padding batch: initialise on the next one
        if x.shape[0] > 0:
            c = spherical_kmeans(x, self.cfg.num_codes, self.cfg.kmeans_iters, None, self.cfg.chunk_size)
        else:
            c = self.codebook.clone()
        if distributed:  # every rank takes rank 0's centroids (rank 0 must not be all padding)
            dist.broadcast(c, src=0)
            x = x if x.shape[0] > 0 else c
        labels, _ = assign(x, c, self.cfg.chunk_size)
        counts = torch.zeros(self.cfg.num_codes, device=x.device).index_add_(0, labels, torch.ones_like(labels, dtype=torch.float32))
        mean = counts.mean().clamp_min(1e-3)
        self.codebook.copy_(c)
        if self.cfg.update == "unilm" and self.cfg.dead_code_threshold <= 0:
            # unilm: quantize.cluster_size starts at zero; embed_avg is not used by this update.
            self.ema_count.zero_()
            self.ema_sum.copy_(c)
        else:
            # Start the EMA as if every code had been seen at the mean rate, pointing at its centroid
            # (the Laplace update needs the sums; a restart needs counts that are not all dead).
            self.ema_count.fill_(1.0).mul_(mean)
            self.ema_sum.copy_(c * mean)
        self.initialised.fill_(True)
        self._initialised = True

    @torch.no_grad()
    def _ema_update(self, flat: Tensor, codes: Tensor, valid: Tensor, counts: Tensor) -> None:
        cfg = self.cfg
        sums = torch.zeros_like(self.ema_sum).index_add_(0, codes, flat * valid[:, None])
        _all_reduce(counts, sums)
        self.ema_count.mul_(cfg.decay).add_(counts, alpha=1 - cfg.decay)
        if cfg.update == "unilm":
            used = counts > 0
            means = l2norm(sums / counts.clamp_min(1.0)[:, None])
            moved = l2norm(self.codebook * cfg.decay + means * (1 - cfg.decay))
            # unused codes keep their exact bits (unilm re-normalises them too: a rounding-level change)
            self.codebook.copy_(torch.where(used[:, None], moved, self.codebook))
        else:
            self.ema_sum.mul_(cfg.decay).add_(sums, alpha=1 - cfg.decay)
            total = self.ema_count.sum()
            smoothed = (self.ema_count + cfg.eps) / (total + cfg.num_codes * cfg.eps) * total
            new = l2norm(self.ema_sum / smoothed[:, None])
            self.codebook.copy_(torch.where(self.ema_count[:, None] > cfg.eps, new, self.codebook))
        if cfg.dead_code_threshold > 0:
            self._restart_dead(flat, valid)

    @torch.no_grad()
    def _restart_dead(self, flat: Tensor, valid: Tensor) -> None:
        """Move codes with a tiny EMA count onto random valid vectors of this batch (vectorised, no sync)."""
        dead = self.ema_count < self.cfg.dead_code_threshold * self.ema_count.mean()
        weights = valid + 1e-12  # multinomial needs a non-zero total even for an all-padding batch
        pick = torch.multinomial(weights, self.cfg.num_codes, replacement=True, generator=None)
        repl = jitter(flat[pick])  # two dead codes may pick the same vector: keep them apart

        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            dist.broadcast(repl, src=0)
        mean = self.ema_count.mean()
        self.codebook.copy_(torch.where(dead[:, None], repl, self.codebook))
        self.ema_sum.copy_(torch.where(dead[:, None], repl * mean, self.ema_sum))
        self.ema_count.copy_(torch.where(dead, mean, self.ema_count))
