"""k-means labels written in parts, one per shard of a multi-process ``audiossl kmeans label --shard I/N``
run: each shard saves ``<labels>.part-I-of-N.npz`` (ids, lengths, concatenated labels); the last
merge reads them all back, refusing an incomplete or mixed set."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np


def label_parts(labels: Path) -> list[Path]:
    """The part files of ``labels`` written so far, sorted."""
    return sorted(Path(labels).parent.glob(Path(labels).name + ".part-*-of-*.npz"))


def save_label_part(labels: Path, i: int, n: int, by_id: dict) -> None:
    """Part ``i`` of ``n``: ``{utterance id: labels [frame]}`` → ``<labels>.part-i-of-n.npz`` (written atomically)."""
    path = Path(labels).parent / f"{Path(labels).name}.part-{i:05d}-of-{n:05d}.npz"
    path.parent.mkdir(parents=True, exist_ok=True)
    ids = list(by_id)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, ids=np.array(ids, dtype=str), lengths=np.array([len(by_id[u]) for u in ids], dtype=np.int64),
             labels=np.concatenate([by_id[u] for u in ids]) if ids else np.empty(0, dtype=np.int64))
    os.replace(tmp, path)


def merge_label_parts(labels: Path) -> dict:
    """Every part of one run → ``{utterance id: labels [frame]}``; ``FileNotFoundError`` naming the
    missing parts (or parts of runs with different shard counts)."""
    parts = label_parts(labels)
    counts = {int(p.name.rsplit("-of-", 1)[1].split(".")[0]) for p in parts}
    if len(counts) != 1:
        raise FileNotFoundError(f"{labels}: no label parts to merge" if not counts else f"{labels}: parts of different runs {sorted(counts)}")
    n = counts.pop()
    have = {int(p.name.rsplit(".part-", 1)[1].split("-of-")[0]) for p in parts}
    if have != set(range(n)):
        raise FileNotFoundError(f"{labels}: label parts {sorted(set(range(n)) - have)} of {n} are missing; run them first")
    by_id = {}
    for p in parts:
        z = np.load(p)
        for u, lab in zip(z["ids"].tolist(), np.split(z["labels"], np.cumsum(z["lengths"])[:-1])):
            by_id[u] = lab
    return by_id
