"""The demo recipe end to end on the tiny corpus: every stage runs, writes its outputs and its
.done marker (the last one the one-page report), and a rerun of a finished recipe does nothing
(the stages are idempotent)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(out: Path, *extra: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    cmd = ["bash", str(ROOT / "egs/demo/run.sh"), "--out", str(out), "--size", "tiny", "--steps1", "4",
           "--steps2", "4", "--beats_steps", "4", "--tok_steps", "4", "--rvq_steps", "4", "--mert_steps", "4",
           "--wavlm_steps", "4", "--d2v2_steps", "4",
           "--bench_epochs", "1", "--tasks", "ks,pr,asr,ic,sd", "--beats_tasks", "ks,sd", "--mert_tasks", "ks,instrument,beat",
           *extra]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)


def _cells(table: str) -> dict[tuple[str, str], str]:
    """``(row name, column title) → cell`` of the first markdown table in ``table``."""
    rows = [[c.strip() for c in l.strip().strip("|").split("|")] for l in table.splitlines() if l.startswith("|")]
    head = rows[0]
    return {(r[0], h): c for r in rows[2:] for h, c in zip(head, r)}


@pytest.mark.slow
def test_demo_recipe_tiny_end_to_end_and_idempotent(tmp_path):
    out = tmp_path / "demo"
    r = _run(out)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-5000:]
    hub = out / "hubert"
    for n in range(8):
        assert (hub / f".done.stage{n}").is_file(), f"stage {n} did not finish"
    for it in ("it1", "it2"):
        ckpt = hub / it / "exp" / "checkpoint"
        assert (ckpt / "model.safetensors").is_file() and (ckpt / "config.json").is_file()
    quality = (hub / "quality.txt").read_text()
    assert "MFCC k-means" in quality and "HuBERT-it1 k-means" in quality
    beats, mert = out / "beats", out / "mert"
    for n in range(8):
        assert (beats / f".done.stage{n}").is_file(), f"BEATs stage {n} did not finish"
    for n in range(5):
        assert (mert / f".done.stage{n}").is_file(), f"MERT stage {n} did not finish"
    for name in ("wavlm", "data2vec2"):
        for n in range(4):
            assert (out / name / f".done.stage{n}").is_file(), f"{name} stage {n} did not finish"
        assert 0.0 <= json.loads((out / name / "quality.json").read_text())["pnmi"] <= 1.0
    assert json.loads((out / "data2vec2/exp/checkpoint/config.json").read_text())["family"] == "data2vec2"
    assert json.loads((out / "wavlm/exp/checkpoint/config.json").read_text())["family"] == "wavlm"
    for ckpt in (beats / "it1/exp/checkpoint", beats / "it2/exp/checkpoint", beats / "tok1/checkpoint", mert / "rvq/checkpoint", mert / "mert/exp/checkpoint"):
        assert (ckpt / "model.safetensors").is_file() and (ckpt / "config.json").is_file(), ckpt
    assert "random projection" in (beats / "quality.txt").read_text()
    for name in ("hubert", "beats", "mert"):
        table = (out / "bench" / name / "results.md").read_text()
        assert "fbank" in table and table.count("checkpoint") >= 2 and "overall" in table.lower(), name
    # the new columns, every cell with its 95 % interval, for the model rows and FBANK
    expect = {"hubert": ("asr (WER", "asr+LM (WER", "ic (ACC", "sd (DER"), "beats": ("sd (DER",), "mert": ("beat (BEAT_F", "ks (ACC")}
    for name, titles in expect.items():
        cells = _cells((out / "bench" / name / "results.md").read_text())
        rows = {r for r, _ in cells}
        n_rows = 5 if name == "hubert" else 3  # the speech table also has the WavLM and data2vec2 rows
        assert "fbank" in rows and len(rows) == n_rows, (name, rows)
        for t in titles:
            got = [(r, c) for (r, h), c in cells.items() if h.startswith(t)]
            assert len(got) == n_rows, (name, t, sorted({h for _, h in cells}))
            assert all(c[0].isdigit() and " [" in c and c.rstrip(" ▲▼").endswith("]") for _, c in got), (name, t, got)

    # stages 7 and 8 copy the pairs stage 6's rows finished first (--reuse; whether they are done by then
    # depends on the lanes' timing): a shared pair has the same settings and value in both tables either way
    for name, task in (("beats", "ks"), ("beats", "sd")):
        mine = json.loads((out / "bench" / name / "runs/fbank" / task / "result.json").read_text())
        src = json.loads((out / "bench/hubert/runs/fbank" / task / "result.json").read_text())
        assert mine["settings"] == src["settings"] and mine["value"] == src["value"], (name, task)
    assert all("/bench/hubert/runs/" in l for l in r.stderr.splitlines() if "reused from" in l)
    # MERT's row of stage 8 (a speech task included) is trained in lane B, data2vec2's row of stage 6 in lane A
    assert "[B] " in next(l for l in r.stderr.splitlines() if "in this lane: MERT's bench row" in l)
    assert "[A] " in next(l for l in r.stderr.splitlines() if "in this lane: bench rows" in l and "data2vec2" in l)
    assert (out / "bench/mert/runs/fbank/ks/result.json").is_file()

    # stage 9: the one-page report, its figures, every pretraining run and family, the claims
    report = (out / "report.md").read_text()
    runs = {"hubert/it1": "hubert", "hubert/it2": "hubert", "beats/it1": "beats", "beats/it2": "beats",
            "beats/tok1": "beats_tokenizer", "mert/rvq": "rvq", "mert/mert": "mert", "wavlm": "wavlm", "data2vec2": "data2vec2"}
    for run, family in runs.items():
        assert f"| {run} | {family} |" in report, run
    for run in ("hubert/it1", "hubert/it2", "beats/it2", "mert/mert", "wavlm", "data2vec2"):  # model rows: score vs FLOPs
        assert any(l.startswith("| bench/") and f"| {run} |" in l and "e+" in l for l in report.splitlines()), run
    figs = sorted(p.name for p in (out / "report_figures").glob("*.png"))
    for name in ("curves.png", "pnmi.png", "compute.png"):
        assert name in figs and f"(report_figures/{name})" in report, (name, figs)
    assert "50 Hz" in report and "nearest frame" in report  # MFCC labels also at the model's rate
    assert report.count("### (") == 3 and "**not run**" not in report.split("## Claims")[1]
    assert "| egs/demo/hubert/run.sh | 7 |" in report and "| egs/demo/run.sh | 8 |" in report
    assert "stage times (seconds):" in r.stderr and f"report: {out}/report.md" in r.stderr

    # A finished recipe reruns as a no-op: every top-level stage reports "already done" and no
    # output is rewritten.
    watched = [hub / "it1/exp/checkpoint/model.safetensors", hub / "it2/data/train.km", out / "bench/hubert/results.json",
               beats / "data/train.bt", mert / "data/train.rvq", out / "bench/mert/results.json"]
    before = [p.stat().st_mtime_ns for p in watched]
    again = _run(out)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stderr.count("already done") == 9
    assert [p.stat().st_mtime_ns for p in watched] == before
