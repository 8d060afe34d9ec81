"""egs/demo/wavlm/run.sh (not yet wired into egs/demo/run.sh): WavLM-tiny on the tiny demo corpus from the
HuBERT demo's iteration-1 labels, every stage, and a no-op rerun."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ENV = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")


def _bash(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", *args], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=900)


def test_help_and_required_options(tmp_path):
    r = _bash("egs/demo/wavlm/run.sh", "--help")
    assert r.returncode == 0 and "stage 3" in r.stdout and ".done.stage" in r.stdout
    r = _bash("egs/demo/wavlm/run.sh", "--exp", str(tmp_path / "e"), "--corpus", str(tmp_path))
    assert r.returncode != 0 and "--corpus DIR and --labels DIR are required" in r.stderr
    r = _bash("egs/demo/wavlm/run.sh", "--exp", str(tmp_path / "e"), "--corpus", str(tmp_path), "--labels", str(tmp_path))
    assert r.returncode != 0 and f"{tmp_path}/speech/train.tsv not found" in r.stderr


@pytest.mark.slow
def test_demo_wavlm_tiny_from_hubert_labels(tmp_path):
    hub = tmp_path / "hubert"
    r = _bash("egs/demo/hubert/run.sh", "--exp", str(hub), "--size", "tiny", "--stop_stage", "2", "--k1", "8", "--nj", "1")
    assert r.returncode == 0, r.stderr[-3000:]
    exp = tmp_path / "wavlm"
    args = ["egs/demo/wavlm/run.sh", "--exp", str(exp), "--corpus", str(hub / "corpus"), "--labels", str(hub / "it1/data"),
            "--steps", "4", "--k", "6", "log_every=2", "checkpoint_every=4", "validate_every=null"]
    r = _bash(*args)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-5000:]
    assert {p.name for p in exp.glob(".done.stage*")} == {f".done.stage{n}" for n in range(4)}
    meta = json.loads((exp / "exp/checkpoint/config.json").read_text())
    assert meta["family"] == "wavlm" and meta["config"]["num_classes"] == 8 and meta["extra"]["step"] == 4
    quality = json.loads((exp / "quality.json").read_text())
    assert 0.0 <= quality["pnmi"] <= 1.0
    before = (exp / "exp/checkpoint/model.safetensors").stat().st_mtime_ns
    again = _bash(*args)
    assert again.returncode == 0 and again.stderr.count("already done") == 4
    assert (exp / "exp/checkpoint/model.safetensors").stat().st_mtime_ns == before
