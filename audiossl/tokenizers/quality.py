"""How well discrete units track phones (or any reference labelling): PNMI, purities, usage.

Definitions follow the HuBERT paper (Hsu et al. 2021, §IV-B) on the joint distribution
``p(phone, unit)`` estimated from frame counts:

- **PNMI** = I(phone; unit) / H(phone): the fraction of phone uncertainty the units remove.
- **phone purity** = Σ_u p(u) max_y p(y | u): frame accuracy when every unit is read as its
  most likely phone.
- **cluster purity** = Σ_y p(y) max_u p(u | y): the same with the roles swapped.
- **codebook usage** = units seen / k; unit entropy (bits) and perplexity 2^H of p(unit).

Hypothesis units and reference labels may have different frame rates: hypothesis frame ``i``
(time ``i / hyp_rate``) reads reference frame ``floor(i · ref_rate / hyp_rate)``.

To compare unit sets at one frame rate (100 Hz MFCC k-means labels against a 50 Hz model's),
:func:`resample_labels` takes the **nearest frame** at the same start time (frame ``i`` at the new
rate reads frame ``floor(i · rate / new_rate)``). At 2:1 this is also what a majority vote reduces
to, since every disagreeing pair is a tie that the earlier frame would have to break.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np


class AlignmentError(ValueError):
    """Hypothesis and reference rows that do not line up; names the files, the row and both numbers."""


@dataclass
class LabelQuality:
    pnmi: float
    phone_purity: float
    cluster_purity: float
    codebook_usage: float
    units_used: int
    num_units: int
    unit_entropy_bits: float
    unit_perplexity: float
    phone_entropy_bits: float
    mutual_info_bits: float
    num_phones: int
    num_frames: int
    num_rows: int
    dropped_frames: int
    """Hypothesis frames cut because they ran past the reference (by at most the tolerance)."""

    def to_dict(self) -> dict:
        return asdict(self)

    def table(self) -> str:
        rows = [
            ("PNMI", f"{self.pnmi:.4f}"),
            ("phone purity", f"{self.phone_purity:.4f}"),
            ("cluster purity", f"{self.cluster_purity:.4f}"),
            ("codebook usage", f"{self.codebook_usage:.4f} ({self.units_used}/{self.num_units} units)"),
            ("unit entropy", f"{self.unit_entropy_bits:.3f} bits (perplexity {self.unit_perplexity:.1f})"),
            ("phone entropy", f"{self.phone_entropy_bits:.3f} bits ({self.num_phones} phones)"),
            ("I(phone; unit)", f"{self.mutual_info_bits:.3f} bits"),
            ("frames", f"{self.num_frames} in {self.num_rows} rows ({self.dropped_frames} cut at row ends)"),
        ]
        w = max(len(r[0]) for r in rows)
        return "\n".join(f"{name:<{w}}  {val}" for name, val in rows)


def _entropy_bits(p: np.ndarray) -> float:
    p = p[p > 0]
    return float(-(p * np.log2(p)).sum())


def quality_from_counts(counts: np.ndarray, num_units: int | None = None, *, num_rows: int = 0, dropped: int = 0) -> LabelQuality:
    """Metrics from a contingency table ``counts [num_phones, num_units]`` of frame counts."""
    counts = np.asarray(counts, dtype=np.float64)
    n = counts.sum()
    if n <= 0:
        raise ValueError("no frames to score (empty contingency table)")
    num_units = int(num_units if num_units is not None else counts.shape[1])
    pxy = counts / n
    px = pxy.sum(1)  # phones
    py = pxy.sum(0)  # units
    nz = pxy > 0
    mi = float((pxy[nz] * np.log2(pxy[nz] / np.outer(px, py)[nz])).sum())
    hx = _entropy_bits(px)
    hy = _entropy_bits(py)
    return LabelQuality(
        pnmi=mi / hx if hx > 0 else 0.0,
        phone_purity=float(counts.max(0).sum() / n),
        cluster_purity=float(counts.max(1).sum() / n),
        codebook_usage=float((py > 0).sum() / num_units),
        units_used=int((py > 0).sum()),
        num_units=num_units,
        unit_entropy_bits=hy,
        unit_perplexity=float(2.0**hy),
        phone_entropy_bits=hx,
        mutual_info_bits=max(mi, 0.0),
        num_phones=int((px > 0).sum()),
        num_frames=int(n),
        num_rows=num_rows,
        dropped_frames=dropped,
    )


def align_to_hyp(
    n_hyp: int, n_ref: int, hyp_rate: float, ref_rate: float, tolerance: int = 3
) -> tuple[np.ndarray | None, int]:
    """Reference frame index of each kept hypothesis frame → ``(idx [n_keep], frames_dropped)``.

    Returns ``(None, diff)`` when the lengths, compared in hypothesis frames, differ by more than
    ``tolerance`` (``diff`` is that difference) so the caller can name the row.
    """
    expected = math.ceil(n_ref * hyp_rate / ref_rate - 1e-9)  # hyp frames that start inside the ref
    diff = n_hyp - expected
    if abs(diff) > tolerance:
        return None, diff
    n_keep = min(n_hyp, expected)
    idx = np.floor(np.arange(n_keep) * (ref_rate / hyp_rate) + 1e-9).astype(np.int64)
    np.clip(idx, 0, max(n_ref - 1, 0), out=idx)
    return idx, n_hyp - n_keep


def resample_labels(units: np.ndarray, rate: float, new_rate: float) -> np.ndarray:
    """Unit row ``units [frames, ...]`` at ``rate`` Hz → ``[ceil(frames · new_rate / rate), ...]`` at ``new_rate``.

    Nearest frame by start time: new frame ``i`` takes frame ``floor(i · rate / new_rate)``.
    """
    if rate <= 0 or new_rate <= 0:
        raise ValueError(f"frame rates must be positive, got {rate:g} Hz → {new_rate:g} Hz")
    units = np.asarray(units)
    n = math.ceil(len(units) * new_rate / rate - 1e-9)
    idx = np.floor(np.arange(n) * (rate / new_rate) + 1e-9).astype(np.int64)
    return units[np.clip(idx, 0, max(len(units) - 1, 0))] if len(units) else units[:0]


def label_quality(
    hyp: Sequence[np.ndarray],
    ref: Sequence[Sequence[str]],
    *,
    hyp_rate: float,
    ref_rate: float,
    num_units: int | None = None,
    tolerance: int = 3,
    hyp_name: str = "hypothesis",
    ref_name: str = "reference",
) -> LabelQuality:
    """Score unit rows ``hyp[i] [frames]`` against reference symbol rows ``ref[i]`` (any strings).

    The default tolerance of 3 frames covers Kaldi MFCC/fbank (25 ms windows without edge
    padding lose ~1.5 frames against a ``ceil(samples / hop)`` alignment, plus rounding) and
    HuBERT's conv stack at 50 Hz. Rows pair up by position. Each pair is aligned by time (see :func:`align_to_hyp`); a pair
    whose lengths disagree by more than ``tolerance`` hypothesis frames raises
    :class:`AlignmentError` naming both files, the row and both lengths.
    """
    if len(hyp) != len(ref):
        raise AlignmentError(
            f"{hyp_name} has {len(hyp)} rows but {ref_name} has {len(ref)}; both must follow the same manifest"
        )
    if num_units is None:
        num_units = 1 + max((int(h.max()) for h in hyp if len(h)), default=0)
    phones: dict[str, int] = {}
    hy_all, ph_all = [], []
    dropped = 0
    for row, (h, r) in enumerate(zip(hyp, ref), start=1):
        h = np.asarray(h, dtype=np.int64)
        idx, extra = align_to_hyp(len(h), len(r), hyp_rate, ref_rate, tolerance)
        if idx is None:
            raise AlignmentError(
                f"{hyp_name} row {row}: {len(h)} frames at {hyp_rate:g} Hz ({len(h) / hyp_rate:.2f} s) but "
                f"{ref_name} row {row} has {len(r)} frames at {ref_rate:g} Hz ({len(r) / ref_rate:.2f} s), "
                f"{abs(extra)} frames apart (tolerance {tolerance}); check --ref-rate, the label frame rate, "
                f"and that both files follow the same manifest order."
            )
        ids = np.fromiter((phones.setdefault(s, len(phones)) for s in r), dtype=np.int64, count=len(r))
        dropped += extra
        hy_all.append(h[: len(idx)])
        ph_all.append(ids[idx] if len(ids) else ids)
    hy_cat = np.concatenate(hy_all) if hy_all else np.empty(0, np.int64)
    ph_cat = np.concatenate(ph_all) if ph_all else np.empty(0, np.int64)
    if hy_cat.size and hy_cat.max() >= num_units:
        raise ValueError(f"{hyp_name}: unit {int(hy_cat.max())} outside [0, {num_units})")
    n_ph = max(len(phones), 1)
    counts = np.bincount(ph_cat * num_units + hy_cat, minlength=n_ph * num_units).reshape(n_ph, num_units)
    return quality_from_counts(counts, num_units, num_rows=len(hyp), dropped=dropped)


def read_ref_labels(path: str | Path) -> list[list[str]]:
    """A reference file: one line per row of space-separated symbols (e.g. ``<split>.ali``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: reference label file not found")
    return [line.split() for line in path.read_text(encoding="utf-8").splitlines()]
