"""k-means in torch for HuBERT-style targets: k-means++ on a sample, Lloyd passes streamed from disk.

Fits what fairseq's ``learn_kmeans.py`` fits (units from MFCC or layer-N features), fast on CPU
and unchanged on GPU (``device=``):

1. frames: ``percent`` of each utterance's frames (seeded), or all with ``percent=-1``;
2. greedy k-means++ (scikit-learn's: ``2 + log k`` candidates per step) on ``pp_size`` frames of
   a random in-memory subsample of ``init_size`` frames;
3. Lloyd iterations, then swap rounds (split-the-worst / drop-the-cheapest) on that subsample;
4. ``iters`` full Lloyd passes streaming the chosen frames shard by shard from the memory-mapped
   :class:`~audiossl.data.feature_store.FeatureStore` in chunks of ``chunk_size``.

Distances are ``‖x‖² − 2 x·c + ‖c‖²`` with one matmul per chunk (never a ``[N, K, D]`` broadcast).
Clusters that end a pass empty are moved onto the points farthest from their centroid.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator

import numpy as np
import torch
from tqdm import tqdm

log = logging.getLogger(__name__)


@dataclass
class KMeansConfig:
    k: int = 100
    """Number of clusters (fairseq ``n_clusters``)."""
    percent: float = -1.0
    """Fraction of each utterance's frames used for fitting; -1 uses every frame."""
    seed: int = 0
    init_size: int | None = None
    """Frames in the k-means++ / warm-up subsample; None → ``min(N, max(10000, 40 k))``."""
    pp_size: int | None = None
    """Frames of the init sample that k-means++ seeds on; None → ``max(2000, 8 k)``. Seeding is
    sequential (k skinny matmuls), so it runs on fewer frames than the Lloyd warm-up."""
    sample_iters: int = 10
    """Lloyd iterations on the in-memory subsample before the streamed passes."""
    swap_rounds: int = 5
    """Swap rounds on the subsample (see :func:`swap_centroids`); 0 disables."""
    iters: int = 2
    """Full Lloyd passes over all chosen frames (streamed from disk)."""
    tol: float = 0.0
    """Stop the full passes early when the relative inertia drop is below this."""
    chunk_size: int = 16384
    """Frames per matmul chunk; bounds memory at ``chunk_size × k`` floats."""
    device: str = "cpu"
    num_threads: int | None = None
    """torch CPU threads; None leaves torch's default."""
    progress: bool = True


@dataclass
class KMeansResult:
    centroids: torch.Tensor
    """``[k, dim]`` float32 on CPU."""
    inertia: float
    """Sum of squared distances of the last full pass (of the centroids it started from)."""
    inertia_trace: list[float] = field(default_factory=list)
    """Per-frame mean inertia: each warm-up iteration on the subsample, then each full pass."""
    num_frames: int = 0
    """Frames the fit used (after ``percent`` sampling)."""
    empty_reassigned: int = 0


# ----------------------------------------------------------------------------- distances


