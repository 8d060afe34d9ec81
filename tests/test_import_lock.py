"""audiossl/utils/imports.py: two threads importing torchaudio for the first time at once (the audio
decode thread of upstream.engine.prefetched resampling, the main thread building the BEATs fbank) fail
with plain imports and succeed through audiossl's import lock; no lazy torchaudio import bypasses it."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

_RACE = r"""
import importlib, sys, threading
import torch
if sys.argv[1] == "lock":
    from audiossl.utils.imports import import_module
else:
    import_module = importlib.import_module
barrier, errors = threading.Barrier(2), []
def first_import(name):
    barrier.wait()
    try:
        import_module(name)
    except Exception as e:
        errors.append(type(e).__name__)
threads = [threading.Thread(target=first_import, args=(n,)) for n in ("torchaudio.transforms", "torchaudio.compliance.kaldi")]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(",".join(errors) or "ok")
"""


def _race(mode: str) -> str:
    r = subprocess.run([sys.executable, "-c", _RACE, mode], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout.strip().splitlines()[-1]


@pytest.mark.slow
def test_plain_concurrent_first_imports_of_torchaudio_fail():
    # the control: if torchaudio ever imports thread-safely, the lock is no longer needed
    assert any(_race("plain") != "ok" for _ in range(3))


def test_concurrent_first_imports_through_the_lock_succeed():
    assert [_race("lock") for _ in range(2)] == ["ok", "ok"]


def test_no_function_level_torchaudio_import_bypasses_the_lock():
    offenders = []
    for path in sorted((ROOT / "audiossl").rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for fn in (n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))):
            for node in ast.walk(fn):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""] if isinstance(node, ast.ImportFrom) else []
                if any(n == "torchaudio" or n.startswith("torchaudio.") for n in names):
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not offenders, f"use audiossl.utils.imports.import_module for lazy torchaudio imports: {offenders}"
