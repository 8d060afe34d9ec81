"""Bench metrics against hand-computed values and sklearn; the overall-score formula."""

from __future__ import annotations

import numpy as np
import pytest

from audiossl.eval import metrics as M
from audiossl.eval.report import overall_score, task_score


def test_edit_distance_and_error_rates():
    assert M.edit_distance("kitten", "sitting") == 3
    assert M.edit_distance([], ["a", "b"]) == 2
    # PER: ref 4 phones; hyp has 1 substitution + 1 deletion; ref 2: 1 insertion → 3 edits / 6 phones
    refs = [["a", "b", "c", "d"], ["e", "f"]]
    hyps = [["a", "x", "c"], ["e", "f", "g"]]
    assert M.error_rate(refs, hyps) == pytest.approx(100 * 3 / 6)
    # WER through fairseq letters: "THE CAT SAT" vs "THE BAT" → 1 sub + 1 del over 3 words
    ref = M.letters_to_words("T H E | C A T | S A T |".split())
    hyp = M.letters_to_words("T H E | B A T |".split())
    assert ref == ["THE", "CAT", "SAT"] and hyp == ["THE", "BAT"]
    assert M.error_rate([ref], [hyp]) == pytest.approx(100 * 2 / 3)
    with pytest.raises(ValueError, match="no tokens"):
        M.error_rate([[]], [["a"]])


def test_accuracy():
    assert M.accuracy(["a", "b", "c", "d"], ["a", "b", "x", "d"]) == 75.0


def test_eer_on_constructed_scores():
    # perfectly separated → 0; fully inverted → 100
    assert M.eer([0.9, 0.8, 0.2, 0.1], [1, 1, 0, 0]) == pytest.approx(0.0)
    assert M.eer([0.1, 0.2, 0.8, 0.9], [1, 1, 0, 0]) == pytest.approx(100.0)
    # 10 targets, 10 non-targets; one target below every non-target and one non-target above
    # every target: at the threshold between, miss = fa = 1/10 → EER 10 %
    tgt = [0.05] + list(np.linspace(0.6, 0.95, 9))
    non = [0.99] + list(np.linspace(0.1, 0.5, 9))
    assert M.eer(tgt + non, [1] * 10 + [0] * 10) == pytest.approx(10.0)
    # crossing between ROC points: 2 targets / 2 non-targets interleaved t n t n (desc) →
    # miss goes 0.5 → 0 while fa goes 0.5 → ...; EER = 50 %
    assert M.eer([0.9, 0.8, 0.7, 0.6], [1, 0, 1, 0]) == pytest.approx(50.0)
    with pytest.raises(ValueError, match="both target"):
        M.eer([0.1, 0.2], [1, 1])


def test_roc_points_equal_sklearn_roc_curve_with_ties():
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    for n in (2, 7, 300):
        s = np.round(rng.normal(size=n), 1)  # rounded: many tied scores
        y = (rng.random(n) < 0.4).astype(np.int64)
        y[:2] = [0, 1]
        fpr, tpr = M.roc_points(s, y)
        want_fpr, want_tpr, _ = metrics.roc_curve(y, s, drop_intermediate=False)
        np.testing.assert_allclose(fpr, want_fpr)
        np.testing.assert_allclose(tpr, want_tpr)
        # EER from the full curve equals EER on sklearn's default (collinear points dropped) curve
        f2, t2, _ = metrics.roc_curve(y, s)
        d = (1.0 - t2) - f2
        i = int(np.argmax(d <= 0))
        want = f2[i] if d[i] == 0 or i == 0 else f2[i - 1] + d[i - 1] / (d[i - 1] - d[i]) * (f2[i] - f2[i - 1])
        assert M.eer(s, y) == pytest.approx(100.0 * want)


def test_min_dcf():
    # separable scores → cost 0; inseparable → normalised cost 1 (the trivial "reject all" system)
    assert M.min_dcf([0.9, 0.8, 0.2, 0.1], [1, 1, 0, 0]) == pytest.approx(0.0)
    assert M.min_dcf([0.1, 0.2, 0.8, 0.9], [1, 1, 0, 0]) == pytest.approx(1.0)
    # p_target 0.5: one miss out of 2 targets at the best threshold → (0.5*0.5) / 0.5 = 0.5
    assert M.min_dcf([0.9, 0.1, 0.5, 0.4], [1, 1, 0, 0], p_target=0.5) == pytest.approx(0.5)


