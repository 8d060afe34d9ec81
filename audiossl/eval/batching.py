"""Batches of cached bench features: length-bucketed index groups under a frame budget, and their collation."""

from __future__ import annotations

import random

import numpy as np
import torch
from torch import nn

from audiossl.eval.cache import layer_stack
from audiossl.eval.splits import SplitData
from audiossl.eval.tasks import TaskSpec


def item_stack(split: SplitData, i: int) -> torch.Tensor:
    """Item ``i``'s cached layers as fp32 ``[frames, layers, dim]``."""
    return torch.from_numpy(np.array(layer_stack(split.store, split.ids[i]), dtype=np.float32))


def frame_budget(spec: TaskSpec, split: SplitData) -> int:
    """``spec.batch_frames`` as frames of this split's features (the same seconds of audio at any frame rate)."""
    rate = float(split.store.meta.get("frame_rate") or 0.0)
    if spec.pooled or rate <= 0:
        return spec.batch_frames
    return max(1, round(spec.batch_frames * rate / spec.batch_frame_rate))


def make_batches(split: SplitData, budget: int, shuffle: bool, rng: random.Random) -> list[list[int]]:
    """Indices grouped so that ``count × longest`` frames ≤ ``budget`` (similar lengths together)."""
    lens = [split.store[u].shape[0] for u in split.ids]
    order = sorted(range(len(lens)), key=lambda i: (lens[i] + (rng.random() if shuffle else 0.0)))
    out, cur, longest = [], [], 0
    for i in order:
        if cur and (len(cur) + 1) * max(longest, lens[i]) > budget:
            out.append(cur)
            cur, longest = [], 0
        cur.append(i)
        longest = max(longest, lens[i])
    if cur:
        out.append(cur)
    if shuffle:
        rng.shuffle(out)
    return out


def collate(split: SplitData, idx: list[int], pooled: bool, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(features, lengths on device, lengths on CPU)``: ``[B, T, layers, dim]`` padded, or pooled ``[B, layers, dim]``."""
    items = [item_stack(split, i) for i in idx]  # each [frames, layers, dim]
    lens = torch.tensor([x.shape[0] for x in items], dtype=torch.long)
    if pooled:
        x = torch.stack([t[0] for t in items])  # [batch, layers, dim]
    else:
        x = nn.utils.rnn.pad_sequence(items, batch_first=True)  # [batch, frame, layers, dim]
    return x.to(device), lens.to(device), lens
