"""tools/bench/extract.py runs on CPU: equal outputs, a ratio, a roofline and the engine's time split."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_extract_bench_smoke(tmp_path):
    out = tmp_path / "bench.json"
    r = subprocess.run(
        [sys.executable, str(ROOT / "tools/bench/extract.py"), "--quick", "--repeats", "1", "--pipeline", "3",
         "--json", str(out)],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads(out.read_text())
    assert set(res["ratio_vs_transformers"]) == {"audiossl", "transformers", "torchaudio"}
    assert res["max_abs_diff_vs_transformers_all_layers"] <= 1e-4
    assert res["max_abs_diff_vs_torchaudio_last_layer"] <= 1e-4
    # the same forward FLOPs for all three, so achieved FLOP/s ranks like throughput
    frac = res["fraction_of_peak"]
    assert 0 < frac["audiossl"] and res["peak_gflop_per_s"] > 1 and res["ceiling_ratio_vs_transformers"] > 0
    pipe = res["pipeline"]
    assert pipe["files"] == 3 and pipe["audio_s"] > 6 and pipe["forward_s"] > 0
    assert "ceiling:" in r.stdout and "extract engine, 3 files:" in r.stdout
