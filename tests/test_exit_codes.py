"""Exit codes of the real ``audiossl pretrain`` process (README): SIGTERM → 143 and Ctrl-C → 130,
each after a checkpoint at the step boundary that the same command resumes; a second Ctrl-C
stops at once, without finishing the step.

The test waits on what the run writes (the metrics of step 1, the handler's log line), never on
sleeps alone. A step here is half an epoch (four one-utterance batches) through an 8-layer encoder,
long next to the moment the test takes to answer a log line with the next signal. Not a whole
epoch: fairseq2 runs the post-step hooks again at the end of a data epoch, so a signal sent just
after step 1's metrics could still land at step 1's boundary (then the second Ctrl-C meets the
checkpoint save, which has its own test below).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
import torch

from tests.test_pretrain_hubert import _train, corpus  # noqa: F401  (a fixture)
from tests.test_training_health import REPO, _cli_args

MAX_STEPS = 4
SLOW_STEPS = ["data.max_tokens=6400", "data.num_accumulate=4", "model.num_layers=8", "checkpoint_every=1000"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}


def _args(corpus: Path, out: Path) -> list[str]:  # noqa: F811
    return _cli_args(corpus, out, MAX_STEPS) + SLOW_STEPS  # later overrides win


def _start(args: list[str]) -> tuple[subprocess.Popen, list[str]]:
    """The CLI process and its stderr lines, collected as they come."""
    proc = subprocess.Popen(args, cwd=REPO, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    log: list[str] = []

    def read() -> None:
        for line in proc.stderr:  # type: ignore[union-attr]
            log.append(line)

    threading.Thread(target=read, daemon=True).start()
    return proc, log


def _wait_until(proc: subprocess.Popen, log: list[str], ready) -> None:
    deadline = time.monotonic() + 300  # a guard against a hang, not a measurement
    while not ready():
        assert proc.poll() is None, f"the run exited early:\n{''.join(log)[-3000:]}"
        assert time.monotonic() < deadline, "nothing within 300 s"
        time.sleep(0.01)


def _steps(out: Path) -> list[int]:
    path = out / "metrics" / "train.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line)["Step"] for line in path.read_text().splitlines() if line.endswith("}")]


def _checkpoints(out: Path) -> list[str]:
    return sorted(p.name for p in (out / "checkpoints").glob("step_*"))


def _exit_code(proc: subprocess.Popen, log: list[str]) -> int:
    rc = proc.wait(timeout=300)
    print("".join(log)[-1500:])
    return rc


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)], ids=["SIGTERM", "SIGINT"])
def test_a_signal_checkpoints_at_the_step_boundary_and_exits_with_its_code(corpus, tmp_path, sig, code):  # noqa: F811
    out = tmp_path / "run"
    proc, log = _start(_args(corpus, out))
    _wait_until(proc, log, lambda: _steps(out))  # step 1 is done: the signal lands in a later step
    proc.send_signal(sig)
    assert _exit_code(proc, log) == code
    step = max(_steps(out))
    assert step < MAX_STEPS and _checkpoints(out) == [f"step_{step}"]  # checkpoint_every=1000: saved for the signal
    assert f"stopped by {sig.name} after step {step} with a checkpoint" in "".join(log)

    if sig != signal.SIGTERM:
        return  # the same checkpoint either way: resuming once is enough
    resumed = subprocess.run(_args(corpus, out), cwd=REPO, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert _steps(out) == list(range(1, MAX_STEPS + 1))  # continued after `step`, did not start over


def test_a_second_ctrl_c_stops_at_once(corpus, tmp_path):  # noqa: F811
    out = tmp_path / "run"
    proc, log = _start(_args(corpus, out))
    _wait_until(proc, log, lambda: _steps(out))
    proc.send_signal(signal.SIGINT)
    _wait_until(proc, log, lambda: any("SIGINT received" in line for line in log))
    proc.send_signal(signal.SIGINT)
    assert _exit_code(proc, log) == 130
    assert _steps(out) == [1]  # the step in progress was abandoned, not finished
    assert _checkpoints(out) == []
    text = "".join(log)
    assert "interrupted" in text and "with a checkpoint" not in text


@pytest.mark.parametrize(
    ("checkpoint_every", "first_ctrl_c"),
    [(1000, "before step 1"), (1, "in the writer")],
    ids=["the-stop's-own-save-on-the-main-thread", "an-interval-save-on-a-save-thread"],
)
def test_a_second_ctrl_c_during_a_checkpoint_save_is_an_interrupt_and_leaves_no_partial_checkpoint(
    corpus, tmp_path, monkeypatch, checkpoint_every, first_ctrl_c  # noqa: F811
):
    """The second Ctrl-C arrives while torch.save writes a checkpoint file.

    On the main thread (the save a first Ctrl-C asks for), torch.save's C++ writer turns the
    KeyboardInterrupt into a RuntimeError and fairseq2 that into "must contain pickeable objects
    only"; on a save thread the interrupt hits the main thread while the thread goes on writing.
    Either way the run ends as interrupted (the CLI's exit 130) with no half-written step_N.tmp.
    """
    from audiossl.pretrain.health import StopSignal

    real_save, real_enter = torch.save, StopSignal.__enter__

    pressed: list[int] = []

    class CtrlCWhileWriting:
        """The first checkpoint file's second write is where the user presses Ctrl-C (once or twice)."""

        def __init__(self, fp) -> None:
            self.fp, self.writes = fp, 0

        def write(self, data) -> int:
            self.writes += 1
            if self.writes == 2 and not pressed:
                if first_ctrl_c == "in the writer":
                    pressed.append(1)
                    signal.raise_signal(signal.SIGINT)
                    # the main thread runs the handler; CPython would merge two pending SIGINTs into one
                    deadline = time.monotonic() + 60
                    while not stops[0].is_set() and time.monotonic() < deadline:
                        time.sleep(0.001)
                pressed.append(1)
                signal.raise_signal(signal.SIGINT)
            return self.fp.write(data)

        def flush(self) -> None:
            self.fp.flush()

    saves: list[str] = []

    def save(obj, f, *args, **kwargs):
        saves.append(str(getattr(f, "name", f)))
        return real_save(obj, CtrlCWhileWriting(f), *args, **kwargs)

    stops: list[StopSignal] = []

    def enter(self):
        stops.append(self)
        installed = real_enter(self)
        if first_ctrl_c == "before step 1":
            signal.raise_signal(signal.SIGINT)
        return installed

    monkeypatch.setattr(torch, "save", save)
    monkeypatch.setattr(StopSignal, "__enter__", enter)
    out = tmp_path / "run"
    before = signal.getsignal(signal.SIGINT)  # SIG_IGN when the suite runs as a background job
    with pytest.raises(KeyboardInterrupt):
        _train(corpus, out, max_steps=MAX_STEPS, checkpoint_every=checkpoint_every)
    assert any(".tmp/" in name for name in saves)  # a real checkpoint write was interrupted
    assert not any((out / "checkpoints").glob("step_*"))  # neither step_1 nor the half-written step_1.tmp
    assert signal.getsignal(signal.SIGINT) == before  # the run put the handler back
