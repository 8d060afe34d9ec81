"""95 % confidence intervals of bench metrics and paired significance tests, by bootstrap over test items.

A run keeps per-test-item sufficient statistics (:class:`Items`) so any metric can be recomputed on
a resample of the test set:

* ratio metrics (accuracy, WER / CER / PER, frame accuracy, MIREX key score): per item a numerator
  and a denominator (edits and reference tokens; correct and 1), metric = 100 · Σ num / Σ den, so
  a resample of utterances gives the **corpus** WER of that resample;
* trial metrics (EER, minDCF): the trial scores and labels, resampled trial by trial;
* multi-label metrics (macro ROC-AUC, macro AP): the clip × tag labels and scores, resampled clip by clip.

:func:`bootstrap` draws ``n`` resamples with replacement (fixed seed) and recomputes the metric;
:func:`percentile_ci` is the percentile interval (2.5th and 97.5th percentiles). :func:`paired_bootstrap`
compares two systems **on the same test items** with the same resamples (Koehn 2004): the difference
is significant at 5 % when the 95 % percentile interval of the resampled differences excludes zero.

Head seeds (``audiossl bench --head-seeds N``, default 1): with one head per (task, lr) the intervals
cover test-set sampling only. With N heads trained with seeds ``seed, seed+1, ..., seed+N-1`` on the
same features, :class:`SeedItems` holds one :class:`Items` per head and :func:`bootstrap` resamples
**items and seeds** (the two-way "pigeonhole" bootstrap of a crossed design, Owen 2007): each
resample draws the test items with replacement (the very draw the items-only bootstrap makes, so
rows stay paired) and, independently, N of the N seeds with replacement; the resampled value is the
mean over the drawn seeds of each seed's metric on the drawn items. The point estimate is the mean
over seeds. The interval then covers item sampling, head-seed variance and their interaction (the
pigeonhole bootstrap errs on the wide side); with N = 1 it is the items-only bootstrap, draw for draw.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from pathlib import Path
import numpy as np

from audiossl.eval import metrics as M
from audiossl.utils.fileio import atomic_open

N_RESAMPLES = 1000
SEED = 0
LEVEL = 0.95
_CHUNK = 100  # resamples drawn at a time (bounds the [chunk, items] index matrix)


@dataclass
class Items:
    """Per-test-item statistics of one run, aligned with ``ids`` (utterance ids, trial keys, clip ids)."""

    ids: list[str]
    ratio: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    """metric → (numerator, denominator) per item"""
    trials: tuple[np.ndarray, np.ndarray] | None = None
    """(scores, labels) per trial: ``eer`` and ``min_dcf``"""
    multilabel: tuple[np.ndarray, np.ndarray] | None = None
    """(labels [items, tags], scores [items, tags]): ``auc`` and ``ap``"""

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def metrics(self) -> list[str]:
        return list(self.ratio) + (["eer", "min_dcf"] if self.trials is not None else []) + (
            ["auc", "ap"] if self.multilabel is not None else [])

    def value(self, metric: str, idx: np.ndarray | None = None) -> float:
        """The metric on items ``idx`` (all when None); NaN where undefined on that resample."""
        sel = slice(None) if idx is None else idx
        if metric in self.ratio:
            num, den = self.ratio[metric]
            d = den[sel].sum()
            return 100.0 * float(num[sel].sum() / d) if d > 0 else float("nan")
        try:
            if metric in ("eer", "min_dcf") and self.trials is not None:
                s, y = self.trials[0][sel], self.trials[1][sel]
                return M.eer(s, y) if metric == "eer" else M.min_dcf(s, y, 0.01)
            if metric in ("auc", "ap") and self.multilabel is not None:
                return macro_auc_ap(self.multilabel[0][sel], self.multilabel[1][sel])[metric == "ap"]
        except ValueError:  # a resample without both classes
            return float("nan")
        raise KeyError(f"no per-item statistics for metric {metric!r} (have {', '.join(self.metrics)})")

    def take(self, idx: np.ndarray) -> "Items":
        idx = np.asarray(idx, dtype=np.int64)
        return Items([self.ids[i] for i in idx], {k: (n[idx], d[idx]) for k, (n, d) in self.ratio.items()},
                     None if self.trials is None else (self.trials[0][idx], self.trials[1][idx]),
                     None if self.multilabel is None else (self.multilabel[0][idx], self.multilabel[1][idx]))

    @staticmethod
    def concat(parts: list["Items"]) -> "Items":
        """Items of several test sets (cross-validation folds) as one."""
        p0 = parts[0]
        cat = np.concatenate
        return Items([i for p in parts for i in p.ids],
                     {k: (cat([p.ratio[k][0] for p in parts]), cat([p.ratio[k][1] for p in parts])) for k in p0.ratio},
                     None if p0.trials is None else (cat([p.trials[0] for p in parts]), cat([p.trials[1] for p in parts])),
                     None if p0.multilabel is None else (cat([p.multilabel[0] for p in parts]),
                                                         cat([p.multilabel[1] for p in parts])))

    def arrays(self) -> dict[str, np.ndarray]:
        """The named arrays :meth:`save` writes (and :meth:`from_arrays` reads)."""
        arrays = {"ids": np.asarray(self.ids, dtype=str)}
        for k, (n, d) in self.ratio.items():
            arrays[f"ratio.{k}.num"], arrays[f"ratio.{k}.den"] = n, d
        if self.trials is not None:
            arrays["trials.scores"], arrays["trials.labels"] = self.trials
        if self.multilabel is not None:
            arrays["multilabel.labels"], arrays["multilabel.scores"] = self.multilabel
        return arrays

    def save(self, path: str | Path) -> None:
        with atomic_open(Path(path), "wb") as f:
            np.savez_compressed(f, **self.arrays())

    @staticmethod
    def from_arrays(z) -> "Items":
        files = list(z.keys()) if isinstance(z, dict) else z.files
        ratio = {k.split(".")[1]: (z[k], z[k[:-3] + "den"]) for k in files if k.startswith("ratio.") and k.endswith(".num")}
        trials = (z["trials.scores"], z["trials.labels"]) if "trials.scores" in files else None
        ml = (z["multilabel.labels"], z["multilabel.scores"]) if "multilabel.labels" in files else None
        return Items([str(i) for i in z["ids"]], ratio, trials, ml)

    @staticmethod
    def load(path: str | Path) -> "Items":
        return Items.from_arrays(np.load(Path(path), allow_pickle=False))


@dataclass
class SeedItems:
    """Per-test-item statistics of N heads (one per head seed) on the same test items, ``runs[k]``
    for seed ``seed + k``; a metric's value is the mean over the seeds. Duck-types :class:`Items`
    where the bootstrap, :func:`align` and the report use it."""

    runs: list[Items]

    def __post_init__(self) -> None:
        if not self.runs or any(r.ids != self.runs[0].ids for r in self.runs):
            raise ValueError("SeedItems: every head seed must be scored on the same test items, in the same order")

    @property
    def ids(self) -> list[str]:
        return self.runs[0].ids

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def metrics(self) -> list[str]:
        return self.runs[0].metrics

    def value(self, metric: str, idx: np.ndarray | None = None) -> float:
        v = np.array([r.value(metric, idx) for r in self.runs])
        return float(np.nanmean(v)) if np.isfinite(v).any() else float("nan")

    def seed_values(self, metric: str) -> list[float]:
        return [r.value(metric) for r in self.runs]

    def take(self, idx: np.ndarray) -> "SeedItems":
        return SeedItems([r.take(idx) for r in self.runs])

    def save(self, path: str | Path) -> None:
        arrays = {"ids": np.asarray(self.ids, dtype=str), "head_seeds": np.asarray(len(self.runs))}
        for k, r in enumerate(self.runs):
            arrays |= {f"seed{k}.{name}": a for name, a in r.arrays().items() if name != "ids"}
        with atomic_open(Path(path), "wb") as f:
            np.savez_compressed(f, **arrays)


def load_items(path: str | Path) -> "Items | SeedItems":
    """``items.npz`` of a bench run: :class:`Items`, or :class:`SeedItems` when it holds several head seeds."""
    z = np.load(Path(path), allow_pickle=False)
    if "head_seeds" not in z.files:
        return Items.load(path)
    ids = z["ids"]
    return SeedItems([Items.from_arrays({"ids": ids} | {f[len(f"seed{k}."):]: z[f] for f in z.files
                                                         if f.startswith(f"seed{k}.")})
                      for k in range(int(z["head_seeds"]))])


def macro_auc_ap(y: np.ndarray, s: np.ndarray) -> tuple[float, float]:
    """Macro ROC-AUC and AP in percent over tags with both classes, vectorised over tags.

    Same definitions as sklearn's ``roc_auc_score`` (Mann-Whitney with average ranks for ties) and
    ``average_precision_score`` (precision at each distinct threshold), which is too slow to call a
    thousand times; :func:`audiossl.eval.metrics.multilabel_auc_ap` stays the reference (tested equal).
    """
    from scipy.stats import rankdata  # lazy: scipy imports slowly; only this path needs it

    y, s = np.asarray(y, dtype=np.float64), np.asarray(s, dtype=np.float64)
    keep = (y.min(0) == 0) & (y.max(0) == 1)
    if not keep.any():
        raise ValueError("ROC-AUC undefined: no tag has both positive and negative clips in this resample")
    y, s = y[:, keep], s[:, keep]
    pos = y.sum(0)
    neg = y.shape[0] - pos
    ranks = rankdata(s, axis=0, method="average")
    auc = ((ranks * y).sum(0) - pos * (pos + 1) / 2) / (pos * neg)
    order = np.argsort(-s, axis=0, kind="stable")
    ys, ss = np.take_along_axis(y, order, 0), np.take_along_axis(s, order, 0)
    tps = np.cumsum(ys, axis=0)
    last = np.ones_like(ss, dtype=bool)  # the last row of each run of tied scores is a threshold
    last[:-1] = ss[:-1] != ss[1:]
    prec = tps / np.arange(1, len(ys) + 1)[:, None]
    ap = np.zeros(ys.shape[1])
    for j in range(ys.shape[1]):
        t = np.flatnonzero(last[:, j])
        r = tps[t, j] / pos[j]
        ap[j] = float(np.sum(np.diff(np.concatenate([[0.0], r])) * prec[t, j]))
    return 100.0 * float(auc.mean()), 100.0 * float(ap.mean())


def task_seed(task: str, seed: int = SEED) -> int:
    """A fixed seed per task, so every row of a table resamples a task's test items the same way."""
    return (zlib.crc32(task.encode()) + seed) % (2**32)


