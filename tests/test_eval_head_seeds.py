"""Head-seed resampling (``audiossl bench --head-seeds N``): the two-way bootstrap over test items ×
head seeds, its storage, and the bench records and reports it produces."""

from __future__ import annotations

import json

import numpy as np
import pytest

from audiossl.eval.confidence import Items, SeedItems, bootstrap, confidence_intervals, load_items, percentile_ci


def _acc(correct) -> Items:
    c = np.asarray(correct, dtype=np.float64)
    return Items([f"u{i}" for i in range(len(c))], {"acc": (c, np.ones_like(c))})


def test_one_seed_or_identical_seeds_is_the_items_bootstrap():
    rng = np.random.default_rng(0)
    it = _acc(rng.random(120) < 0.7)
    ref = bootstrap(it, "acc", 300, 5)
    assert np.array_equal(bootstrap(SeedItems([it]), "acc", 300, 5), ref)
    # three heads that agree on every item: resampling seeds adds nothing
    assert np.allclose(bootstrap(SeedItems([it, it, it]), "acc", 300, 5), ref)


def test_seed_variance_widens_the_interval_and_value_is_the_seed_mean():
    rng = np.random.default_rng(1)
    runs = [_acc(rng.random(3000) < p) for p in (0.6, 0.7, 0.8)]  # heads far apart, many items
    si = SeedItems(runs)
    assert si.value("acc") == pytest.approx(np.mean([r.value("acc") for r in runs]))
    lo, hi = confidence_intervals(si, ["acc"], n=1000)["acc"]
    lo1, hi1 = confidence_intervals(runs[1], ["acc"], n=1000)["acc"]
    assert hi1 - lo1 < 4.0  # items alone: about +-1.6 points
    assert hi - lo > 10.0 and lo < 66.0 and hi > 74.0  # seeds: the mean of 3 draws of {60, 70, 80}


def _crossed(rng, n_items: int, n_seeds: int, sd_seed: float) -> list[Items]:
    """Correct / wrong per (item, seed) with item difficulty shared by all heads and a per-head shift."""
    item = rng.normal(0.85, 1.0, n_items)  # logits: mean accuracy about 0.68
    out = []
    for _ in range(n_seeds):
        p = 1 / (1 + np.exp(-(item + rng.normal(0.0, sd_seed))))
        out.append(_acc(rng.random(n_items) < p))
    return out


def test_two_way_interval_covers_the_mean_over_seeds_and_items():
    """Coverage of the expected accuracy over heads and items (simulated with 400k draws): the
    items-only interval of the seed mean misses it often when heads differ; items × seeds does not."""
    rng = np.random.default_rng(2)
    truth_item = rng.normal(0.85, 1.0, 400_000)
    truth = 100 * float(np.mean(1 / (1 + np.exp(-(truth_item + rng.normal(0.0, 0.5, truth_item.size))))))
    hits_two_way = hits_items = 0
    sims = 120
    for _ in range(sims):
        runs = _crossed(rng, 300, 5, 0.5)
        pooled = Items(runs[0].ids, {"acc": (np.mean([r.ratio["acc"][0] for r in runs], 0), runs[0].ratio["acc"][1])})
        lo, hi = percentile_ci(bootstrap(SeedItems(runs), "acc", 300, int(rng.integers(1 << 30))))
        hits_two_way += lo <= truth <= hi
        lo, hi = percentile_ci(bootstrap(pooled, "acc", 300, int(rng.integers(1 << 30))))
        hits_items += lo <= truth <= hi
    assert hits_two_way / sims >= 0.85
    assert hits_items / sims <= hits_two_way / sims - 0.1


def test_save_and_load(tmp_path):
    rng = np.random.default_rng(3)
    ml = [Items(["a", "b", "c", "d"], multilabel=(np.array([[1, 0], [0, 1], [1, 1], [0, 0]]),
                                                   rng.random((4, 2)).astype(np.float32))) for _ in range(2)]
    SeedItems(ml).save(tmp_path / "s.npz")
    back = load_items(tmp_path / "s.npz")
    assert isinstance(back, SeedItems) and len(back.runs) == 2 and back.ids == ["a", "b", "c", "d"]
    assert [r.value("auc") for r in back.runs] == [r.value("auc") for r in ml]
    ml[0].save(tmp_path / "one.npz")
    assert isinstance(load_items(tmp_path / "one.npz"), Items)
    with pytest.raises(ValueError, match="same test items"):
        SeedItems([ml[0], ml[1].take(np.array([1, 0, 2, 3]))])


# -- the bench with N head seeds, on the synthesized genre set --------------------------------------

@pytest.fixture(scope="module")
def genre_demo(tmp_path_factory):
    from audiossl.data.synth import synthesize

    out = tmp_path_factory.mktemp("genre_demo")
    synthesize(out, "tiny", 0, 1, ["music_genre"], progress=False)
    return out


def _bench(data, out, **kw):
    from audiossl.eval.harness import BenchConfig, run_bench

    cfg = BenchConfig(epochs=4, add_fbank=False, bootstrap=200, **kw)
    (rec,) = run_bench(["fbank"], ["genre"], data, out, cfg)
    return rec


def test_bench_head_seeds(genre_demo, tmp_path):
    """N = 3: the value is the mean of three heads, each the head a 1-seed bench with that --seed trains;
    the items keep one set per seed; reports say how seeds enter the interval; a resume with another N
    is refused."""
    from audiossl.eval.tasks import BenchError

    rec = _bench(genre_demo, tmp_path / "n3", head_seeds=3)
    assert rec["head_seeds"] == 3 and [s["seed"] for s in rec["seeds"]] == [0, 1, 2]
    per_seed = [s["test"]["acc"] for s in rec["seeds"]]
    assert rec["value"] == pytest.approx(np.mean(per_seed))
    items = load_items(tmp_path / "n3" / rec["items"])
    assert isinstance(items, SeedItems) and [r.value("acc") for r in items.runs] == pytest.approx(per_seed)
    lo, hi = rec["ci"]["acc"]
    assert lo <= rec["value"] <= hi
    # each head is the one a 1-seed bench with that --seed trains (the seeds really differ per head)
    one = _bench(genre_demo, tmp_path / "s1", seed=1)
    assert one["value"] == pytest.approx(per_seed[1]) and "head_seeds" not in one and "seeds" not in one
    assert isinstance(load_items(tmp_path / "s1" / one["items"]), Items)
    assert "Head-training seeds are not resampled." in (tmp_path / "s1" / "results.md").read_text()
    md = (tmp_path / "n3" / "results.md").read_text()
    assert "N = 3 head seeds" in md and "not resampled" not in md
    assert "head seeds" in json.loads((tmp_path / "n3" / "results.json").read_text())["ci_method"]
    with pytest.raises(BenchError, match=r"run with --head-seeds 3, not 1"):
        _bench(genre_demo, tmp_path / "n3")


def test_cli_head_seeds_option(genre_demo, tmp_path, capsys):
    from audiossl.cli.main import main

    rc = main(["bench", "fbank", "--tasks", "genre", "--data", str(genre_demo), "--out", str(tmp_path), "--head-seeds", "0"])
    assert rc == 2 and "--head-seeds 0: need at least 1 head" in capsys.readouterr().out
