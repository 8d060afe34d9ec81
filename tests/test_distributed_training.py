"""Multi-process training: ``torchrun --standalone --nproc_per_node=2`` on CPU (gloo) through the
real CLI, for HuBERT under DDP and FSDP and for the RVQ-VAE tokenizer.

* a 2-rank run completes, checkpoints and exports;
* ``kill -9`` of one rank kills the run; the same command resumes and gives the loss trace of an
  uninterrupted 2-rank run;
* the 2-rank loss trace equals one process with the same global batch (``num_accumulate=2``).
  HuBERT runs with masking and dropout off: fairseq2 seeds rank r with ``seed + r``, so random
  masks can never match one process's stream; what is compared is sharding, gradient averaging,
  loss normalisation and the metric reduction. Tolerance: exact. With 2 ranks the gradient
  all-reduce is one float addition (commutative, so order-free) followed by a division by 2
  (exact), i.e. bitwise what accumulating two halves computes; checked with
  ``ATEN_CPU_CAPABILITY=avx2`` and default (AVX-512), 1 and 2 threads. With more ranks the
  summation order would matter and a tolerance would be needed.
* SIGTERM on one rank: every rank checkpoints the same step (the next multiple of
  ``stop_check_every``) and exits 143.

Each torchrun launch costs ~15 s on 2 cores (two interpreters importing torch + fairseq2).
"""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.test_pretrain_hubert import _losses, _train, corpus  # noqa: F401  (corpus is a fixture)
from tests.test_rvq_vae import demo  # noqa: F401  (a fixture)
from tests.test_training_health import _cli_args

REPO = Path(__file__).resolve().parents[1]
# HuBERT with every random draw off (see the module docstring): the step is a function of the batch.
DETERMINISTIC = {
    "model.mask_prob": 0, "model.pred_masked_weight": 0, "model.pred_nomask_weight": 1,
    "model.dropout": 0, "model.attention_dropout": 0, "model.dropout_input": 0,
}
STEPS = 6


