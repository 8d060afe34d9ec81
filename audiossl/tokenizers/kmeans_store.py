"""k-means over a sharded feature store: frames streamed from disk (never all in memory), one
process or data-parallel ranks (statistics all-reduced), and labelling a store chunk by chunk."""

from __future__ import annotations

import logging
import math
import zlib
from typing import Iterator

import numpy as np
import torch
from tqdm import tqdm

from audiossl.data.sharding import Part
from audiossl.tokenizers.kmeans import KMeansConfig, KMeansResult, PassStats, fit_kmeans, init_size, nearest

log = logging.getLogger(__name__)


class StoreFrames:
    """The frames of a :class:`FeatureStore` chosen for fitting, streamed shard by shard.

    ``percent`` in (0, 1] takes ``ceil(percent × frames)`` random frames of every utterance
    (at least one; drawn from a generator seeded by ``(seed, crc32(utt_id))``); -1 takes all.
    (fairseq's ``learn_kmeans.py`` samples whole utterances instead; per-utterance frames cover
    every speaker and file.) The choice depends only on the utterances, not on how they are laid
    out in shards, so a store dumped by one process or by N parts gives the same frames.
    ``part=(I, N)``: only store shards at positions ``I, I+N, …`` (sorted shard numbers) are
    streamed (a torchrun rank's share); :attr:`num_frames` is this part's, :attr:`total_frames`
    the store's. Calling the object returns a fresh iterator of float32 chunks ``[<= chunk_size, dim]``.
    """

    def __init__(self, store, percent: float = -1.0, seed: int = 0, chunk_size: int = 16384,
                 part: tuple[int, int] = (0, 1)) -> None:
        if not (percent == -1 or 0 < percent <= 1):
            raise ValueError(f"percent must be in (0, 1] or -1 (all frames), got {percent}")
        self.store, self.chunk_size, self.percent, self.seed = store, int(chunk_size), percent, seed
        shard_ids = sorted({e.shard for e in store.entries})
        self.mine = {k for j, k in enumerate(shard_ids) if j % part[1] == part[0]}
        self.plan: list[tuple[int, int, np.ndarray | None]] = []  # (shard, rows_span, rows or None = all)
        for arr, entries in store.iter_shards():
            shard = entries[0].shard
            if shard not in self.mine:
                continue
            if percent == -1 and _covers(entries, arr.shape[0]):
                self.plan.append((shard, arr.shape[0], None))
                continue
            rows = [self._rows(e) + e.offset for e in entries if e.frames]
            rows_a = np.concatenate(rows) if rows else np.empty(0, dtype=np.int64)
            self.plan.append((shard, len(rows_a), rows_a.astype(np.int64)))
        self.num_frames = int(sum(n for _, n, _ in self.plan))
        self.takes = np.array([self._take(e.frames) for e in store.entries], dtype=np.int64)
        self.total_frames = int(self.takes.sum())
        self.dim = store.dim

    def _take(self, frames: int) -> int:
        if self.percent == -1 or frames == 0:
            return frames
        return max(1, math.ceil(frames * self.percent))

    def _rows(self, e) -> np.ndarray:
        """The chosen frames of entry ``e`` (sorted, relative to its start)."""
        if self.percent == -1:
            return np.arange(e.frames, dtype=np.int64)
        rng = np.random.default_rng([self.seed, zlib.crc32(e.utt_id.encode())])
        return np.sort(rng.choice(e.frames, self._take(e.frames), replace=False)).astype(np.int64)

    def __call__(self) -> Iterator[np.ndarray]:
        for shard, n, rows in self.plan:
            arr = self.store.shard(shard)
            for s in range(0, n, self.chunk_size):
                part = arr[s : s + self.chunk_size] if rows is None else arr[rows[s : s + self.chunk_size]]
                yield np.asarray(part, dtype=np.float32).copy() if rows is None else part.astype(np.float32, copy=False)

    def gather(self, positions: np.ndarray) -> np.ndarray:
        """Frames at sorted ``positions`` of all chosen frames of the store in index order (the
        manifest's, whatever the shard layout) → ``[len, dim]``; rows in shards outside this part
        stay zero (sum the parts' arrays to get every row)."""
        out = np.zeros((len(positions), self.dim), dtype=np.float32)
        starts = np.concatenate([[0], np.cumsum(self.takes)])
        which = np.searchsorted(starts, positions, side="right") - 1
        for j in np.unique(which):
            e = self.store.entries[j]
            if e.shard not in self.mine:
                continue
            sel = np.nonzero(which == j)[0]
            local = self._rows(e)[positions[sel] - starts[j]] + e.offset
            out[sel] = self.store.shard(e.shard)[local]
        return out


def _covers(entries, shard_len: int) -> bool:
    pos = 0
    for e in entries:
        if e.offset != pos:
            return False
        pos += e.frames
    return pos == shard_len


