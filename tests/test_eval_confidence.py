"""Bootstrap confidence intervals and paired significance on cases with a known answer; the report's
CI columns, significance marks and figures."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest

from audiossl.eval.confidence import (Items, bootstrap, confidence_intervals, paired_bootstrap, percentile_ci,
                                      resample_indices)
from audiossl.eval.report import write_reports


def _acc_items(correct, prefix="u") -> Items:
    c = np.asarray(correct, dtype=np.float64)
    return Items([f"{prefix}{i}" for i in range(len(c))], {"acc": (c, np.ones(len(c)))})


def test_constant_predictions_give_zero_width():
    assert confidence_intervals(_acc_items([1] * 50)) == {"acc": [100.0, 100.0]}
    # every utterance has 1 edit in 2 words: corpus WER is 50 % on any resample
    it = Items([str(i) for i in range(20)], {"wer": (np.ones(20), np.full(20, 2.0))})
    assert confidence_intervals(it) == {"wer": [50.0, 50.0]}


def test_accuracy_ci_matches_binomial_approximation():
    n, k = 1000, 700
    lo, hi = confidence_intervals(_acc_items([1] * k + [0] * (n - k)))["acc"]
    expected = 2 * 1.96 * 100 * math.sqrt(0.7 * 0.3 / n)  # normal approximation of the binomial: 5.68 points
    assert hi - lo == pytest.approx(expected, rel=0.1)
    assert lo < 70.0 < hi and abs((lo + hi) / 2 - 70.0) < 0.6


def test_wer_resamples_recompute_corpus_wer():
    rng = np.random.default_rng(1)
    edits, words = rng.integers(0, 4, 30).astype(float), rng.integers(1, 12, 30).astype(float)
    it = Items([str(i) for i in range(30)], {"wer": (edits, words)})
    got = bootstrap(it, "wer", n=150, seed=7)
    idx = np.concatenate(list(resample_indices(30, 150, 7)))
    want = [100 * edits[r].sum() / words[r].sum() for r in idx]  # corpus WER, not a mean of utterance WERs
    assert np.allclose(got, want)
    assert it.value("wer") == pytest.approx(100 * edits.sum() / words.sum())


def test_eer_ci_and_undefined_resamples():
    rng = np.random.default_rng(0)
    y = np.array([1] * 40 + [0] * 40)
    s = np.where(y == 1, 1.0, 0.0) + rng.normal(0, 0.6, 80)
    it = Items([f"t{i}" for i in range(80)], trials=(s, y))
    ci = confidence_intervals(it, ["eer"], n=200)["eer"]
    assert ci[0] <= it.value("eer") <= ci[1] and ci[1] - ci[0] > 1.0
    assert percentile_ci(np.array([np.nan, np.nan])) is None


def test_paired_bootstrap_significance():
    base = np.array([1] * 300 + [0] * 200)  # 60 %
    better = base.copy()
    better[300:400] = 1  # right on 100 more items, wrong on none that base got right: 80 %
    assert paired_bootstrap(_acc_items(better), _acc_items(base), "acc").significant
    same = paired_bootstrap(_acc_items(base), _acc_items(base), "acc")
    assert not same.significant and same.diff == 0.0 and same.ci == (0.0, 0.0)
    slightly = base.copy()
    slightly[300:302] = 1  # 2 items of 500: not significant
    assert not paired_bootstrap(_acc_items(slightly), _acc_items(base), "acc").significant
    # items are matched by id, whatever the order and whatever a row skipped
    perm = np.random.default_rng(0).permutation(500)[:480]
    shuffled = _acc_items(better).take(perm)
    r = paired_bootstrap(shuffled, _acc_items(base), "acc")
    assert r.significant and r.diff == pytest.approx(100 * (better[perm].mean() - base[perm].mean()))


def _record(up, task, metric, value, items_rel, ci, lw):
    return {"upstream": up, "task": task, "metric": metric, "value": value, "test": {metric: value}, "dev": value,
            "lr": 0.01, "layer": None, "epochs": 1, "skipped_files": 0, "layer_weights": lw,
            "curve": [{"epoch": 1, "dev": value, "train_loss": 1.0}], "ci": ci, "items": items_rel}


def test_report_cis_marks_and_figures(tmp_path):
    base = np.array([1] * 120 + [0] * 80)
    good = base.copy()
    good[120:180] = 1
    recs = []
    for up, corr, wer_e, lw in [("good", good, 1.0, [0.1, 0.2, 0.7]), ("fbank", base, 3.0, [1.0])]:
        for task, it in [("ks", _acc_items(corr)),
                         ("pr", Items([f"p{i}" for i in range(40)], {"per": (np.full(40, wer_e), np.full(40, 10.0))}))]:
            rel = f"runs/{up}/{task}/items.npz"
            (tmp_path / rel).parent.mkdir(parents=True)
            it.save(tmp_path / rel)
            m = next(iter(it.ratio))
            recs.append(_record(up, task, m, it.value(m), rel, confidence_intervals(it), lw))
    write_reports(recs, tmp_path, bootstrap=300)
    md = (tmp_path / "results.md").read_text()
    good_row = next(l for l in md.splitlines() if l.startswith("| good |"))
    fbank_row = next(l for l in md.splitlines() if l.startswith("| fbank |"))
    # ks 90.00 vs 60.00 and PER 10 vs 30 on the same items: both significantly better; overall too
    assert good_row.count("▲") == 3 and "▲" not in fbank_row and "▼" not in md.split("\n\n")[0]
    assert "90.00 [" in good_row and "10.00 [10.00, 10.00]" in good_row
    res = json.loads((tmp_path / "results.json").read_text())
    lo, hi = res["overall_ci"]["good"]
    assert lo < res["overall"]["good"] < hi
    assert {(s["task"], s["significant"], s["better"]) for s in res["significance"]} == {
        ("ks", True, True), ("pr", True, True), ("overall", True, True)}
    rows = list(csv.DictReader((tmp_path / "results.csv").open()))
    assert rows[0]["ci_low"] and rows[0]["vs_fbank"] == "better" and rows[-1]["vs_fbank"] == ""
    for png in ("results_bars.png", "layer_weights_good.png"):
        assert (tmp_path / png).stat().st_size > 2000 and f"({png})" in md
    assert not (tmp_path / "layer_weights_fbank.png").exists()  # one layer: nothing to weigh


def test_fast_macro_auc_ap_equals_sklearn():
    from audiossl.eval import metrics as M
    from audiossl.eval.confidence import macro_auc_ap

    rng = np.random.default_rng(0)
    y = (rng.random((40, 6)) > 0.6).astype(float)
    y[:, 5] = 0  # a tag without positives is left out by both
    s = np.round(rng.random((40, 6)) + 0.5 * y, 1)  # rounding makes ties
    assert macro_auc_ap(y, s) == pytest.approx(M.multilabel_auc_ap(y, s), abs=1e-9)
