"""HuBERT span masking against torchaudio's ``_compute_mask_indices`` (fairseq's algorithm): the same
distribution of masked fraction and span count, unpadded and padded.

The two draw from different RNGs (numpy there, torch here), so the check is statistical: over
N = 600 independent rows each, the means of the masked fraction and of the number of masked runs
must agree within 4 standard errors of their difference (a false alarm about once in 16,000 runs;
both are seeded, so the outcome is fixed). Rows are drawn one at a time from torchaudio, because
with several rows it trims every row to the smallest mask (wav2vec 2.0's ``require_same_masks``,
a difference we keep on purpose: see ``audiossl.models.masking``).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from audiossl.models.masking import compute_span_mask

torchaudio_components = pytest.importorskip("torchaudio.models.wav2vec2.components")

N = 600
P, L, MIN_MASKS = 0.8, 10, 2  # HuBERT Base: mask_prob, mask_length, min_masks


def _runs(row: np.ndarray) -> int:
    """Number of maximal masked runs in a 1-D bool row."""
    return int(np.count_nonzero(row[1:] & ~row[:-1]) + row[0])


def _stats(rows: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row: masked fraction of the ``n`` valid frames, and the number of masked runs."""
    assert not rows[:, n:].any(), "a padded frame was masked"
    return rows[:, :n].mean(1), np.array([_runs(r[:n]) for r in rows], dtype=np.float64)


def _ours(n: int, t: int) -> np.ndarray:
    g = torch.Generator().manual_seed(0)
    return compute_span_mask(torch.full((N,), n), t, P, L, min_masks=MIN_MASKS, generator=g).numpy()


def _torchaudio(n: int, t: int) -> np.ndarray:
    np.random.seed(0)  # _compute_mask_indices draws from numpy's global RNG
    pad = torch.zeros(1, t, dtype=torch.bool)
    pad[0, n:] = True
    rows = [torchaudio_components._compute_mask_indices((1, t), pad if n < t else None, P, L, min_masks=MIN_MASKS)[0]
            for _ in range(N)]
    return torch.stack(rows).numpy()


@pytest.mark.parametrize("n, t", [(500, 500), (240, 400)], ids=["unpadded", "padded"])
def test_span_masks_follow_torchaudios_distribution(n, t):
    ours, ref = _stats(_ours(n, t), n), _stats(_torchaudio(n, t), n)
    for what, a, b in zip(("masked fraction", "masked runs"), ours, ref):
        se = np.sqrt(a.var(ddof=1) / N + b.var(ddof=1) / N)
        assert abs(a.mean() - b.mean()) < 4 * se, f"{what}: ours {a.mean():.4f} vs torchaudio {b.mean():.4f} (se {se:.4f})"
    # and the check has teeth: a mask twice as long is far outside it
    g = torch.Generator().manual_seed(1)
    longer = compute_span_mask(torch.full((N,), n), t, P, 2 * L, min_masks=MIN_MASKS, generator=g).numpy()
    frac, runs = _stats(longer, n)
    se = np.sqrt(runs.var(ddof=1) / N + ref[1].var(ddof=1) / N)
    assert abs(runs.mean() - ref[1].mean()) > 4 * se