def resample_indices(n_items: int, n: int = N_RESAMPLES, seed: int = SEED):
    """Yields ``[chunk, n_items]`` index matrices, ``n`` rows in all (with replacement, fixed seed)."""
    rng = np.random.default_rng(seed)
    for start in range(0, n, _CHUNK):
        yield rng.integers(0, n_items, size=(min(_CHUNK, n - start), n_items))


def _resampled(items: Items, metric: str, idx: np.ndarray) -> np.ndarray:
    """The metric on each row of the ``[chunk, n_items]`` index matrix, ``[chunk]``."""
    if metric in items.ratio:
        num, den = items.ratio[metric]
        d = den[idx].sum(1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(d > 0, 100.0 * num[idx].sum(1) / d, np.nan)
    return np.array([items.value(metric, row) for row in idx])


def bootstrap(items: "Items | SeedItems", metric: str, n: int = N_RESAMPLES, seed: int = SEED) -> np.ndarray:
    """The metric on ``n`` resamples of the test items, ``[n]`` (NaN where undefined); for
    :class:`SeedItems`, resamples of items × head seeds (see the module docstring).

    Multi-label metrics on large sets use fewer resamples (at least 100; ``n · clips · tags`` ≤ 5·10⁸) so
    AudioSet's eval set (20k clips × 527 tags) takes minutes, not hours.
    """
    if len(items) == 0:
        raise ValueError("bootstrap over 0 test items")
    runs = items.runs if isinstance(items, SeedItems) else [items]
    ml = runs[0].multilabel
    if metric in ("auc", "ap") and ml is not None:
        n = min(n, max(100, int(5e8 // max(1, ml[0].size * len(runs)))))
    seed_rng = np.random.default_rng([seed, len(runs)])  # its own stream: item draws match the 1-seed bootstrap
    out = []
    for idx in resample_indices(len(items), n, seed):
        per_run = np.stack([_resampled(r, metric, idx) for r in runs], axis=1)  # [chunk, seeds]
        if len(runs) == 1:
            out.append(per_run[:, 0])
            continue
        drawn = np.take_along_axis(per_run, seed_rng.integers(0, len(runs), size=per_run.shape), axis=1)
        with np.errstate(invalid="ignore"):
            ok = np.isfinite(drawn)
            out.append(np.where(ok.any(1), np.where(ok, drawn, 0.0).sum(1) / np.maximum(ok.sum(1), 1), np.nan))
    return np.concatenate(out)


def percentile_ci(samples: np.ndarray, level: float = LEVEL) -> tuple[float, float] | None:
    """Percentile interval of bootstrap ``samples`` (NaNs ignored); None when all are NaN."""
    s = np.asarray(samples, dtype=np.float64)
    s = s[np.isfinite(s)]
    if s.size == 0:
        return None
    a = (1.0 - level) / 2.0
    return float(np.quantile(s, a)), float(np.quantile(s, 1.0 - a))


def confidence_intervals(items: Items, metrics: list[str] | None = None, n: int = N_RESAMPLES,
                         seed: int = SEED) -> dict[str, list[float]]:
    """``{metric: [low, high]}`` 95 % percentile-bootstrap intervals of every metric ``items`` supports."""
    out = {}
    for m in metrics or items.metrics:
        if m in items.metrics:
            ci = percentile_ci(bootstrap(items, m, n, seed))
            if ci is not None:
                out[m] = [ci[0], ci[1]]
    return out


def align(a: Items, b: Items) -> tuple[Items, Items]:
    """Both item sets restricted to their common ids, in the same order (bad files may differ per row)."""
    pos_b = {u: i for i, u in enumerate(b.ids)}
    ia = [i for i, u in enumerate(a.ids) if u in pos_b]
    return a.take(np.array(ia, dtype=np.int64)), b.take(np.array([pos_b[a.ids[i]] for i in ia], dtype=np.int64))


@dataclass
class Paired:
    diff: float
    """metric(a) − metric(b) on the common items"""
    ci: tuple[float, float] | None
    p: float
    """two-sided bootstrap p-value: 2 · min(P(d ≤ 0), P(d ≥ 0)) over resamples"""
    significant: bool
    n_resamples: int
    """resamples where both values are defined"""


def paired_test(samples_a: np.ndarray, samples_b: np.ndarray, point_a: float, point_b: float,
                level: float = LEVEL) -> Paired:
    """Paired bootstrap from resampled values of two systems drawn with the same resamples."""
    d = np.asarray(samples_a) - np.asarray(samples_b)
    d = d[np.isfinite(d)]
    ci = percentile_ci(d, level)
    p = float(min(1.0, 2 * min((d <= 0).mean(), (d >= 0).mean()))) if d.size else 1.0
    sig = ci is not None and (ci[0] > 0 or ci[1] < 0)
    return Paired(point_a - point_b, ci, p, bool(sig), int(d.size))


def paired_bootstrap(a: Items, b: Items, metric: str, n: int = N_RESAMPLES, seed: int = SEED) -> Paired:
    """Is ``metric`` of system ``a`` different from system ``b`` on their common test items?"""
    a, b = align(a, b)
    return paired_test(bootstrap(a, metric, n, seed), bootstrap(b, metric, n, seed), a.value(metric), b.value(metric))

