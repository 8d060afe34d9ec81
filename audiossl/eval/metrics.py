"""Evaluation metrics for the bench tasks (SUPERB / MARBLE definitions).

Error rates are returned in percent (0-100), as SUPERB reports them; accuracies and scores too.
"""

from __future__ import annotations

import re
from typing import Sequence

import numpy as np

try:  # C implementation; torchaudio's pure-Python one is the fallback
    import editdistance as _ed

    def edit_distance(ref: Sequence, hyp: Sequence) -> int:
        """Levenshtein distance (substitutions + deletions + insertions) between token lists."""
        return int(_ed.eval(list(ref), list(hyp)))

except ImportError:  # pragma: no cover
    from torchaudio.functional import edit_distance as _ta_ed

    def edit_distance(ref: Sequence, hyp: Sequence) -> int:
        return int(_ta_ed(list(ref), list(hyp)))


def error_rate(refs: Sequence[Sequence[str]], hyps: Sequence[Sequence[str]]) -> float:
    """Corpus error rate in percent: total edits / total reference tokens × 100 (WER, PER, CER)."""
    if len(refs) != len(hyps):
        raise ValueError(f"{len(refs)} references but {len(hyps)} hypotheses")
    n = sum(len(r) for r in refs)
    if n == 0:
        raise ValueError("error rate undefined: the references contain no tokens")
    return 100.0 * sum(edit_distance(r, h) for r, h in zip(refs, hyps)) / n


def letters_to_words(tokens: Sequence[str], boundary: str = "|") -> list[str]:
    """fairseq letters ``H E L L O | W O R L D |`` → words ``[HELLO, WORLD]``."""
    return "".join(" " if t == boundary else t for t in tokens).split()


def accuracy(y_true: Sequence, y_pred: Sequence) -> float:
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.size == 0:
        raise ValueError("accuracy undefined on 0 examples")
    return 100.0 * float((y_true == y_pred).mean())


def _check_trials(scores: Sequence[float], labels: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    s, y = np.asarray(scores, dtype=np.float64), np.asarray(labels, dtype=np.int64)
    if s.shape != y.shape or s.ndim != 1:
        raise ValueError(f"scores {s.shape} and labels {y.shape} must be equal-length 1-D lists")
    if not (y == 1).any() or not (y == 0).any():
        raise ValueError("EER/minDCF need both target (1) and non-target (0) trials")
    return s, y


def roc_points(s: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(fpr, tpr)`` at every distinct score threshold, strictest first, from ``(0, 0)``: scikit-learn's
    ``roc_curve(y, s, drop_intermediate=False)`` (tested equal). Written out because the bootstrap calls
    it ~1000 times per ASV pair, and sklearn's argument validation took 2/3 of each call (12 s of the
    demo's 29-s table step)."""
    order = np.argsort(s, kind="mergesort")[::-1]
    s, y = s[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(s)), y.size - 1]  # the last trial of each distinct score
    tps = np.r_[0, np.cumsum(y)[last]]
    fps = np.r_[0, (last + 1) - tps[1:]]
    return fps / fps[-1], tps / tps[-1]


def eer(scores: Sequence[float], labels: Sequence[int]) -> float:
    """Equal error rate in percent; ``labels`` 1 = target trial. Higher score = more likely target.

    The ROC is interpolated linearly between its points where miss and false-alarm rates cross.
    """
    s, y = _check_trials(scores, labels)
    fpr, tpr = roc_points(s, y)
    d = (1.0 - tpr) - fpr  # miss − false alarm: +1 at the strictest threshold, −1 at the loosest
    i = int(np.argmax(d <= 0))
    if d[i] == 0 or i == 0:
        return 100.0 * float(fpr[i])
    t = d[i - 1] / (d[i - 1] - d[i])
    return 100.0 * float(fpr[i - 1] + t * (fpr[i] - fpr[i - 1]))


def min_dcf(scores: Sequence[float], labels: Sequence[int], p_target: float = 0.01, c_miss: float = 1.0, c_fa: float = 1.0) -> float:
    """Normalised minimum detection cost (NIST SRE / VoxCeleb definition), over all thresholds."""
    s, y = _check_trials(scores, labels)
    fpr, tpr = roc_points(s, y)
    dcf = c_miss * (1 - tpr) * p_target + c_fa * fpr * (1 - p_target)
    return float(dcf.min() / min(c_miss * p_target, c_fa * (1 - p_target)))


# -- musical keys (MIREX / GiantSteps weighted score) -------------------------------------------

_PITCH = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}


def parse_key(name: str) -> tuple[int, str]:
    """``"C# minor"``, ``"Eb major"``, ``"a minor"`` → ``(tonic pitch class, "major"|"minor")``."""
    m = re.fullmatch(r"\s*([A-Ga-g])([#b♯♭]*)\s*[:_ ]?\s*(major|minor|maj|min)\s*", name, flags=re.I)
    if not m:
        raise ValueError(f"cannot parse key {name!r}; expected e.g. 'C major', 'F# minor', 'Bb major'")
    pc = _PITCH[m.group(1).upper()] + sum(1 if c in "#♯" else -1 for c in m.group(2))
    mode = "major" if m.group(3).lower().startswith("maj") else "minor"
    return pc % 12, mode


def key_score(ref: str, est: str) -> float:
    """MIREX weighted key score via ``mir_eval.key.weighted_score``: 1 same key, 0.5 perfect fifth
    above (same mode), 0.3 relative major/minor, 0.2 parallel, else 0. Names are normalised with
    :func:`parse_key` first (``"Db maj"``, ``"c# minor"``), which mir_eval's parser does not accept."""
    import mir_eval  # lazy: only the beat/key metrics need it

    (rt, rm), (et, em) = parse_key(ref), parse_key(est)
    return float(mir_eval.key.weighted_score(f"{_SHARPS[rt]} {rm}", f"{_SHARPS[et]} {em}"))


_SHARPS = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")


def key_weighted_score(refs: Sequence[str], ests: Sequence[str]) -> float:
    """Mean MIREX weighted key score in percent."""
    if len(refs) != len(ests) or not refs:
        raise ValueError(f"need equal, non-empty key lists (got {len(refs)} and {len(ests)})")
    return 100.0 * float(np.mean([key_score(r, e) for r, e in zip(refs, ests)]))


def multilabel_auc_ap(y_true: np.ndarray, y_score: np.ndarray) -> tuple[float, float]:
    """Macro ROC-AUC and macro average precision (percent) over tags that have both classes.

    ``y_true`` ``[num_clips, num_tags]`` in {0,1}; ``y_score`` the same shape (any monotone score).
    """
    from sklearn.metrics import average_precision_score, roc_auc_score  # lazy: slow import; only this metric needs it

    y_true, y_score = np.asarray(y_true), np.asarray(y_score)
    keep = (y_true.min(0) == 0) & (y_true.max(0) == 1)
    if not keep.any():
        raise ValueError("ROC-AUC undefined: no tag has both positive and negative clips in this split")
    return (
        100.0 * float(roc_auc_score(y_true[:, keep], y_score[:, keep], average="macro")),
        100.0 * float(average_precision_score(y_true[:, keep], y_score[:, keep], average="macro")),
    )
