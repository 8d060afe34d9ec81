"""fairseq2's ``Trainer`` with a stop request (SIGTERM / first Ctrl-C) honoured at a step boundary, with a checkpoint."""

from __future__ import annotations

import shutil
import signal
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import torch

import audiossl.pretrain.fairseq2_trainer  # noqa: F401  (first: fairseq2.trainer without fairseq2.recipe's 3.5-s __init__)
from fairseq2.gang import ReduceOperation
from fairseq2.trainer import Trainer
from fairseq2.utils.threading import ThreadPool

from audiossl.pretrain.health import StopSignal


class StoppableTrainer(Trainer):
    """fairseq2's Trainer plus a stop request honoured at a step boundary with a checkpoint.

    fairseq2 0.8.1's own ``request_stop`` is ignored when ``max_num_steps`` is set, and saves only on
    the configured interval; a preempted job needs a checkpoint of *this* step. Relies on the
    trainer's private step hooks (pinned fairseq2 version).

    With more than one data-parallel rank the ranks must agree on the stop step (Slurm may signal
    one rank first, or only one), which takes a collective and a host read. That runs only at steps
    that are multiples of ``stop_check_every`` (K), never per step: a signal takes effect at the
    next multiple of K on every rank, so the same step is checkpointed everywhere. One process
    checks its own flag after every step (no collective).
    """

    def __init__(self, *args, stop_signal: StopSignal, dp_gang, stop_check_every: int = 1, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._stop_signal, self._dp_gang, self._stop_check_every = stop_signal, dp_gang, stop_check_every
        self._stop_name: str | None = None

    def _stop_now(self) -> bool:
        """Whether to stop after this step; sets ``_stop_name`` (``SIGTERM`` / ``SIGINT`` / ``signal``)."""
        stop = self._stop_signal
        if self._dp_gang.size == 1:
            if stop.is_set():
                self._stop_name = signal_name(stop.signum)
            return stop.is_set()
        if self._step_nr % self._stop_check_every:
            return False  # between agreement points: no collective, no host read
        # [SIGTERM seen, SIGINT seen, other] summed over ranks: every rank stops, and reports the
        # signal that any rank received (SIGTERM wins, so all ranks exit 143 under Slurm).
        mine = torch.zeros(3, dtype=torch.int64, device=self._dp_gang.device)
        if stop.is_set():
            mine[{signal.SIGTERM: 0, signal.SIGINT: 1}.get(stop.signum, 2)] = 1  # type: ignore[arg-type]
        self._dp_gang.all_reduce(mine, ReduceOperation.SUM)
        seen = mine.tolist()  # the one host read, every stop_check_every steps
        if not any(seen):
            return False
        self._stop_name = "SIGTERM" if seen[0] else "SIGINT" if seen[1] else "signal"
        return True

    def _run_post_step(self):
        will_save = self._should_save_checkpoint()
        state = super()._run_post_step()
        if self._max_num_steps is not None and self._step_nr >= self._max_num_steps:
            return state  # the last step: the normal end saves the checkpoint
        if self._stop_now():
            if not will_save:
                self._save_checkpoint(blocking=True)
            self._checkpoint_manager.maybe_complete_save_operation(blocking=True)
            raise StopRun(self._step_nr, signal_name=self._stop_name)
        return state


def signal_name(signum: int | None) -> str:
    return signal.Signals(signum).name if signum is not None else "signal"


class StopRun(Exception):
    def __init__(self, step_nr: int, signal_name: str | None = None) -> None:
        super().__init__(f"stopped after step {step_nr}")
        self.step_nr, self.signal_name = step_nr, signal_name


class SaveThreads(ThreadPool):
    """The threads fairseq2 writes checkpoints on, which a forced stop can wait for (``join``)."""

    def __init__(self, max_workers: int = 4) -> None:
        self._executor = ThreadPoolExecutor(max_workers=max_workers)

    def queue(self, callback, *args, **kwargs) -> Future:
        return self._executor.submit(callback, *args, **kwargs)

    def join(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)


def discard_partial_checkpoints(checkpoint_dir: Path, save_threads: SaveThreads) -> None:
    """After a second Ctrl-C: wait for checkpoint writes in flight, then delete every uncommitted
    ``step_N.tmp`` (committed ``step_N`` directories stay; resuming starts from the last of them)."""
    save_threads.join()
    for partial in checkpoint_dir.glob("step_*.tmp"):
        shutil.rmtree(partial, ignore_errors=True)