def _torchrun(argv: list[str], fault: str | None = None, log_dir: Path | None = None) -> subprocess.CompletedProcess:
    """``torchrun --standalone --nproc_per_node=2 tests/dist_worker.py ARGV`` (1 thread per rank)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    env.pop("AUDIOSSL_TEST_FAULT", None)
    if fault:
        env["AUDIOSSL_TEST_FAULT"] = fault
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    if log_dir is not None:
        cmd += ["--log-dir", str(log_dir), "--redirects", "3"]
    return subprocess.run(cmd + [str(REPO / "tests" / "dist_worker.py"), *argv], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def _ok(proc: subprocess.CompletedProcess) -> None:
    assert proc.returncode == 0, f"torchrun exited {proc.returncode}:\n{proc.stderr[-4000:]}"


def _hubert_argv(corpus: Path, out: Path, *extra: str) -> list[str]:  # noqa: F811
    return _cli_args(corpus, out, STEPS)[3:] + [f"{k}={v}" for k, v in DETERMINISTIC.items()] + list(extra)


def _trace(out: Path) -> list[float]:
    losses = _losses(out)
    assert sorted(losses) == list(range(1, STEPS + 1)), f"{out}: logged steps {sorted(losses)}"
    return [losses[s] for s in sorted(losses)]


def _check_complete(out: Path) -> None:
    ckpt = out / "checkpoints" / f"step_{STEPS}"
    assert {p.name for p in (ckpt / "data_reader").iterdir()} == {"dp_00.pt", "dp_01.pt"}
    assert (out / "checkpoint" / "model.safetensors").is_file() and (out / "checkpoint" / "config.json").is_file()


@pytest.fixture(scope="module")
def single(corpus, tmp_path_factory):  # noqa: F811
    """One process, same global batch: two batches per step (``num_accumulate=2``)."""
    out = tmp_path_factory.mktemp("single")
    _train(corpus, out, max_steps=STEPS, checkpoint_every=STEPS, **DETERMINISTIC, **{"data.num_accumulate": 2})
    return _trace(out)


@pytest.fixture(scope="module", params=["ddp", "fsdp"])
def two_ranks(request, corpus, tmp_path_factory):  # noqa: F811
    out = tmp_path_factory.mktemp(request.param)
    _ok(_torchrun(_hubert_argv(corpus, out, f"data_parallelism={request.param}")))
    return request.param, out


def test_two_rank_run_checkpoints_and_equals_one_process(two_ranks, single):
    mode, out = two_ranks
    _check_complete(out)
    if mode == "fsdp":  # the sharded state: one model shard per rank
        assert {p.name for p in (out / "checkpoints" / f"step_{STEPS}" / "model" / "pp_00" / "tp_00").iterdir()} == {"sdp_00.pt", "sdp_01.pt"}
    got = _trace(out)
    print(mode, "2 ranks", got, "\n1 process", single)
    assert got == single, f"{mode}: 2-rank loss trace {got} != one process with num_accumulate=2 {single}"


def test_kill_9_of_one_rank_then_rerun_resumes_the_same_trace(two_ranks, corpus, tmp_path):  # noqa: F811
    mode, reference = two_ranks
    run = tmp_path / "run"
    argv = _hubert_argv(corpus, run, f"data_parallelism={mode}")
    died = _torchrun(argv, fault="1:4:KILL")  # rank 1 is killed as step 4 begins (step 3 is checkpointed)
    assert died.returncode != 0 and re.search(r"exitcode\s*:\s*-9", died.stderr), died.stderr[-3000:]
    assert (run / "checkpoints" / "step_3").is_dir() and not (run / "checkpoints" / "step_4").exists()
    _ok(_torchrun(argv))  # the same command
    _check_complete(run)
    assert _trace(run) == _trace(reference), f"{mode}: resumed trace differs from the uninterrupted run"


def test_sigterm_on_one_rank_checkpoints_every_rank_at_the_same_step(corpus, tmp_path):  # noqa: F811
    run, logs = tmp_path / "run", tmp_path / "logs"
    # SIGTERM reaches rank 1 only, as step 2 begins; the ranks agree every 4 steps, so both stop after step 4.
    argv = _hubert_argv(corpus, run, "stop_check_every=4", f"checkpoint_every={STEPS}")
    proc = _torchrun(argv, fault="1:2:TERM", log_dir=logs)
    codes = re.findall(r"rank\s*:\s*(\d) \(local_rank.*\n\s*exitcode\s*:\s*(-?\d+)", proc.stderr)
    assert sorted(codes) == [("0", "143"), ("1", "143")], f"per-rank exit codes {codes}:\n{proc.stderr[-3000:]}"
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step_4"]
    for rank in (0, 1):
        err = "".join(p.read_text() for p in logs.glob(f"*/attempt_0/{rank}/stderr.log"))
        assert "stopped by SIGTERM after step 4 with a checkpoint" in err, f"rank {rank}:\n{err[-2000:]}"
        state = torch.load(run / "checkpoints" / "step_4" / "data_reader" / f"dp_0{rank}.pt", weights_only=True)
        # 2 batches per rank per epoch: after step 4 both readers are at the end of epoch 1 (reset lazily)
        assert (state["epoch"], state["position"]) == (1, 2), f"rank {rank} data reader at {state}"
    assert sorted(_losses(run)) == [1, 2, 3, 4]


# --- a tokenizer family: the RVQ-VAE (audio only, EMA codebooks all-reduced over ranks) --------------
def _rvq_argv(demo: Path, out: Path) -> list[str]:  # noqa: F811
    return [
        "tokenizer", "train", "rvq", "--config", str(REPO / "recipes" / "mert" / "rvq_tiny.yaml"), "--manifest-dir", str(demo),
        "--out", str(out), f"--max-steps={STEPS}", "log_every=1", "checkpoint_every=1", "keep_last_checkpoints=null",
        "tensorboard=false", "seed=0", "amp=fp32", "data.max_sample_size=3200", "data.min_sample_size=3200", "data.max_tokens=12800",
    ]


@pytest.fixture(scope="module")
def rvq_straight(demo, tmp_path_factory):  # noqa: F811
    out = tmp_path_factory.mktemp("rvq")
    _ok(_torchrun(_rvq_argv(demo, out)))
    return out


def test_rvq_tokenizer_two_rank_run_completes_and_checkpoints(rvq_straight):
    """No one-process equality here: k-means initialisation and dead-code restarts draw from rank 0's
    batch only, and EMA updates see one step's frames at once, so one process differs by design."""
    _check_complete(rvq_straight)
    assert all(map(math.isfinite, _trace(rvq_straight)))


def test_rvq_tokenizer_resumes_after_kill_9_of_rank_0(rvq_straight, demo, tmp_path):  # noqa: F811
    run = tmp_path / "run"
    died = _torchrun(_rvq_argv(demo, run), fault="0:4:KILL")
    assert died.returncode != 0 and (run / "checkpoints" / "step_3").is_dir() and not (run / "checkpoints" / "step_4").exists()
    _ok(_torchrun(_rvq_argv(demo, run)))
    _check_complete(run)
    assert _trace(run) == _trace(rvq_straight)
