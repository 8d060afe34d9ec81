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

from audiossl.data.feature_store import FeatureStore, FeatureWriter

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
    count (:func:`audiossl.extract.run.forward_long`); a 1-hour file in one pass would need a
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


def _batches(lengths: list[int], max_samples: int) -> list[list[int]]:
    """Indices grouped by total padded duration: sorted by length, a batch's ``count × longest`` ≤ budget."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    out, cur = [], []
    for i in order:
        if cur and (len(cur) + 1) * lengths[i] > max_samples:
            out.append(cur)
            cur = []
        cur.append(i)
    if cur:
        out.append(cur)
    return out


def build_cache(upstream, upstream_id: str, tsv: str | os.PathLike, cache_root: str | os.PathLike, cfg: CacheConfig) -> FeatureStore:
    """Features of every row of manifest ``tsv`` (skipping bad audio), cached under ``cache_root``.

    Reuses a complete cache with the same key and resumes an interrupted one.
    """
    from tqdm import tqdm

    from audiossl.audio.io import AudioError, load_audio
    from audiossl.data.manifest import read_manifest
    from audiossl.utils.fileio import check_free_space

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
    todo = [i for i in range(len(m)) if ids[i] not in done]
    sr = int(upstream.sample_rate)
    from audiossl.extract.run import default_batch_seconds

    budget = int((cfg.max_batch_seconds or default_batch_seconds(cfg.device)) * sr) if upstream.padding_invariant else 1
    chunk = int(cfg.chunk_seconds * sr) if cfg.chunk_seconds > 0 and getattr(upstream, "chunkable", True) else 0
    skipped: list[dict] = []
    bar = tqdm(total=len(todo), desc=f"features {upstream.name} {tsv.parent.name}/{tsv.stem}", unit="utt", leave=False)
    for batch in _batches([max(m.rows[i].num_samples, 1) for i in todo], budget):
        wavs, keep = [], []
        for j in batch:
            i = todo[j]
            try:
                wav, _ = load_audio(m.path(i), sr)
            except AudioError as e:
                log.warning("skipping %s: %s", e.path, e.reason + (f" ({e.detail})" if e.detail else ""))
                skipped.append({"path": e.path, "reason": e.reason})
                continue
            if chunk and wav.shape[0] > chunk:
                _add_long(writer, upstream, ids[i], wav, layers, cfg)
                continue
            wavs.append(wav)
            keep.append(i)
        bar.update(len(batch))
        if not wavs:
            continue
        lengths = torch.tensor([w.shape[0] for w in wavs], dtype=torch.long)
        padded = torch.nn.utils.rnn.pad_sequence(wavs, batch_first=True).to(cfg.device)
        out_ = upstream(padded, lengths.to(cfg.device), max_layer=cfg.layer)
        expected = num_layers if cfg.layer is None else cfg.layer + 1
        if len(out_.hidden_states) != expected:
            raise RuntimeError(f"upstream {upstream.name} returned {len(out_.hidden_states)} layers, expected {expected}")
        stack = torch.stack([out_.hidden_states[k] for k in layers], dim=2)  # [batch, frame, layer, dim]
        flens = out_.lengths.cpu().tolist()
        stack = stack.float().cpu()
        for b, i in enumerate(keep):
            n = int(flens[b])
            if n <= 0:
                path = str(m.path(i))
                log.warning("skipping %s: too_short (the upstream gives 0 frames)", path)
                skipped.append({"path": path, "reason": "too_short"})
                continue
            feats = stack[b, :n].reshape(n, dim)
            if cfg.pooled:
                feats = feats.mean(0, keepdim=True)
            writer.add(ids[i], feats.numpy())
    bar.close()
    writer.extra["skipped"] = skipped
    store = writer.close(order=ids)
    if skipped:
        log.warning("%s: skipped %d of %d files (bad audio); see the warnings above", tsv, len(skipped), len(m))
    return store


def _add_long(writer: FeatureWriter, upstream, uid: str, wav: torch.Tensor, layers: list[int], cfg: CacheConfig) -> None:
    """One long utterance ``[sample]`` in chunks → ``[frames, layers * dim]`` (or pooled ``[1, ...]``)."""
    from audiossl.extract.run import forward_long

    with torch.inference_mode():
        hidden = forward_long(upstream, wav.to(cfg.device), cfg.chunk_seconds, cfg.overlap_seconds, max_layer=cfg.layer)
    feats = torch.stack([hidden[k] for k in layers], dim=1).float().cpu()  # [frame, layer, dim]
    feats = feats.reshape(feats.shape[0], -1)
    if cfg.pooled:
        feats = feats.mean(0, keepdim=True)
    writer.add(uid, feats.numpy())


def layer_stack(store: FeatureStore, key: int | str) -> np.ndarray:
    """One utterance as ``[frames, layers, dim]`` (a view of the memory map)."""
    x = store[key]
    hd = int(store.meta["extra"]["hidden_dim"])
    return x.reshape(x.shape[0], -1, hd)
