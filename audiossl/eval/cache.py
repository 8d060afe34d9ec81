"""Feature cache: run the frozen upstream once per split, train every head from memory maps.

One :class:`~audiossl.data.feature_store.FeatureStore` per (upstream, layer set, pooling, split);
each utterance is stored as ``[frames, layers * dim]`` (the layers concatenated; frames stored as
float16 to halve the disk), or ``[1, layers * dim]`` mean-pooled for utterance-level tasks. The
directory name is a hash of the upstream spec and name, the layer set, pooling and the manifest
(path, size, mtime), so an edited manifest or another checkpoint never reuses stale features.
Bad audio files are reported with path and reason and skipped; the list is kept in the store's meta.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from audiossl.data.feature_store import FeatureStore, FeatureWriter
from audiossl.data.manifest import read_manifest
from audiossl.upstream.engine import decode_items, forward_batch, plan_batches, prefetched
from audiossl.utils.fileio import check_free_space

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CacheConfig:
    layer: int | None = None
    """cache only this layer (``--layer N``); None = all layers for the learnable weighted sum"""
    pooled: bool = False
    """mean-pool over valid frames before storing (utterance-level tasks)"""
    max_batch_seconds: float | None = None
    """upstream batches hold at most this much padded audio; None: 160 s on a GPU, 10 s on CPU"""
    device: str = "cpu"
    chunk_seconds: float = 30.0
    """files longer than this run alone, in overlapping chunks stitched to the single-pass frame
    count (:func:`audiossl.upstream.engine.forward_long`); a 1-hour file in one pass would need a
    ``[T, T]`` attention over 180k frames. 0 = never chunk"""
    overlap_seconds: float = 2.0
    """context on each side of a chunk (seconds)"""


def cache_key(upstream_id: str, upstream_name: str, tsv: Path, cfg: CacheConfig) -> str:
    st = Path(tsv).stat()
    ident = {
        "upstream": upstream_id, "name": upstream_name, "layer": cfg.layer, "pooled": cfg.pooled,
        "manifest": str(Path(tsv).resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns,
    }
    return hashlib.sha1(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]


def build_cache(upstream, upstream_id: str, tsv: str | os.PathLike, cache_root: str | os.PathLike, cfg: CacheConfig) -> FeatureStore:
    """Features of every row of manifest ``tsv`` (skipping bad audio), cached under ``cache_root``.

    Reuses a complete cache with the same key and resumes an interrupted one.
    """

    tsv = Path(tsv)
    key = cache_key(upstream_id, upstream.name, tsv, cfg)
    out = Path(cache_root) / f"{tsv.parent.name}_{tsv.stem}_{key}"
    if (out / "meta.json").is_file():
        store = FeatureStore(out)
        if store.meta.get("extra", {}).get("key") == key:
            return store
    m = read_manifest(tsv, labels=[])
    ids = m.ids
    num_layers = int(upstream.num_layers)
    if cfg.layer is not None and not 0 <= cfg.layer < num_layers:
        raise ValueError(f"--layer {cfg.layer}: upstream {upstream.name} has layers 0..{num_layers - 1}")
    layers = list(range(num_layers)) if cfg.layer is None else [cfg.layer]
    dim = len(layers) * int(upstream.hidden_dim)
    frames_est = sum(r.num_samples for r in m.rows) / max(upstream.sample_rate, 1) * upstream.frame_rate
    check_free_space(out, int((len(m) if cfg.pooled else frames_est) * dim * (4 if cfg.pooled else 2)), "feature cache")
    writer = FeatureWriter(
        out, kind="bench_cache", dim=dim, frame_rate=0.0 if cfg.pooled else upstream.frame_rate,
        dtype="float32" if cfg.pooled else "float16", resume=True,
        extra={"key": key, "upstream": upstream_id, "name": upstream.name, "layers": layers,
               "num_layers": num_layers, "hidden_dim": int(upstream.hidden_dim), "pooled": cfg.pooled,
               "manifest": str(tsv)},
    )
    done = writer.done_ids
    todo = [(ids[i], str(m.path(i)), max(m.rows[i].num_samples, 1)) for i in range(len(m)) if ids[i] not in done]
    skipped: list[dict] = []
    bar = tqdm(total=len(todo), desc=f"features {upstream.name} {tsv.parent.name}/{tsv.stem}", unit="utt", leave=False)
    batches = plan_batches(upstream, todo, cfg.max_batch_seconds, cfg.device, cfg.chunk_seconds)
    for batch, (wavs, keep, bad), _ in prefetched(batches, lambda b: decode_items(upstream, b, check_frames=False), depth=0):
        for path, reason, detail in bad:
            log.warning("skipping %s: %s", path, reason + (f" ({detail})" if detail else ""))
            skipped.append({"path": path, "reason": reason})
        bar.update(len(batch))
        if not wavs:
            continue
        with torch.inference_mode():
            hidden = forward_batch(upstream, wavs, cfg.device, max_layer=cfg.layer, chunk_seconds=cfg.chunk_seconds,
                                   overlap_seconds=cfg.overlap_seconds)
        expected = num_layers if cfg.layer is None else cfg.layer + 1
        for uid, hs, path in zip(keep, hidden, [p for u, p, _ in batch if u in set(keep)]):
            if len(hs) != expected:
                raise RuntimeError(f"upstream {upstream.name} returned {len(hs)} layers, expected {expected}")
            if hs[0].shape[0] <= 0:
                log.warning("skipping %s: too_short (the upstream gives 0 frames)", path)
                skipped.append({"path": path, "reason": "too_short"})
                continue
            feats = torch.stack([hs[k] for k in layers], dim=1).float().cpu()  # [frame, layer, dim]
            feats = feats.reshape(feats.shape[0], dim)
            if cfg.pooled:
                feats = feats.mean(0, keepdim=True)
            writer.add(uid, feats.numpy())
    bar.close()
    writer.extra["skipped"] = skipped
    store = writer.close(order=ids)
    if skipped:
        log.warning("%s: skipped %d of %d files (bad audio); see the warnings above", tsv, len(skipped), len(m))
    return store


def layer_stack(store: FeatureStore, key: int | str) -> np.ndarray:
    """One utterance as ``[frames, layers, dim]`` (a view of the memory map)."""
    x = store[key]
    hd = int(store.meta["extra"]["hidden_dim"])
    return x.reshape(x.shape[0], -1, hd)
