"""``tools/bench/gpu_suite.sh --dry-run`` runs every step on CPU at tiny sizes through the same code
paths and writes ``gpu_suite.json`` with every step's status and result (about a minute)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_gpu_suite_dry_run_writes_every_key(tmp_path):
    env = dict(os.environ, PYTHON=sys.executable, PYTHONPATH=str(ROOT))
    proc = subprocess.run(["bash", str(ROOT / "tools/bench/gpu_suite.sh"), "--dry-run", "--out", str(tmp_path)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    suite = json.loads((tmp_path / "gpu_suite.json").read_text())
    assert suite["dry_run"] is True
    steps = suite["steps"]
    assert set(steps) == {"gpu_tests", "hubert_base", "hubert_vs_ta", "beats_base", "mert_95m", "extract_bf16", "kmeans_stream"}
    for name, st in steps.items():
        assert st["rc"] == 0 and not st["timed_out"] and st["result"], (name, st)
    modes = steps["hubert_base"]["result"]["modes"]
    assert set(modes) == {"bucket", "crop_to_shortest"}
    for m in modes.values():
        assert {"s_per_step", "audio_s_per_s", "padding_eff", "mfu", "peak_mem_gib"} <= set(m)
    assert modes["crop_to_shortest"]["padding_eff"] == 1.0 and modes["bucket"]["padding_eff"] < 1.0
    assert steps["hubert_vs_ta"]["result"]["ratio"] > 0
    assert set(steps["beats_base"]["result"]["modes"]) == {"bucket"}
    assert set(steps["mert_95m"]["result"]["modes"]) == {"crop_to_shortest"}
    assert {"fit_frames_per_s", "label_frames_per_s"} <= set(steps["kmeans_stream"]["result"])
    assert (tmp_path / "gpu_suite.txt").is_file()
