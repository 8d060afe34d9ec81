"""The demo recipe end to end on the tiny corpus: every stage runs, writes its outputs and its
.done marker, and a rerun of a finished recipe does nothing (the stages are idempotent)."""

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
           "--bench_epochs", "1", "--tasks", "ks,pr", "--beats_tasks", "ks", "--mert_tasks", "instrument", *extra]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)


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
    for ckpt in (beats / "it1/exp/checkpoint", beats / "it2/exp/checkpoint", beats / "tok1/checkpoint", mert / "rvq/checkpoint", mert / "mert/exp/checkpoint"):
        assert (ckpt / "model.safetensors").is_file() and (ckpt / "config.json").is_file(), ckpt
    assert "random projection" in (beats / "quality.txt").read_text()
    for name in ("hubert", "beats", "mert"):
        table = (out / "bench" / name / "results.md").read_text()
        assert "fbank" in table and table.count("checkpoint") >= 2 and "overall" in table.lower(), name

    # A finished recipe reruns as a no-op: every top-level stage reports "already done" and no
    # output is rewritten.
    watched = [hub / "it1/exp/checkpoint/model.safetensors", hub / "it2/data/train.km", out / "bench/hubert/results.json",
               beats / "data/train.bt", mert / "data/train.rvq", out / "bench/mert/results.json"]
    before = [p.stat().st_mtime_ns for p in watched]
    again = _run(out)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stderr.count("already done") == 6
    assert [p.stat().st_mtime_ns for p in watched] == before
