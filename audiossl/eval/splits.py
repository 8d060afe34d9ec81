"""The bench's view of one split: cached features and the raw label strings, in manifest order."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from audiossl.data.feature_store import FeatureStore
from audiossl.data.manifest import read_manifest


@dataclass
class SplitData:
    """Cached features of one split and their raw label strings, in manifest order (bad audio dropped)."""

    store: FeatureStore
    ids: list[str]
    labels: list[str]
    label_file: str = ""

    def subset(self, idx: list[int]) -> "SplitData":
        return SplitData(self.store, [self.ids[i] for i in idx], [self.labels[i] for i in idx], self.label_file)


def load_split(store: FeatureStore, tsv: Path, label: str | None) -> SplitData:
    m = read_manifest(tsv, labels=[label] if label else [])
    labs = m.labels[label] if label else [""] * len(m)
    ids = m.ids  # a property that builds the list: read it once
    keep = [i for i, u in enumerate(ids) if u in store]
    return SplitData(store, [ids[i] for i in keep], [labs[i] for i in keep], str(m.label_path(label)) if label else "")


def concat_splits(parts: list[SplitData]) -> SplitData:
    """Several splits (ESC-50 training folds) as one; each keeps reading its own store."""
    out = _Multi(parts)
    return SplitData(out, [i for p in parts for i in p.ids], [l for p in parts for l in p.labels], parts[0].label_file)


class _Multi:
    """Minimal FeatureStore look-alike over several stores (ids must be unique across them)."""

    def __init__(self, parts: list[SplitData]) -> None:
        self.by_id = {u: p.store for p in parts for u in p.ids}
        self.meta = parts[0].store.meta

    def __getitem__(self, key: str) -> np.ndarray:
        return self.by_id[key][key]

    def __contains__(self, key: str) -> bool:
        return key in self.by_id
