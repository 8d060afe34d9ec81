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
