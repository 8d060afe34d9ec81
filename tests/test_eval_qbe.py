"""Query by example: AP/MAP against hand-computed values and scikit-learn, subsequence DTW on a
hand-checkable cost matrix, layer choice on dev, the synthesised set and its label checks, and one
bench run (FBANK) end to end with a confidence interval."""

from __future__ import annotations

import numpy as np
import pytest

from audiossl.eval import qbe as Q


def test_average_precision_hand_computed():
    # ranking: rel, non, rel → (1/1 + 2/3) / 2
    assert Q.average_precision([0.9, 0.8, 0.7], [1, 0, 1]) == pytest.approx(5 / 6)
    assert Q.average_precision([3, 2, 1, 0], [1, 1, 0, 0]) == 1.0
    assert Q.average_precision([3, 2, 1, 0], [0, 0, 0, 1]) == pytest.approx(1 / 4)
    assert np.isnan(Q.average_precision([1, 2], [0, 0]))
    # scores need not be sorted: item 2 (score 5) first, relevant → 1, then item 0 (rel) at rank 3 → 2/3
    assert Q.average_precision([1.0, 2.0, 5.0], [1, 0, 1]) == pytest.approx((1 + 2 / 3) / 2)
    # MAP over queries, ×100, a query without relevant documents left out
    m, ap = Q.mean_average_precision(np.array([[0.9, 0.8, 0.7], [3, 2, 1], [1, 2, 3]]),
                                     np.array([[1, 0, 1], [0, 0, 1], [0, 0, 0]], bool))
    assert m == pytest.approx(100 * (5 / 6 + 1 / 3) / 2) and np.isnan(ap[2])


def test_average_precision_is_sklearns_without_ties():
    from sklearn.metrics import average_precision_score

    rng = np.random.default_rng(0)
    for _ in range(20):
        s, y = rng.random(15), rng.random(15) < 0.3
        y[0] = True
        assert Q.average_precision(s, y) == pytest.approx(average_precision_score(y, s))


def test_subsequence_dtw_hand_checkable():
    import librosa

    # query frames match document frames 1 and 2: a free start and end make the path cost 0
    c = np.array([[1.0, 0.0, 1.0, 1.0], [1.0, 1.0, 0.0, 1.0]])
    assert librosa.sequence.dtw(C=c, subseq=True, backtrack=False)[-1].min() == 0.0
    e = np.eye(4, dtype=np.float32)  # unit rows: cosine distance 0 to itself, 1 to the others
    doc = e[[0, 1, 2, 3, 0]]
    assert Q.dtw_score(e[[1, 2]], doc) == pytest.approx(0.0)
    # [3, 1] is not in the doc in order: best path (3→3, 1→0) costs 1, over 2 query frames
    assert Q.dtw_score(e[[3, 1]], doc) == pytest.approx(-0.5)
    # a time-stretched copy is found at zero cost (DTW), a stranger document scores lower
    rng = np.random.default_rng(1)
    base = rng.standard_normal((30, 8)).astype(np.float32)
    docs = [np.concatenate([rng.standard_normal((20, 8)), np.repeat(base, 2, 0), rng.standard_normal((10, 8))]),
            rng.standard_normal((80, 8))]
    s = Q.score_layer([base], docs)
    assert s[0, 0] > s[0, 1]


def test_layer_picked_on_dev():
    rng = np.random.default_rng(0)
    words = {w: rng.standard_normal((12, 6)).astype(np.float32) for w in ("a", "b", "c")}

    def utt(content, n_noise=15):  # layer 0: noise; layer 1: the words' patterns
        info = np.concatenate([rng.standard_normal((n_noise, 6))] + [np.concatenate([words[w], rng.standard_normal((5, 6))]) for w in content])
        return np.stack([rng.standard_normal(info.shape), info], 1).astype(np.float32)

    def split():
        qs = [utt(w, 0) for w in "abc"]
        docs = [("a",), ("b",), ("c",), ("a", "b"), ()]
        return qs, list("abc"), [utt(d) for d in docs], [set(d) for d in docs]

    r = Q.evaluate(split(), split(), 2)
    assert r["layer"] == 1 and r["test_map"] == pytest.approx(100.0) and r["dev_map"][1] == pytest.approx(100.0)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    from audiossl.data.synth import synthesize

    out = tmp_path_factory.mktemp("qbe")
    synthesize(out, "tiny", 0, 1, ["qbe"], progress=False)
    return out


def test_synth_qbe_set(corpus):
    from audiossl.data.manifest import read_manifest
    from audiossl.data.synth.bench_tasks import QBE_KEYWORDS

    for split in ("valid", "test"):
        q = read_manifest(corpus / "qbe" / f"{split}_queries.tsv", labels=["kw"])
        d = read_manifest(corpus / "qbe" / f"{split}.tsv", labels=["kw", "wrd"])
        assert q.labels["kw"] == QBE_KEYWORDS[:3]
        for kw, wrd in zip(d.labels["kw"], d.labels["wrd"]):
            assert (kw == "none") == (not set(wrd.lower().split()) & set(QBE_KEYWORDS))
            assert kw == "none" or kw.upper() in wrd.split()
        assert {k for l in d.labels["kw"] for k in Q.doc_keywords(l)} == set(QBE_KEYWORDS[:3])
    assert not (corpus / "qbe" / "train.tsv").exists()


def test_missing_labels_fail_before_training(corpus, tmp_path):
    import shutil

    from audiossl.eval.tasks import BenchError, available, get_task, resolve

    assert "qbe" in available(corpus)
    assert set(resolve(get_task("qbe"), corpus).splits) == {"dev", "test"}
    data = tmp_path / "d"
    shutil.copytree(corpus, data)
    (data / "qbe" / "test_queries.tsv").unlink()
    with pytest.raises(BenchError, match=r"task qbe: .*test_queries\.tsv: no queries manifest"):
        resolve(get_task("qbe"), data)
    shutil.copy(corpus / "qbe" / "test_queries.tsv", data / "qbe" / "test_queries.tsv")
    (data / "qbe" / "test.kw").unlink()
    with pytest.raises(BenchError, match=r"task qbe .*test\.kw"):
        resolve(get_task("qbe"), data)
    shutil.copy(corpus / "qbe" / "test.kw", data / "qbe" / "test.kw")
    kw = data / "qbe" / "valid_queries.kw"
    kw.write_text("\n".join(["zebra"] + kw.read_text().splitlines()[1:]) + "\n")
    with pytest.raises(BenchError, match=r"valid_queries\.kw:1: query keyword 'zebra' occurs in no document"):
        resolve(get_task("qbe"), data)


def test_bench_qbe_fbank_end_to_end(corpus, tmp_path):
    import torch

    from audiossl.eval.harness import BenchConfig, run_bench

    torch.set_num_threads(1)
    recs = run_bench(["fbank"], ["qbe"], corpus, tmp_path / "b", BenchConfig(bootstrap=200))
    (r,) = recs
    assert r["task"] == "qbe" and r["metric"] == "map" and 0 < r["value"] <= 100
    lo, hi = r["ci"]["map"]
    assert lo <= r["value"] <= hi
    table = (tmp_path / "b" / "results.md").read_text()
    assert "qbe (MAP" in table and "[" in table