def test_key_weighted_score():
    assert M.parse_key("C# minor") == (1, "minor") and M.parse_key("Bb major") == (10, "major")
    assert M.key_score("C major", "C major") == 1.0
    assert M.key_score("C major", "G major") == 0.5  # fifth above
    assert M.key_score("C major", "F major") == 0.0  # fifth below is not credited
    assert M.key_score("C major", "A minor") == 0.3  # relative minor
    assert M.key_score("A minor", "C major") == 0.3  # relative major
    assert M.key_score("C major", "C minor") == 0.2  # parallel
    assert M.key_score("Db major", "C# major") == 1.0  # enharmonic
    assert M.key_score("C major", "D major") == 0.0
    assert M.key_weighted_score(["C major", "C major", "A minor", "E minor"], ["C major", "G major", "C major", "F major"]) == pytest.approx(
        100 * (1 + 0.5 + 0.3 + 0) / 4
    )
    with pytest.raises(ValueError, match="cannot parse key 'H major'"):
        M.parse_key("H major")


def _mirex_by_hand(ref: tuple[int, str], est: tuple[int, str]) -> float:
    """The MIREX table written out: same 1, fifth above 0.5, relative 0.3, parallel 0.2, other 0."""
    (rt, rm), (et, em) = ref, est
    if (rt, rm) == (et, em):
        return 1.0
    if rm == em and (et - rt) % 12 == 7:
        return 0.5
    if rm != em and (et - rt) % 12 == (9 if rm == "major" else 3):
        return 0.3
    if rt == et:
        return 0.2
    return 0.0


def test_key_score_is_mir_eval_and_matches_the_mirex_table():
    import mir_eval

    cases = {("D major", "D major"): 1.0, ("D major", "A major"): 0.5, ("E minor", "B minor"): 0.5,
             ("D major", "B minor"): 0.3, ("F# minor", "A major"): 0.3, ("G minor", "G major"): 0.2,
             ("D major", "G major"): 0.0, ("D major", "E major"): 0.0, ("E minor", "C major"): 0.0}
    for (r, e), want in cases.items():
        assert M.key_score(r, e) == want == mir_eval.key.weighted_score(r, e), (r, e)
    names = [f"{pc} {mode}" for mode in ("major", "minor") for pc in "C C# D D# E F F# G G# A A# B".split()]
    for r in names:
        for e in names:
            assert M.key_score(r, e) == _mirex_by_hand(M.parse_key(r), M.parse_key(e)), (r, e)
    assert M.key_score("Gb maj", "f# Major") == 1.0  # our parser's spellings still work


def test_auc_ap_match_sklearn():
    from sklearn.metrics import average_precision_score, roc_auc_score

    rng = np.random.default_rng(0)
    y = (rng.random((40, 5)) > 0.6).astype(int)
    y[:, 4] = 0  # a tag with no positives is ignored
    s = y * 0.5 + rng.random((40, 5))
    auc, ap = M.multilabel_auc_ap(y, s)
    assert auc == pytest.approx(100 * roc_auc_score(y[:, :4], s[:, :4], average="macro"))
    assert ap == pytest.approx(100 * average_precision_score(y[:, :4], s[:, :4], average="macro"))
    # a hand-checkable case: one tag, ranking positive, negative, positive, negative → AUC 3/4
    auc1, ap1 = M.multilabel_auc_ap(np.array([[1], [0], [1], [0]]), np.array([[0.9], [0.8], [0.7], [0.1]]))
    assert auc1 == pytest.approx(75.0) and ap1 == pytest.approx(100 * (1 + 2 / 3) / 2)


def test_overall_score_formula():
    recs = [
        {"task": "pr", "metric": "per", "value": 20.0},
        {"task": "asv", "metric": "eer", "value": 10.0},
        {"task": "ks", "metric": "acc", "value": 90.0},
        {"task": "key", "metric": "key", "value": 60.0},
    ]
    assert task_score("wer", 30.0) == 70.0 and task_score("acc", 30.0) == 30.0
    assert overall_score(recs, ["pr", "asv", "ks", "key"]) == pytest.approx((80 + 90 + 90 + 60) / 4)
    assert overall_score(recs[:2], ["pr", "asv", "ks"]) is None  # a missing task → no overall