def nearest(x: torch.Tensor, c: torch.Tensor, c_sq: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest centroid of each row: ``x [n, dim]``, ``c [k, dim]`` → ``(labels [n] int64, sq_dist [n])``.

    One ``[n, k]`` matmul; call it on chunks (see :func:`assign`) to bound memory.
    """
    if c_sq is None:
        c_sq = (c * c).sum(1)
    # ‖c‖² − 2 x·c, then add ‖x‖² only to the winner.
    d = torch.addmm(c_sq.unsqueeze(0), x, c.T, beta=1.0, alpha=-2.0)
    best, labels = d.min(dim=1)
    return labels, (best + (x * x).sum(1)).clamp_min_(0.0)


def assign(x: torch.Tensor, c: torch.Tensor, chunk_size: int = 16384) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`nearest` over ``x [n, dim]`` in chunks → ``(labels [n], sq_dist [n])`` on ``x.device``."""
    c = c.to(device=x.device, dtype=torch.float32)
    c_sq = (c * c).sum(1)
    labels = torch.empty(x.shape[0], dtype=torch.int64, device=x.device)
    dist = torch.empty(x.shape[0], dtype=torch.float32, device=x.device)
    for s in range(0, x.shape[0], chunk_size):
        xs = x[s : s + chunk_size].to(torch.float32)
        labels[s : s + chunk_size], dist[s : s + chunk_size] = nearest(xs, c, c_sq)
    return labels, dist


def inertia(x: torch.Tensor | np.ndarray, c: torch.Tensor | np.ndarray, chunk_size: int = 16384) -> float:
    """Sum of squared distances of ``x [n, dim]`` to their nearest centroid in ``c [k, dim]`` (float64 sum)."""
    x = torch.as_tensor(x)
    c = torch.as_tensor(c)
    total = 0.0
    for s in range(0, x.shape[0], chunk_size):
        _, d = assign(x[s : s + chunk_size].to(torch.float32), c, chunk_size)
        total += float(d.to(torch.float64).sum())
    return total


# ----------------------------------------------------------------------------- k-means++


def kmeans_plusplus(
    x: torch.Tensor, k: int, generator: torch.Generator, n_local_trials: int | None = None, progress: bool = False
) -> torch.Tensor:
    """Greedy k-means++ seeding (Arthur & Vassilvitskii; scikit-learn's variant) on ``x [n, dim]`` → ``[k, dim]``.

    Each step draws ``n_local_trials`` candidates with probability ∝ D(x)², and keeps the one
    that lowers the potential most. ``generator`` must live on ``x.device``.
    """
    n = x.shape[0]
    if n < k:
        raise ValueError(f"k-means++ needs at least k={k} points, got {n}")
    if n_local_trials is None:
        n_local_trials = 2 + int(math.log(k))
    x_sq = (x * x).sum(1)
    centers = torch.empty(k, x.shape[1], dtype=x.dtype, device=x.device)
    first = int(torch.randint(n, (1,), generator=generator, device=x.device))
    centers[0] = x[first]
    closest = (x_sq - 2 * x @ x[first] + x_sq[first]).clamp_min_(0.0)
    steps = range(1, k)
    if progress:
        steps = tqdm(steps, desc="k-means++", unit="centroid", leave=False)
    for i in steps:
        total = closest.sum()
        if total <= 0:  # fewer distinct points than k: fill with random points
            idx = torch.randint(n, (n_local_trials,), generator=generator, device=x.device)
        else:
            idx = torch.multinomial(closest, n_local_trials, replacement=True, generator=generator)
        cand = x[idx]  # [trials, dim]
        d = (x_sq.unsqueeze(1) - 2 * (x @ cand.T) + x_sq[idx].unsqueeze(0)).clamp_min_(0.0)  # [n, trials]
        d = torch.minimum(d, closest.unsqueeze(1))
        best = d.sum(0).argmin()
        closest = d[:, best].contiguous()
        centers[i] = cand[best]
    return centers


# ----------------------------------------------------------------------------- Lloyd


def _split_gain(pts: torch.Tensor, iters: int = 5) -> tuple[float, torch.Tensor]:
    """2-means on one cluster's points ``[m, dim]`` → ``(SSE drop, the two centres [2, dim])``."""
    mean = pts.mean(0)
    d = ((pts - mean) ** 2).sum(1)
    sse = float(d.sum())
    a = pts[d.argmax()]
    b = pts[((pts - a) ** 2).sum(1).argmax()]
    cent = torch.stack([a, b])
    for _ in range(iters):
        lab = torch.cdist(pts, cent).argmin(1)
        for i in (0, 1):
            if (lab == i).any():
                cent[i] = pts[lab == i].mean(0)
    new_sse = float(torch.cdist(pts, cent).min(1).values.pow(2).sum())
    return sse - new_sse, cent


def swap_centroids(x: torch.Tensor, c: torch.Tensor, chunk_size: int = 16384, max_moves: int | None = None) -> tuple[torch.Tensor, int]:
    """One swap round of local search on ``x [n, dim]``: returns ``(new centroids [k, dim], moves)``.

    Removing centroid j costs ``Σ_{x in j} (d₂(x) − d₁(x))`` (its points go to their second
    nearest); splitting cluster s with 2-means gains its SSE drop. While the cheapest removal
    costs less than the best remaining split gains, centroid j and centroid s move onto the two
    split centres. This fixes seedings that put two centroids in one cluster and one centroid
    across two. The caller re-runs Lloyd and keeps the result only if the inertia drops.
    """
    k = c.shape[0]
    if k < 3:
        return c, 0
    c_sq = (c * c).sum(1)
    lab, d1, d2 = [], [], []
    for xs in _chunks(x, chunk_size):
        d = torch.addmm(c_sq.unsqueeze(0), xs, c.T, alpha=-2.0)
        top = d.topk(2, dim=1, largest=False)
        x_sq = (xs * xs).sum(1, keepdim=True)
        lab.append(top.indices[:, 0])
        both = (top.values + x_sq).clamp_min_(0.0)
        d1.append(both[:, 0])
        d2.append(both[:, 1])
    lab, d1, d2 = torch.cat(lab), torch.cat(d1), torch.cat(d2)
    cost = torch.zeros(k, dtype=torch.float64, device=c.device).index_add_(0, lab, (d2 - d1).to(torch.float64))
    sse = torch.zeros(k, dtype=torch.float64, device=c.device).index_add_(0, lab, d1.to(torch.float64))
    m = max_moves or max(1, k // 10)
    # Split gains for the 2m clusters with the largest error (a handful of tiny 2-means runs).
    order = lab.argsort()
    bounds = torch.bincount(lab, minlength=k).cumsum(0).tolist()
    splits = []
    for s_ in sse.argsort(descending=True)[: 2 * m].tolist():
        lo = bounds[s_ - 1] if s_ else 0
        if bounds[s_] - lo >= 2:
            gain, cent = _split_gain(x[order[lo : bounds[s_]]])
            splits.append((gain, s_, cent))
    splits.sort(key=lambda t: -t[0])
    # The centroid that inherits most of j's points must stay, or both of a close pair could go.
    heir = torch.cdist(c, c).fill_diagonal_(float("inf")).argmin(1).tolist()
    cost_l = cost.tolist()
    new = c.clone()
    used: set[int] = set()
    moves = 0
    for j in cost.argsort()[:m].tolist():
        if j in used:
            continue
        while splits and (splits[0][1] in used or splits[0][1] == j):
            splits.pop(0)
        if not splits or cost_l[j] >= splits[0][0]:
            break
        _, s_, cent = splits.pop(0)
        new[s_], new[j] = cent[0], cent[1]
        used.update((j, s_, heir[j]))
        moves += 1
    return new, moves


@dataclass
class PassStats:
    sums: torch.Tensor  # [k, dim] float64
    counts: torch.Tensor  # [k] float64
    inertia: float
    n: int
    far_x: torch.Tensor  # [m, dim] points farthest from their centroid (for empty clusters)
    far_d: torch.Tensor  # [m]


def lloyd_pass(chunks: Iterable[torch.Tensor], c: torch.Tensor, num_far: int) -> PassStats:
    """Assign every chunk ``[n, dim]`` to ``c [k, dim]``, accumulating per-cluster sums and counts."""
    k, dim = c.shape
    dev = c.device
    c_sq = (c * c).sum(1)
    # float64 accumulation of every frame: sums do not depend (beyond float64 rounding, far below
    # float32's) on how frames are split into chunks, shards or ranks.
    sums = torch.zeros(k, dim, dtype=torch.float64, device=dev)
    counts = torch.zeros(k, dtype=torch.float64, device=dev)
    total = torch.zeros((), dtype=torch.float64, device=dev)
    far_x = torch.empty(0, dim, device=dev)
    far_d = torch.empty(0, device=dev)
    n = 0
    for x in chunks:
        labels, d = nearest(x, c, c_sq)
        sums.index_add_(0, labels, x.to(torch.float64))
        counts += torch.bincount(labels, minlength=k)
        total += d.to(torch.float64).sum()
        n += x.shape[0]
        if num_far:
            top = d.topk(min(num_far, d.shape[0])).indices
            far_x = torch.cat([far_x, x[top]])
            far_d = torch.cat([far_d, d[top]])
            if far_d.shape[0] > num_far:
                keep = far_d.topk(num_far).indices
                far_x, far_d = far_x[keep], far_d[keep]
    return PassStats(sums, counts, float(total), n, far_x, far_d)


def update_centroids(c: torch.Tensor, st: PassStats) -> tuple[torch.Tensor, int]:
    """New centroids = cluster means; empty clusters take the farthest points of the pass."""
    new = (st.sums / st.counts.clamp_min(1).unsqueeze(1)).to(torch.float32)
    empty = (st.counts == 0).nonzero().flatten()
    n_empty = int(empty.numel())
    if n_empty:
        order = st.far_d.argsort(descending=True)
        m = min(n_empty, order.numel())
        new[empty[:m]] = st.far_x[order[:m]].to(torch.float32)
        if m < n_empty:  # more empty clusters than tracked points: keep their old centroids
            new[empty[m:]] = c[empty[m:]]
        log.debug("moved %d empty clusters onto far points", n_empty)
    return new, n_empty


def _chunks(x: torch.Tensor, size: int) -> Iterator[torch.Tensor]:
    for s in range(0, x.shape[0], size):
        yield x[s : s + size]


def fit_kmeans(
    data: torch.Tensor | np.ndarray | Callable[[], Iterable[torch.Tensor | np.ndarray]],
    cfg: KMeansConfig,
    *,
    num_frames: int | None = None,
    init_sample: torch.Tensor | np.ndarray | None = None,
    reduce: Callable[[PassStats], PassStats] | None = None,
) -> KMeansResult:
    """Fit k-means on in-memory ``data [n, dim]`` or a re-iterable stream of chunks.

    ``data`` may be a callable returning a fresh iterator of ``[n_i, dim]`` chunks for each full
    pass (see :func:`audiossl.tokenizers.kmeans_store.fit_kmeans_store`); then ``init_sample [m, dim]`` (a random subsample) and
    ``num_frames`` must be given. ``reduce`` combines the statistics of a full pass over this
    process's chunks with the other ranks' (see :func:`audiossl.tokenizers.kmeans_store.fit_kmeans_store`); ``num_frames`` is then
    the total over all ranks.
    """
    reduce = reduce or (lambda st: st)
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    dev = torch.device(cfg.device)
    gen = torch.Generator(device=dev).manual_seed(cfg.seed)

    if callable(data):
        if init_sample is None or num_frames is None:
            raise ValueError("streamed data needs init_sample and num_frames")
        make_chunks = lambda: (torch.as_tensor(x).to(dev, torch.float32) for x in data())  # noqa: E731
        sample = torch.as_tensor(init_sample).to(dev, torch.float32)
        n = int(num_frames)
    else:
        full = torch.as_tensor(data).to(dev, torch.float32)
        n = full.shape[0]
        make_chunks = lambda: _chunks(full, cfg.chunk_size)  # noqa: E731
        size = init_size(cfg, n)
        idx = torch.randperm(n, generator=gen, device=dev)[:size] if size < n else None
        sample = full if idx is None else full[idx.sort().values]
    if n < cfg.k:
        raise ValueError(f"k-means with k={cfg.k} needs at least {cfg.k} frames; the data has {n}")
    if sample.shape[0] < cfg.k:
        raise ValueError(f"init sample has {sample.shape[0]} frames, fewer than k={cfg.k}")

    pp = cfg.pp_size if cfg.pp_size is not None else max(2000, 8 * cfg.k)
    pp_x = sample
    if pp < sample.shape[0]:
        pp_x = sample[torch.randperm(sample.shape[0], generator=gen, device=dev)[: max(pp, cfg.k)]]
    c = kmeans_plusplus(pp_x, cfg.k, gen, progress=cfg.progress)
    trace: list[float] = []
    empties = 0
    num_far = min(cfg.k, 1024)
    warm = 0
    for warm in range(1, cfg.sample_iters + 1):
        st = lloyd_pass(_chunks(sample, cfg.chunk_size), c, num_far)
        c, e = update_centroids(c, st)
        empties += e
        converged = bool(trace) and e == 0 and st.inertia / st.n >= trace[-1] * (1 - 1e-4)
        trace.append(st.inertia / st.n)
        if converged:
            break
    swaps = 0
    for _ in range(cfg.swap_rounds):
        c_try, moved = swap_centroids(sample, c, cfg.chunk_size)
        if not moved:
            break
        for _ in range(2):
            st = lloyd_pass(_chunks(sample, cfg.chunk_size), c_try, num_far)
            c_try, _ = update_centroids(c_try, st)
        # Both sides are "inertia of the centroids one update before": like for like.
        if not trace or st.inertia / st.n < trace[-1] * (1 - 1e-4):
            c = c_try
            trace.append(st.inertia / st.n)
            swaps += moved
        else:
            break
    log.info("k-means: k-means++, %d warm-up iterations and %d swaps on %d frames, inertia/frame %.4g",
             warm, swaps, sample.shape[0], trace[-1] if trace else float("nan"))

    last = float("nan")
    passes = range(cfg.iters)
    if cfg.progress:
        passes = tqdm(passes, desc=f"k-means passes ({n} frames)", unit="pass")
    for it in passes:
        st = reduce(lloyd_pass(make_chunks(), c, num_far))
        if st.n != n:
            raise RuntimeError(f"a pass over the data gave {st.n} frames, expected {n}")
        prev, last = last, st.inertia
        trace.append(last / n)
        log.info("k-means pass %d/%d: inertia/frame %.6g", it + 1, cfg.iters, last / n)
        c, e = update_centroids(c, st)
        empties += e
        if cfg.tol > 0 and math.isfinite(prev) and (prev - last) <= cfg.tol * prev:
            break
    if cfg.iters == 0:
        last = reduce(lloyd_pass(make_chunks(), c, 0)).inertia
    return KMeansResult(c.cpu(), float(last), trace, n, empties)


def init_size(cfg: KMeansConfig, n: int) -> int:
    size = cfg.init_size if cfg.init_size is not None else max(10000, 40 * cfg.k)
    return max(min(n, cfg.k), min(n, size))
