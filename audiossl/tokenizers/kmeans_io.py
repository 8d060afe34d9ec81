"""Save / load a fitted k-means model: safetensors centroids + a JSON card, never a pickle.

A k-means model is a directory::

    kmeans.safetensors   {"centroids": float32 [k, dim]}
    kmeans.json          k, dim, feature kind, layer, frame rate, source store, seed, inertia, sha256, ...

``sha256`` is the hash of the centroid bytes (little-endian float32, row-major); frame labels
record it so a label file can be traced to the exact centroids that made it.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save

from audiossl.tokenizers.kmeans import assign
from audiossl.utils.fileio import atomic_open, atomic_write_json

WEIGHTS = "kmeans.safetensors"
CARD = "kmeans.json"


class KMeansFileError(ValueError):
    """A k-means directory that cannot be used; the message names the file and the fix."""


@dataclass
class KMeansModel:
    centroids: torch.Tensor
    """``[k, dim]`` float32."""
    meta: dict = field(default_factory=dict)
    path: Path | None = None

    @property
    def k(self) -> int:
        return int(self.centroids.shape[0])

    @property
    def dim(self) -> int:
        return int(self.centroids.shape[1])

    @property
    def sha256(self) -> str:
        return centroids_sha256(self.centroids)

    def predict(self, x: torch.Tensor | np.ndarray, chunk_size: int = 16384) -> torch.Tensor:
        """Unit of each frame: ``x [frames, dim]`` → ``[frames]`` int64 (on ``x``'s device)."""
        x = torch.as_tensor(x)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"expected features [frames, {self.dim}], got {tuple(x.shape)}")
        return assign(x.to(torch.float32), self.centroids, chunk_size)[0]


def centroids_sha256(centroids: torch.Tensor | np.ndarray) -> str:
    arr = np.ascontiguousarray(torch.as_tensor(centroids).detach().cpu().numpy(), dtype="<f4")
    return hashlib.sha256(arr.tobytes()).hexdigest()


def save_kmeans(out: str | os.PathLike, centroids: torch.Tensor, meta: dict | None = None) -> Path:
    """Write ``out/kmeans.safetensors`` and ``out/kmeans.json`` atomically; returns ``out``."""

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise KMeansFileError(f"{out}: exists and is not a directory; a k-means model is a directory")
    c = torch.as_tensor(centroids).detach().to("cpu", torch.float32).contiguous()
    if c.ndim != 2:
        raise ValueError(f"centroids must be [k, dim], got shape {tuple(c.shape)}")
    card = dict(meta or {})
    card.update(k=int(c.shape[0]), dim=int(c.shape[1]), sha256=centroids_sha256(c), format="audiossl-kmeans-1")
    out.mkdir(parents=True, exist_ok=True)
    with atomic_open(out / WEIGHTS, "wb") as f:
        f.write(save({"centroids": c}, metadata={"sha256": card["sha256"]}))
    atomic_write_json(out / CARD, card)
    return out


def load_kmeans(path: str | os.PathLike) -> KMeansModel:
    """Load a directory written by :func:`save_kmeans` (or the path of its ``.safetensors``)."""

    path = Path(path)
    d = path.parent if path.suffix == ".safetensors" else path
    weights, card_path = d / WEIGHTS, d / CARD
    if not weights.is_file():
        raise KMeansFileError(f"{weights}: not found; fit a model with `audiossl kmeans fit STORE {d}`.")
    try:
        tensors = load_file(weights)
    except (SafetensorError, OSError) as e:
        raise KMeansFileError(f"{weights}: unreadable safetensors file ({e}); re-run `audiossl kmeans fit`.") from None
    if "centroids" not in tensors or tensors["centroids"].ndim != 2:
        raise KMeansFileError(f"{weights}: no [k, dim] tensor named 'centroids' (found {sorted(tensors)})")
    c = tensors["centroids"].to(torch.float32)
    meta = json.loads(card_path.read_text()) if card_path.is_file() else {}
    if meta and (meta.get("k"), meta.get("dim")) != tuple(c.shape):
        raise KMeansFileError(
            f"{card_path}: says k={meta.get('k')} dim={meta.get('dim')} but {weights.name} holds "
            f"{tuple(c.shape)}; the two files come from different fits."
        )
    if meta.get("sha256") and meta["sha256"] != centroids_sha256(c):
        raise KMeansFileError(f"{weights}: centroid hash differs from {card_path.name} (file changed or corrupt)")
    return KMeansModel(c, meta, d)
