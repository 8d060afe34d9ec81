"""egs/demo/wavlm/run.sh: --help and the required options (the run itself, every stage and a no-op rerun,
is part of tests/test_recipe_demo.py: egs/demo/run.sh stage 4)."""

import os
import subprocess
import sys
from pathlib import Path


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
