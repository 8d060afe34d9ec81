"""tools/bench/pretrain.py runs on CPU and prints both rows and the ratio."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_pretrain_bench_smoke():
    r = subprocess.run(
        [sys.executable, str(ROOT / "tools/bench/pretrain.py"), "--size", "tiny", "--batch", "2", "--seconds", "1",
         "--steps", "1", "--warmup", "0"],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    lines = r.stdout.splitlines()
    assert any(l.startswith("audiossl ") for l in lines) and any(l.startswith("torchaudio ") for l in lines)
    assert "ratio audiossl / torchaudio:" in r.stdout


def _trainer_bench(recipe: str, *overrides: str) -> tuple[str, float]:
    """``tools/bench/pretrain.py --trainer`` for one 1-step repeat: its stdout and the median audio-s/s."""
    r = subprocess.run(
        [sys.executable, str(ROOT / "tools/bench/pretrain.py"), "--trainer", "--recipe", str(ROOT / recipe),
         "--steps", "1", "--repeats", "1", *overrides],
        capture_output=True, text=True, timeout=600, cwd=ROOT,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    summary = [line for line in r.stdout.splitlines() if line.startswith("audio-s/s  min")]
    assert len(summary) == 1 and "of the GEMM peak" in summary[0]
    return r.stdout, float(summary[0].split()[2])


def test_trainer_mode_times_the_real_trainer_and_reports_the_gemm_fraction():
    stdout, rate = _trainer_bench("recipes/hubert/tiny.yaml", "data.max_tokens=96000")
    assert "data.max_tokens=96000" in stdout and "fp32 GEMM peak" in stdout
    assert rate > 0


def test_trainer_mode_runs_a_family_without_targets_on_its_own_corpus():
    """data2vec 2.0 has no labels: the synthetic corpus has none and the run reads none."""
    stdout, rate = _trainer_bench("recipes/data2vec2/tiny.yaml", "data.max_tokens=32000")
    assert "data2vec2-tiny" in stdout and rate > 0
