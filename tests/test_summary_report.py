"""`audiossl report`: the one-page experiment report on a hand-made experiment tree (built here)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from audiossl.cli.main import main as cli
from audiossl.eval.summary import write_summary
from audiossl.eval.summary.bench import BenchTable, Score, find_benches
from audiossl.eval.summary.claims import (MET, NO_CI, NOT_MET, NOT_RUN, NOT_SIG, Claim, Comparison, Row, compare,
                                          demo_claims, evaluate)
from audiossl.eval.summary.runs import PretrainRun, find_runs, latest_windows, pipeline_totals
from audiossl.eval.summary.stages import find_stage_times
from audiossl.models.families import get_family

CROP = 32000


def _jsonl(path: Path, lines: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))


def _run(root: Path, rel: str, family: str, train: list[dict], valid: list[dict], flops: float | None = None) -> Path:
    """A run directory; ``flops``: the FLOPs per audio-second the trainer recorded (None: the report computes them)."""
    fam = get_family(family)
    d = root / rel
    d.mkdir(parents=True)
    cfg = {"model": fam.CONFIGS["tiny"]().to_dict(), "label_path": None, "flops_per_audio_second": flops,
           "run": {"model": {"family": family, "size": "tiny"}, "data": {"max_sample_size": CROP}}}
    (d / "run_config.json").write_text(json.dumps(cfg))
    _jsonl(d / "metrics" / "train.jsonl", train)
    _jsonl(d / "metrics" / "valid.jsonl", valid)
    return d


def _line(step, t, wall, loss, acc=None, audio=None, **kw):
    x = {"Time": f"2026-01-01T10:{t:02d}:00+00:00", "Step": step, "Loss": loss, "Wall Time": wall, **kw}
    if acc is not None:
        x["Masked Accuracy"] = acc
    if audio is not None:
        x["Audio Seconds"] = audio
    return x


def _rec(up, task, metric, value, ci, lw=(0.5, 0.5)):
    return {"upstream": up, "task": task, "metric": metric, "value": value, "ci": {metric: list(ci)} if ci else {},
            "layer_weights": list(lw), "test": {metric: value}, "lr": 1e-3, "dev": value, "layer": None, "epochs": 1,
            "skipped_files": 0, "curve": [{"epoch": 1, "dev": value}]}


def _results(path: Path, records: list[dict], overall_ci: dict, significance=()) -> None:
    from audiossl.eval.report import overall_score

    path.mkdir(parents=True, exist_ok=True)
    tasks = list(dict.fromkeys(r["task"] for r in records))
    ups = list(dict.fromkeys(r["upstream"] for r in records))
    overall = {u: overall_score([r for r in records if r["upstream"] == u], tasks) for u in ups}
    (path / "results.json").write_text(json.dumps({"records": records, "tasks": tasks, "overall": overall,
                                                   "overall_ci": overall_ci, "significance": list(significance)}))


@pytest.fixture
def demo_tree(tmp_path):
    root = tmp_path / "demo"
    # it1: two windows of 100 s audio, resumed once (the window at step 20 recomputed) → 200 s
    _run(root, "hubert/it1/exp", "hubert",
         [_line(10, 1, 5.0, 5.0, 0.1, 100.0), _line(20, 2, 10.0, 4.0, 0.2, 100.0),
          _line(20, 4, 6.0, 3.9, 0.21, 100.0)],
         [_line(20, 3, 12.0, 4.5, 0.15)])
    _run(root, "hubert/it2/exp", "hubert", [_line(10, 10, 4.0, 4.8, 0.12, 50.0)], [_line(10, 11, 5.0, 4.6, 0.1)])
    _run(root, "mert/mert/exp", "mert", [_line(5, 20, 3.0, 9.0, 0.3, 10.0)], [], flops=2e9)
    (root / "hubert").joinpath("quality.json").write_text(json.dumps({"rows": [
        {"name": "MFCC k-means", "iteration": "it1", "reference": "phones", "frame_rate": 100.0, "pnmi": 0.5},
        {"name": "MFCC k-means at the model's rate", "iteration": "it1", "reference": "phones", "frame_rate": 50.0, "pnmi": 0.52},
        {"name": "HuBERT-it1 k-means", "iteration": "it2", "reference": "phones", "frame_rate": 50.0, "pnmi": 0.6}]}))
    (root / "stage_times.tsv").write_text("recipe\tstage\tdescription\tstart\tend\tseconds\n"
                                          "egs/demo/run.sh\t1\tHuBERT\t100\t160\t60\negs/demo/run.sh\t1\tHuBERT\t200\t230\t30\n")
    (root / "hubert" / "stage_times.tsv").write_text("recipe\tstage\tdescription\tstart\tend\tseconds\n"
                                                     "egs/demo/hubert/run.sh\t3\tit1\t205\t215\t10\n"
                                                     "egs/demo/hubert/run.sh\t0\tsynth\t200\t205\t5\n")
    h1, h2 = "demo_out/hubert/it1/exp/checkpoint", "/elsewhere/demo_out/hubert/it2/exp/checkpoint"
    # ks accuracy: it1 well above fbank, it2 overlapping it1; pr (PER, lower is better): it1 worse than fbank
    _results(root / "bench" / "hubert", [
        _rec(h1, "ks", "acc", 80.0, (75.0, 85.0)), _rec(h1, "pr", "per", 60.0, (55.0, 65.0)),
        _rec(h2, "ks", "acc", 82.0, (77.0, 87.0), (0.2, 0.8)), _rec(h2, "pr", "per", 58.0, (53.0, 63.0)),
        _rec("fbank", "ks", "acc", 50.0, (45.0, 55.0), (1.0,)), _rec("fbank", "pr", "per", 40.0, (35.0, 45.0), (1.0,))],
        {h1: [55.0, 65.0], h2: [57.0, 68.0], "fbank": [50.0, 60.0]},
        [{"upstream": h1, "task": "ks", "metric": "acc", "baseline": "fbank", "diff": 30.0, "diff_ci": [25.0, 35.0],
          "p": 0.0, "significant": True, "better": True, "n_items": 10},
         {"upstream": h1, "task": "overall", "metric": "score", "baseline": "fbank", "diff": 5.0, "diff_ci": [1.0, 9.0],
          "p": 0.01, "significant": True, "better": True, "n_items": 10},
         {"upstream": h2, "task": "ks", "metric": "acc", "baseline": "fbank", "diff": 32.0, "diff_ci": [-1.0, 40.0],
          "p": 0.1, "significant": False, "better": True, "n_items": 10}])
    return root


def test_runs_compute_from_logs(demo_tree):
    runs = {r.name: r for r in find_runs(demo_tree)}
    assert set(runs) == {"hubert/it1", "hubert/it2", "mert/mert"}
    it1 = runs["hubert/it1"]
    assert it1.family == "hubert" and it1.iteration == "it1" and it1.pipeline == "hubert" and it1.steps == 20
    assert it1.audio_seconds == pytest.approx(200.0) and it1.audio_exact  # the recomputed window counted once
    fam = get_family("hubert")
    fps = fam.train_flops_per_second(fam.config_from_dict(fam.CONFIGS["tiny"]().to_dict()), CROP)
    assert it1.train_flops == pytest.approx(fps * 200.0)
    assert it1.wall_seconds == pytest.approx(12.0 + 6.0)  # two sessions (the wall clock restarted)
    assert it1.curve("train", "Loss") == ([10, 20, 20], [5.0, 4.0, 3.9])
    assert it1.curve("valid", "Masked Accuracy") == ([20], [0.15])
    flops, wall = pipeline_totals(runs["hubert/it2"], list(runs.values()))
    assert flops == pytest.approx(it1.train_flops + runs["hubert/it2"].train_flops) and wall == pytest.approx(18.0 + 5.0)
    assert pipeline_totals(it1, list(runs.values()))[0] == pytest.approx(it1.train_flops)  # it2 came later
    assert runs["mert/mert"].train_flops == pytest.approx(2e9 * 10.0)  # as the trainer recorded it


def test_audio_seconds_fallback_and_resume_dedupe():
    lines = [{"Step": 10}, {"Step": 20}, {"Step": 30}, {"Step": 20}, {"Step": 30}]
    assert [x["Step"] for x in latest_windows(lines)] == [10, 20, 30]
    from audiossl.eval.summary.runs import audio_seconds_seen

    total, exact = audio_seconds_seen([{"Step": 1, "Audio s/s/device": 4.0, "Lapse Time": 2.5}])
    assert total == pytest.approx(10.0) and not exact
    assert audio_seconds_seen([{"Step": 1, "Loss": 1.0}]) == (None, False)


def test_bench_rows_named_by_run_whatever_the_path_prefix(demo_tree):
    (t,) = find_benches(demo_tree, find_runs(demo_tree))
    assert t.name == "bench/hubert" and t.rows == ["hubert/it1", "hubert/it2", "fbank"]
    assert t.task_score("hubert/it1", "pr") == Score(40.0, 35.0, 45.0)  # PER 60 [55, 65] as 100 − x
    assert t.overall("hubert/it2").lo == 57.0 and t.runs["hubert/it2"].iteration == "it2"


def test_stage_times_last_run_per_stage_outer_stage_first(demo_tree):
    got = [(s.recipe, s.stage, s.seconds) for s in find_stage_times(demo_tree)]
    assert got == [("egs/demo/run.sh", 1, 30), ("egs/demo/hubert/run.sh", 0, 5), ("egs/demo/hubert/run.sh", 3, 10)]


def test_report_renders_every_section(demo_tree, capsys):
    assert cli(["report", str(demo_tree)]) == 0
    report = demo_tree / "report.md"
    assert str(report) in capsys.readouterr().out
    md = report.read_text()
    for head in ("## Stage times", "## Pretraining", "## Label quality", "## Bench results", "## Learning per unit",
                 "## Claims"):
        assert head in md
    assert "_not run_" not in md.split("## Claims")[0]
    # the redone top-level stage counts once (its last run), the nested recipe's stage is listed too
    assert "| egs/demo/run.sh | 1 | HuBERT |" in md and md.count("| egs/demo/run.sh | 1 |") == 1 and "egs/demo/hubert/run.sh" in md
    assert "| hubert/it1 | hubert | 20 | 3.900 | 4.500 | 0.210 | 0.150 |" in md
    assert "| MFCC k-means at the model's rate | it1 | phones | 50 Hz | 0.520 |" in md
    assert "hubert/it1 better than fbank on ks" in md and "2 of 3 differences significant" in md
    line = next(l for l in md.splitlines() if l.startswith("| bench/hubert | hubert/it1 |"))
    assert "| hubert | 60.00 [55.00, 65.00] |" in line and "| +5.00 ▲ (" in line  # overall (80 + 40) / 2 vs fbank's 55
    assert "### (a)" in md and "| hubert/it2 ≥ hubert/it1 | ks | ACC 82.00 [77.00, 87.00] | ACC 80.00 [75.00, 85.00] |" in md
    # PER as the table shows it; decided on 100 − PER: it1's [35, 45] lies below fbank's [55, 65]
    assert "| hubert/it1 > fbank | pr | PER 60.00 [55.00, 65.00] ↓ | PER 40.00 [35.00, 45.00] ↓ | bench/hubert | not met |" in md
    assert "(a) HuBERT it2 ≥ it1 > FBANK on the speech tasks (PR, KS, ER, ASV, SID, ASR): **not met**" in md
    figs = demo_tree / "report_figures"
    for name in ("curves.png", "pnmi.png", "compute.png", "bench_hubert/results_bars.png",
                 "bench_hubert/layer_weights_demo_out_hubert_it1_exp_checkpoint.png"):
        assert (figs / name).stat().st_size > 1000, name
        assert f"(report_figures/{name})" in md
    assert "(b) BEATs it2 > it1 (overall), and BEATs > FBANK on instrument and the audio tasks: **not run**" in md


def test_missing_stages_render_as_not_run(tmp_path):
    root = tmp_path / "empty"
    root.mkdir()
    md = write_summary(root, tmp_path / "elsewhere" / "r.md").read_text()
    assert md.count("_not run_") == 5 and md.count("**not run**") == 3
    assert cli(["report", str(tmp_path / "missing")]) == 1
    # only pretraining ran: curves render, bench and compute say not run
    _run(root, "hubert/it1/exp", "hubert", [_line(10, 1, 5.0, 5.0, 0.1, 100.0)], [])
    md = write_summary(root).read_text()
    assert "| hubert/it1 | hubert | 10 |" in md and md.count("_not run_") == 4
    assert find_stage_times(root) == []


# --- claims: decided by whether the 95 % intervals separate ---------------------------------------

def test_compare_by_interval_separation():
    hi, mid, lo = Score(80, 75, 85), Score(72, 70, 78), Score(50, 45, 55)
    assert compare(hi, lo, ">") == MET and compare(lo, hi, ">") == NOT_MET and compare(hi, mid, ">") == NOT_SIG
    assert compare(mid, hi, ">=") == MET and compare(lo, hi, ">=") == NOT_MET and compare(hi, lo, ">=") == MET
    assert compare(Score(80, None, None), lo, ">") == NO_CI


def _table(rows: dict[str, tuple[str, str]], scores: dict[tuple[str, str], tuple[float, float, float]]) -> BenchTable:
    """rows: label → (family, iteration); scores: (label, task) → (value, lo, hi) of an accuracy."""
    runs = {lab: PretrainRun(Path(lab), f"{fam}/{it}", fam) for lab, (fam, it) in rows.items()}
    ups = list(rows) + ["fbank"]
    records = [_rec(u, t, "acc", v, (lo, hi)) for (u, t), (v, lo, hi) in scores.items()]
    tasks = list(dict.fromkeys(t for _, t in scores))
    from audiossl.eval.report import overall_score

    overall = {u: overall_score([r for r in records if r["upstream"] == u], tasks) for u in ups}
    data = {"records": records, "tasks": tasks, "overall": overall,
            "overall_ci": {u: [overall[u] - 1, overall[u] + 1] for u in ups if overall[u] is not None}}
    return BenchTable("bench/x", Path("."), data, {u: u for u in ups}, runs)


def test_claims_met_not_met_not_significant_and_not_run():
    rows = {"h1": ("hubert", "it1"), "h2": ("hubert", "it2")}
    met = _table(rows, {("h1", "ks"): (80, 75, 85), ("h2", "ks"): (81, 76, 86), ("fbank", "ks"): (50, 45, 55)})
    (a, b, c) = evaluate(demo_claims(), [met])
    assert a.outcome == MET and [ch.outcome for ch in a.checks if ch.task == "ks"] == [MET, MET]
    assert {ch.task for ch in a.checks if ch.outcome == NOT_RUN} == {"pr", "er", "asv", "sid", "asr"}
    assert b.outcome == NOT_RUN and c.outcome == NOT_RUN
    worse = _table(rows, {("h1", "ks"): (80, 75, 85), ("h2", "ks"): (60, 55, 65), ("fbank", "ks"): (50, 45, 55)})
    assert evaluate(demo_claims(), [worse])[0].outcome == NOT_MET  # it2's interval lies below it1's
    close = _table(rows, {("h1", "ks"): (52, 47, 57), ("h2", "ks"): (53, 48, 58), ("fbank", "ks"): (50, 45, 55)})
    assert evaluate(demo_claims(), [close])[0].outcome == NOT_SIG


def test_claim_latest_iteration_and_tasks_of_a_row():
    rows = {"b1": ("beats", "it1"), "b2": ("beats", "it2")}
    t = _table(rows, {("b1", "ks"): (60, 58, 62), ("b2", "ks"): (90, 88, 92), ("fbank", "ks"): (50, 45, 55),
                      ("b1", "instrument"): (60, 58, 62), ("b2", "instrument"): (70, 65, 75),
                      ("fbank", "instrument"): (72, 70, 74)})
    (b,) = evaluate([c for c in demo_claims() if c.key == "b"], [t])
    got = {(ch.rows, ch.task): ch.outcome for ch in b.checks}
    assert got[("b2", "b1"), "overall"] == MET  # 80 [79, 81] vs 60 [59, 61]
    assert got[("b2", "fbank"), "ks"] == MET and got[("b2", "fbank"), "instrument"] == NOT_SIG
    assert b.outcome == NOT_SIG
    # BEATs' PR/ASR columns (CTC on tiled frames) are in its table but not among (b)'s audio tasks
    t = _table(rows, {("b1", "ks"): (60, 58, 62), ("b2", "ks"): (90, 88, 92), ("fbank", "ks"): (50, 45, 55),
                      ("b1", "asr"): (10, 8, 12), ("b2", "asr"): (10, 8, 12), ("fbank", "asr"): (50, 45, 55)})
    (b,) = evaluate([c for c in demo_claims() if c.key == "b"], [t])
    assert {ch.task for ch in b.checks if ch.rows == ("b2", "fbank")} == {"ks"}
    lone = Claim("x", "mert > hubert", [Comparison(Row("mert"), ">", Row("hubert"), ("ks",))])
    assert evaluate([lone], [t])[0].outcome == NOT_RUN
