"""Multi-process training: ``torchrun --standalone --nproc_per_node=2`` on CPU (gloo) through the
real CLI, for HuBERT under DDP and FSDP, for the RVQ-VAE tokenizer and for data2vec 2.0 under DDP.

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
import signal
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
    # LayerDrop draws once per step for every rank, but once per micro-batch in one process.
    "model.encoder_layerdrop": 0,
}
STEPS = 6


def _torchrun(argv: list[str], fault: str | None = None, log_dir: Path | None = None) -> subprocess.CompletedProcess:
    """``torchrun --standalone --nproc_per_node=2 tests/dist_worker.py ARGV`` (1 thread per rank);
    with ``log_dir``, per-rank logs and exit statuses (``log_dir/exit/rank<R>``) land there."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    env.pop("AUDIOSSL_TEST_FAULT", None)
    env.pop("AUDIOSSL_TEST_EXIT_DIR", None)
    if fault:
        env["AUDIOSSL_TEST_FAULT"] = fault
    if log_dir is not None:
        env["AUDIOSSL_TEST_EXIT_DIR"] = str(log_dir / "exit")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    if log_dir is not None:
        cmd += ["--log-dir", str(log_dir), "--redirects", "3"]
    # A session of its own, so a hung run is killed whole: torchrun and both ranks, no orphan left.
    proc = subprocess.Popen(cmd + [str(REPO / "tests" / "dist_worker.py"), *argv], cwd=REPO, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        raise AssertionError(f"torchrun {argv[:1]} hung for 300 s; killed. stderr:\n{err[-4000:]}") from None
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


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


def _check_died_after_step_2(run: Path) -> None:
    """Killed as step 4 began: step 3's checkpoint may still have been saving in the background
    (fairseq2 saves asynchronously), step 2's is complete; nothing later exists."""
    saved = sorted(int(p.name[5:]) for p in (run / "checkpoints").glob("step_*") if p.name[5:].isdigit())
    assert saved and max(saved) in (2, 3), f"complete checkpoints after kill -9: {saved}"


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
    _check_died_after_step_2(run)
    _ok(_torchrun(argv))  # the same command
    _check_complete(run)
    assert _trace(run) == _trace(reference), f"{mode}: resumed trace differs from the uninterrupted run"


def test_sigterm_on_one_rank_checkpoints_every_rank_at_the_same_step(corpus, tmp_path):  # noqa: F811
    run, logs = tmp_path / "run", tmp_path / "logs"
    # SIGTERM reaches rank 1 only, as step 2 begins; the ranks agree every 4 steps, so both stop after step 4.
    # With LayerDrop, so DDP must find the dropped layers' unused parameters by itself (the default).
    argv = _hubert_argv(corpus, run, "stop_check_every=4", f"checkpoint_every={STEPS}", "model.encoder_layerdrop=0.5")
    proc = _torchrun(argv, fault="1:2:TERM", log_dir=logs)
    assert proc.returncode != 0
    # torchrun lists the first rank to exit non-zero and stops the other, so each rank records its own status.
    codes = {p.name: p.read_text() for p in (logs / "exit").iterdir()}
    assert codes == {"rank0": "143", "rank1": "143"}, f"per-rank exit codes {codes}:\n{proc.stderr[-3000:]}"
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step_4"]
    for rank in (0, 1):
        err = "".join(p.read_text() for p in logs.glob(f"*/attempt_0/{rank}/stderr.log"))
        assert "stopped by SIGTERM after step 4 with a checkpoint" in err, f"rank {rank}:\n{err[-2000:]}"
        state = torch.load(run / "checkpoints" / "step_4" / "data_reader" / f"dp_0{rank}.pt", weights_only=True)
        # 2 batches per rank per epoch: after step 4 both readers are at the end of epoch 1 (reset lazily)
        assert (state["epoch"], state["position"]) == (1, 2), f"rank {rank} data reader at {state}"
    assert sorted(_losses(run)) == [1, 2, 3, 4]


# --- ranks stay in lock-step with no collective ---------------------------------------------------------
def test_ranks_read_equal_steps_when_a_rank_meets_unreadable_batches_without_a_collective(corpus, monkeypatch):  # noqa: F811
    """Rank 1's first batch fails to load (files broken after the header probe): it becomes a
    zero-weight stand-in, so both ranks still take 2 steps per epoch, and reading never calls the
    data-parallel gang (no per-step ``all_sum`` to find a rank that ran dry)."""
    from types import SimpleNamespace

    from audiossl.audio.io import AudioError
    from audiossl.pretrain.data import PretrainDataset
    from audiossl.pretrain.trainer import RunPaths, build_model, build_reader
    from audiossl.pretrain.unit import PretrainTrainUnit
    from tests.test_pretrain_hubert import _cfg
    from tests.test_step_host_reads import _TwoRankGang

    cfg = _cfg()
    model, _ = build_model(cfg)
    readers, gangs = [], []
    for rank in (0, 1):
        dp = _TwoRankGang()
        dp.rank = rank
        gangs.append(dp)
        fake = SimpleNamespace(dp=dp, root=dp, device=torch.device("cpu"))
        readers.append(build_reader(RunPaths(corpus, "train", "km", corpus), "train", model, cfg, fake, train=True)[0])
    broken = set(readers[1].sampler.batches(0)[0])
    orig = PretrainDataset._read_crop

    def read_crop(self, path, index, epoch, *size):
        if index in broken and epoch == 0:
            raise AudioError(path, "unreadable", "broken after the probe")
        return orig(self, path, index, epoch, *size)

    monkeypatch.setattr(PretrainDataset, "_read_crop", read_crop)
    steps = [list(r) for r in readers]  # one epoch: [step][batch]
    assert [len(s) for s in steps] == [2, 2], "ranks must take the same number of steps"
    assert all(len(step) == 1 for s in steps for step in s)
    stand_in = steps[1][0][0]
    assert stand_in.stand_in and stand_in.real_samples == 0 and stand_in.wavs.abs().sum() == 0
    assert stand_in.targets.shape == (1, model.encoder.num_frames(stand_in.wavs.shape[1])) and (stand_in.targets == -100).all()
    assert not any(b.stand_in for s in (steps[0], steps[1][1:]) for step in s for b in step)
    assert readers[1].num_skipped == len(broken)
    assert gangs[0].calls == [] and gangs[1].calls == [], "the data reader must not sync the ranks"
    # the stand-in runs forward/backward (DDP/FSDP collectives happen) but moves nothing
    unit = PretrainTrainUnit(model, sample_rate=16000, dp_size=2, flops_per_audio_second=1.0, peak_flops=None)
    from fairseq2.metrics import MetricBag

    bag = MetricBag(torch.device("cpu"))
    unit.prepare_metric_bag(bag)
    loss, _ = unit.process_batch(stand_in, bag)
    loss.backward()
    assert loss == 0 and all(p.grad is None or not p.grad.any() for p in model.parameters())


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
    assert died.returncode != 0, died.stderr[-3000:]
    _check_died_after_step_2(run)
    _ok(_torchrun(_rvq_argv(demo, run)))
    _check_complete(run)
    assert _trace(run) == _trace(rvq_straight)


# --- data2vec 2.0: an EMA teacher (buffers, updated on every rank from the same student) ------------
@pytest.fixture(scope="module")
def d2v2_corpus(tmp_path_factory):
    from tests.test_pretrain_data2vec2 import make_corpus

    return make_corpus(tmp_path_factory.mktemp("d2v2_corpus"))


def _d2v2_argv(corpus: Path, out: Path) -> list[str]:
    from tests.test_pretrain_data2vec2 import cli_args

    return cli_args(corpus, out, STEPS)[3:]


def test_data2vec2_ddp_kill_9_of_one_rank_then_rerun_resumes_the_same_trace_and_teacher(d2v2_corpus, tmp_path):
    from tests.test_training_health import _assert_same_run

    reference = tmp_path / "reference"
    _ok(_torchrun(_d2v2_argv(d2v2_corpus, reference)))
    _check_complete(reference)
    run = tmp_path / "run"
    died = _torchrun(_d2v2_argv(d2v2_corpus, run), fault="1:4:KILL")
    assert died.returncode != 0 and re.search(r"exitcode\s*:\s*-9", died.stderr), died.stderr[-3000:]
    _check_died_after_step_2(run)
    _ok(_torchrun(_d2v2_argv(d2v2_corpus, run)))
    _check_complete(run)
    _assert_same_run(reference, run, STEPS)


def test_stop_check_every_is_validated_and_defaults_to_log_every():
    from audiossl.pretrain.config import ConfigError, load_config

    assert load_config(None, ["log_every=5", "checkpoint_every=10"]).stop_check_every is None  # = log_every in the trainer
    assert load_config(None, ["stop_check_every=3"]).stop_check_every == 3
    with pytest.raises(ConfigError, match="stop_check_every=0 must be >= 1"):
        load_config(None, ["stop_check_every=0"])
