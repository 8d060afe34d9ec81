"""Crash safety of the pretraining run (fault injection on HuBERT-tiny, CPU):

* kill -9 at a random step, resume → the same loss trace as an uninterrupted run;
* SIGTERM → checkpoint at the next step boundary, clean exit, resume → the same trace;
* NaN/inf loss → the step is skipped (weights and optimizer untouched) and counted; K in a row
  stop the run with a message.

The kill -9, SIGTERM and NaN paths also run for data2vec 2.0 (its EMA teacher is model state: the
resumed run must end with the same teacher weights, not only the same losses).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.test_pretrain_hubert import _losses, _train, corpus  # noqa: F401  (corpus is a fixture)

REPO = Path(__file__).resolve().parents[1]
# The resume tests run with LayerDrop: its draws must be restored too, not replayed from step 1.
LAYERDROP = {"model.encoder_layerdrop": 0.5}


def _assert_layers_drop(steps: int) -> None:
    """The test config really drops layers in these steps (one forward per step, seed 0)."""
    from audiossl.models.hubert.model import build_hubert, hubert_tiny
    from audiossl.models.transformer import layerdrop_keep, seed_layerdrop

    enc = build_hubert(hubert_tiny(encoder_layerdrop=LAYERDROP["model.encoder_layerdrop"])).encoder.encoder
    keep = []
    for step in range(2, steps + 1):
        seed_layerdrop(enc, 0, step)
        keep.append(tuple(layerdrop_keep(len(enc.layers), enc.layerdrop, enc.layerdrop_generator)))
    assert len(set(keep)) > 1 and not all(all(k) for k in keep), keep


# --- GuardedAdamW ------------------------------------------------------------------------------
def test_guarded_adamw_matches_adamw_and_skips_nonfinite_steps():
    from audiossl.pretrain.health import GuardedAdamW

    torch.manual_seed(0)
    p = torch.nn.Parameter(torch.randn(7))
    q = torch.nn.Parameter(p.detach().clone())
    guarded, plain = GuardedAdamW([p], lr=0.1, weight_decay=0.01), torch.optim.AdamW([q], lr=0.1, weight_decay=0.01)
    for _ in range(3):
        g = torch.randn(7)
        p.grad, q.grad = g.clone(), g.clone()
        guarded.step()
        plain.step()
    torch.testing.assert_close(p.detach(), q.detach(), rtol=0, atol=1e-7)
    before = {k: v.clone() for k, v in guarded.state[p].items()}
    weights = p.detach().clone()
    for bad in (float("nan"), float("inf")):
        p.grad = torch.ones(7)
        p.grad[3] = bad
        guarded.step()
    assert torch.equal(p.detach(), weights)
    for k, v in guarded.state[p].items():
        assert torch.equal(v, before[k]), k
    assert guarded.pop_longest_run() == (2, 2)
    p.grad = torch.ones(7)
    guarded.step()
    assert not torch.equal(p.detach(), weights)
    assert guarded.pop_longest_run() == (2, 2)  # the run still open at the last call touched this window
    assert guarded.pop_longest_run() == (2, 0)


# --- NaN steps in a real run ---------------------------------------------------------------------
@pytest.fixture
def poisoned_steps(monkeypatch):
    """Make the loss NaN on the given training forward calls (1-based); returns the set to fill."""
    from audiossl.models.hubert.model import HubertPretrainModel

    bad: set[int] = set()
    calls = [0]
    orig = HubertPretrainModel.forward

    def forward(self, *a, **k):
        out = orig(self, *a, **k)
        if self.training:
            calls[0] += 1
            if calls[0] in bad or "all" in bad:
                out.loss = out.loss * float("nan")
        return out

    monkeypatch.setattr(HubertPretrainModel, "forward", forward)
    return bad


def test_nan_steps_are_skipped_and_counted(corpus, tmp_path, poisoned_steps):  # noqa: F811
    from safetensors.torch import load_file

    poisoned_steps.update({2, 3})
    result = _train(corpus, tmp_path)
    assert result.step_nr == 4 and result.checkpoint_dir is not None
    assert result.last_metrics["skipped_steps"] == 2
    losses = _losses(tmp_path)
    assert np.isfinite(losses[1]) and np.isfinite(losses[4])
    for name, t in load_file(str(result.checkpoint_dir / "model.safetensors")).items():
        assert torch.isfinite(t).all(), name


def test_consecutive_nan_steps_stop_the_run_with_a_message(corpus, tmp_path, poisoned_steps):  # noqa: F811
    from audiossl.pretrain.health import TrainingDiverged

    poisoned_steps.add("all")
    with pytest.raises(TrainingDiverged, match=r"3 consecutive steps had NaN/inf.*lower optim.lr"):
        _train(corpus, tmp_path, max_steps=6, max_consecutive_nonfinite=3, checkpoint_every=1)


# --- SIGTERM ---------------------------------------------------------------------------------------
def test_sigterm_checkpoints_at_the_step_boundary_and_resumes_identically(corpus, tmp_path, monkeypatch):  # noqa: F811
    from audiossl.pretrain.unit import PretrainTrainUnit

    _assert_layers_drop(4)
    reference = tmp_path / "reference"
    _train(corpus, reference, **LAYERDROP)
    orig = PretrainTrainUnit.set_step_nr

    def set_step_nr(self, step_nr):
        if step_nr == 3:
            os.kill(os.getpid(), signal.SIGTERM)  # arrives mid-step, like Slurm's
        orig(self, step_nr)

    monkeypatch.setattr(PretrainTrainUnit, "set_step_nr", set_step_nr)
    run = tmp_path / "run"
    handler_before = signal.getsignal(signal.SIGTERM)
    first = _train(corpus, run, **LAYERDROP)  # checkpoint_every=2: step 3 is saved only because of the signal
    assert first.stopped_by == "SIGTERM" and first.step_nr == 3 and first.checkpoint_dir is None
    assert (run / "checkpoints" / "step_3").is_dir()
    assert signal.getsignal(signal.SIGTERM) is handler_before  # the run's handler is uninstalled
    monkeypatch.setattr(PretrainTrainUnit, "set_step_nr", orig)
    second = _train(corpus, run, **LAYERDROP)
    assert second.stopped_by is None and second.step_nr == 4 and second.checkpoint_dir is not None
    want, got = _losses(reference), _losses(run)
    assert sorted(got) == [1, 2, 3, 4]
    for step in want:
        assert got[step] == pytest.approx(want[step], rel=1e-6), step


# --- kill -9 -----------------------------------------------------------------------------------------
def _cli_args(corpus: Path, out: Path, steps: int) -> list[str]:  # noqa: F811
    # the same config as tests.test_pretrain_hubert._cfg, with a checkpoint after every step
    return [
        sys.executable, "-m", "audiossl.cli.main", "pretrain", "--manifest-dir", str(corpus), "--labels", "km",
        "--out", str(out), "model.size=tiny", "model.num_classes=20", "data.max_tokens=14000",
        "data.max_sample_size=6400", "data.min_sample_size=3200", "data.num_workers=0", f"max_steps={steps}",
        "optim.warmup_steps=2", "optim.lr=1e-3", "checkpoint_every=1", "log_every=1", "tensorboard=false", "seed=0",
        "amp=fp32", "keep_last_checkpoints=null", *(f"{k}={v}" for k, v in LAYERDROP.items()),
    ]


def test_kill_9_at_a_random_step_then_resume_gives_the_same_trace(corpus, tmp_path):  # noqa: F811
    steps = 7
    _assert_layers_drop(steps)
    reference = tmp_path / "reference"
    _train(corpus, reference, max_steps=steps, checkpoint_every=1, keep_last_checkpoints="null", **LAYERDROP)
    kill_after = random.Random(time.time_ns()).randint(2, steps - 2)
    run = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(_cli_args(corpus, run, steps), cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    try:
        while not (run / "checkpoints" / f"step_{kill_after}").is_dir():
            assert proc.poll() is None, f"training exited early: {proc.stderr.read().decode()[-2000:]}"  # type: ignore[union-attr]
            assert time.monotonic() < deadline, "no checkpoint within 300 s"
            time.sleep(0.02)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    print(f"killed -9 after the step {kill_after} checkpoint appeared")
    resumed = _train(corpus, run, max_steps=steps, checkpoint_every=1, keep_last_checkpoints="null", **LAYERDROP)
    assert resumed.step_nr == steps and resumed.checkpoint_dir is not None
    want, got = _losses(reference), _losses(run)
    assert sorted(got) == list(range(1, steps + 1))
    for step in want:
        assert got[step] == pytest.approx(want[step], rel=1e-6), step


# --- data2vec 2.0: the same paths for a family with an EMA teacher (buffers) and no labels ----------
@pytest.fixture(scope="module")
def d2v2_corpus(tmp_path_factory) -> Path:
    from tests.test_pretrain_data2vec2 import make_corpus

    return make_corpus(tmp_path_factory.mktemp("d2v2_corpus"))


def _assert_same_run(reference: Path, run: Path, steps: int) -> None:
    """Equal loss traces, and at the last step the same teacher and EMA state."""
    from tests.test_pretrain_data2vec2 import losses, step_state

    want, got = losses(reference), losses(run)
    assert sorted(got) == list(range(1, steps + 1))
    for step in want:
        assert got[step] == pytest.approx(want[step], rel=1e-6), step
    a, b = step_state(reference, steps), step_state(run, steps)
    assert a["num_updates"].item() == steps - 1
    for k in a:
        if k.startswith("teacher.") or k in ("num_updates", "ema_decay"):
            torch.testing.assert_close(b[k], a[k], rtol=1e-6, atol=1e-7, msg=k)


def test_data2vec2_kill_9_then_resume_gives_the_same_trace_and_teacher(d2v2_corpus, tmp_path):
    from tests.test_pretrain_data2vec2 import cli_args, train

    steps = 6
    reference = tmp_path / "reference"
    train(d2v2_corpus, reference, max_steps=steps, checkpoint_every=1, keep_last_checkpoints="null")
    kill_after = random.Random(time.time_ns()).randint(2, steps - 2)
    run = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(cli_args(d2v2_corpus, run, steps), cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    try:
        while not (run / "checkpoints" / f"step_{kill_after}").is_dir():
            assert proc.poll() is None, f"training exited early: {proc.stderr.read().decode()[-2000:]}"  # type: ignore[union-attr]
            assert time.monotonic() < deadline, "no checkpoint within 300 s"
            time.sleep(0.02)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    print(f"killed -9 after the step {kill_after} checkpoint appeared")
    resumed = train(d2v2_corpus, run, max_steps=steps, checkpoint_every=1, keep_last_checkpoints="null")
    assert resumed.step_nr == steps and resumed.checkpoint_dir is not None
    _assert_same_run(reference, run, steps)


def test_data2vec2_sigterm_resumes_identically_and_nan_steps_are_skipped(d2v2_corpus, tmp_path, monkeypatch):
    from safetensors.torch import load_file

    from audiossl.models.data2vec2.pretrain import Data2Vec2PretrainModel
    from audiossl.pretrain.unit import PretrainTrainUnit
    from tests.test_pretrain_data2vec2 import losses, train

    reference = tmp_path / "reference"
    train(d2v2_corpus, reference)
    orig = PretrainTrainUnit.set_step_nr

    def set_step_nr(self, step_nr):
        if step_nr == 3:
            os.kill(os.getpid(), signal.SIGTERM)
        orig(self, step_nr)

    monkeypatch.setattr(PretrainTrainUnit, "set_step_nr", set_step_nr)
    first = train(d2v2_corpus, tmp_path / "run")
    assert first.stopped_by == "SIGTERM" and first.step_nr == 3
    monkeypatch.setattr(PretrainTrainUnit, "set_step_nr", orig)
    assert train(d2v2_corpus, tmp_path / "run").step_nr == 4
    _assert_same_run(reference, tmp_path / "run", 4)

    calls = [0]
    forward = Data2Vec2PretrainModel.forward

    def poisoned(self, *a, **k):
        out = forward(self, *a, **k)
        if self.training:
            calls[0] += 1
            if calls[0] in (2, 3):
                out.loss = out.loss * float("nan")
        return out

    monkeypatch.setattr(Data2Vec2PretrainModel, "forward", poisoned)
    result = train(d2v2_corpus, tmp_path / "nan")
    assert result.step_nr == 4 and result.last_metrics["skipped_steps"] == 2
    assert np.isfinite(losses(tmp_path / "nan")[4])
    for name, t in load_file(str(result.checkpoint_dir / "model.safetensors")).items():
        assert torch.isfinite(t).all(), name
