"""The pinned loss traces hold on any x86-64 CPU: every ``golden`` test rerun under each kernel choice.

ATen picks its vector kernels from the CPU (``ATEN_CPU_CAPABILITY``), and so do MKL
(``MKL_ENABLE_INSTRUCTIONS``) and oneDNN (``ONEDNN_MAX_CPU_ISA``). An AVX-512 machine can run all
three choices below, an AVX2 machine the first two; with 1 and 2 threads each, that covers the
kernels CI meets. The plain run of the suite is "the machine's own choice, 1 thread".
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.golden import THREADS_ENV

ROOT = Path(__file__).resolve().parents[1]
GOLDEN_FILES = ["tests/test_pretrain_hubert.py", "tests/test_pretrain_beats.py", "tests/test_pretrain_mert.py",
                "tests/test_tokenizer_beats.py", "tests/test_pretrain_wavlm.py", "tests/test_pretrain_data2vec2.py"]
KERNELS = {
    "machine": {},
    "default": {"ATEN_CPU_CAPABILITY": "default"},
    "avx2": {"ATEN_CPU_CAPABILITY": "avx2", "MKL_ENABLE_INSTRUCTIONS": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2"},
}
KNOBS = ("ATEN_CPU_CAPABILITY", "MKL_ENABLE_INSTRUCTIONS", "ONEDNN_MAX_CPU_ISA", THREADS_ENV)


def test_every_golden_test_is_in_the_matrix():
    marked = subprocess.run([sys.executable, "-m", "pytest", "-q", "--collect-only", "-m", "golden", "-p", "no:cacheprovider"],
                            cwd=ROOT, capture_output=True, text=True)
    files = {line.split("::")[0] for line in marked.stdout.splitlines() if "::" in line}
    assert files and files <= set(GOLDEN_FILES), marked.stdout


# ("machine", 1) is the suite's own run of the golden tests.
SETTINGS = [(k, t) for k in KERNELS for t in (1, 2) if (k, t) != ("machine", 1)]


@pytest.mark.slow
@pytest.mark.parametrize("kernels, threads", SETTINGS)
def test_golden_traces_hold_under(kernels, threads, tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in KNOBS} | KERNELS[kernels] | {THREADS_ENV: str(threads)}
    # A private --basetemp: the child's pytest must not prune the numbered temp dirs of this session.
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-m", "golden", "-p", "no:cacheprovider",
                        f"--basetemp={tmp_path / 'pytest'}", *GOLDEN_FILES],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, f"golden traces moved under {KERNELS[kernels]} with {threads} threads:\n{r.stdout[-4000:]}"
    assert f"{len(GOLDEN_FILES)} passed" in r.stdout, r.stdout[-2000:]