def reduce_stats(part, st: PassStats, num_far: int) -> PassStats:
    """All-reduce one pass's statistics over the ranks of ``part`` (a
    :class:`~audiossl.data.sharding.Part`): float64 sums, counts and inertia are summed; the
    farthest points are gathered and the ``num_far`` farthest kept."""
    if not part.distributed:
        return st
    packed = torch.cat([st.sums.flatten(), st.counts, torch.tensor([st.inertia, float(st.n)], dtype=torch.float64, device=st.sums.device)])
    packed = part.all_reduce(packed)
    k, dim = st.sums.shape
    sums, counts = packed[: k * dim].view(k, dim), packed[k * dim : k * dim + k]
    m = num_far
    fx = torch.zeros(m, dim, dtype=torch.float32, device=st.sums.device)
    fd = torch.full((m,), -1.0, dtype=torch.float32, device=st.sums.device)  # -1: no point (distances are >= 0)
    got = min(m, st.far_d.shape[0])
    fx[:got], fd[:got] = st.far_x[:got].to(torch.float32), st.far_d[:got].to(torch.float32)
    far_x = torch.cat(part.all_gather(fx))
    far_d = torch.cat(part.all_gather(fd))
    keep = far_d >= 0
    far_x, far_d = far_x[keep], far_d[keep]
    if far_d.shape[0] > m:
        top = far_d.topk(m).indices
        far_x, far_d = far_x[top], far_d[top]
    return PassStats(sums, counts, float(packed[-2]), int(round(float(packed[-1]))), far_x, far_d)


def fit_kmeans_store(store, cfg: KMeansConfig, part=None) -> KMeansResult:
    """Fit on a :class:`~audiossl.data.feature_store.FeatureStore` without loading it into memory.

    ``part`` (a :class:`~audiossl.data.sharding.Part` under torchrun): each rank streams its
    share of the store's shards and the full passes all-reduce per-centroid float64 sums and
    counts; the init sample (chosen in index order) is assembled from every rank's rows, so
    every rank runs the same seeding and warm-up and ends with the same centroids as one process
    on the same store (equal up to float64 summation order: see the tests)."""
    part = part or Part()
    frames = StoreFrames(store, cfg.percent, cfg.seed, cfg.chunk_size, part=(part.index, part.count))
    n = frames.total_frames
    if n < cfg.k:
        raise ValueError(
            f"{store.path}: {n} frames chosen (percent={cfg.percent}) but k={cfg.k}; use a larger "
            f"--percent (or -1 for all frames) or a smaller --k."
        )
    if n < 10 * cfg.k:
        log.warning("only %d frames for k=%d (%.1f per cluster); centroids will be noisy", n, cfg.k, n / cfg.k)
    size = init_size(cfg, n)
    rng = np.random.default_rng([cfg.seed, 1])
    positions = np.sort(rng.choice(n, size, replace=False)) if size < n else np.arange(n)
    log.info("k-means on %s: %d of %d frames (percent=%s), k=%d, init sample %d",
             store.path, n, store.num_frames, cfg.percent, cfg.k, size)
    sample = frames.gather(positions)
    if part.distributed:  # each row is filled by exactly one rank (others add zeros): the sum is exact
        sample = part.all_reduce(torch.from_numpy(sample)).numpy()
    num_far = min(cfg.k, 1024)
    return fit_kmeans(frames, cfg, num_frames=n, init_sample=sample,
                      reduce=lambda st: reduce_stats(part, st, num_far))


def label_store(
    store, centroids: torch.Tensor, *, device: str = "cpu", chunk_size: int = 16384, progress: bool = True,
    part: tuple[int, int] = (0, 1),
) -> dict[str, np.ndarray]:
    """Nearest-centroid unit of every frame, streamed shard by shard → ``{utt_id: labels [frames] int64}``.

    ``part=(I, N)``: only the store shards at positions ``I, I+N, …`` (sorted shard numbers).
    Each shard is labelled in the same chunks whichever part handles it, so the labels do not
    depend on the number of parts."""
    dev = torch.device(device)
    c = torch.as_tensor(centroids).to(dev, torch.float32)
    if c.shape[1] != store.dim:
        raise ValueError(f"{store.path}: features have dim {store.dim} but the k-means centroids have dim {c.shape[1]}")
    c_sq = (c * c).sum(1)
    out: dict[str, np.ndarray] = {}
    shards = store.iter_shards()
    if progress:
        shards = tqdm(shards, desc="labelling shards", unit="shard", total=store.meta.get("num_shards"))
    shard_ids = sorted({e.shard for e in store.entries})
    mine = {k for j, k in enumerate(shard_ids) if j % part[1] == part[0]}
    for arr, entries in shards:
        if entries[0].shard not in mine:
            continue
        end = max(e.offset + e.frames for e in entries)
        labels = np.empty(end, dtype=np.int64)
        for s in range(0, end, chunk_size):
            x = torch.from_numpy(np.asarray(arr[s : min(end, s + chunk_size)], dtype=np.float32).copy()).to(dev)
            labels[s : s + x.shape[0]] = nearest(x, c, c_sq)[0].cpu().numpy()
        for e in entries:
            out[e.utt_id] = labels[e.offset : e.offset + e.frames]
    return out
