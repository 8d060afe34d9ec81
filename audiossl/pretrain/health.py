"""Training health: skip optimiser steps with non-finite gradients, stop after K in a row, and
turn SIGTERM / SIGINT into "checkpoint at the next step boundary, then exit resumable".

* :class:`GuardedAdamW` is AdamW on the fused kernel (CPU and CUDA) with ``found_inf`` set from
  the gradient norms, the mechanism ``torch.amp.GradScaler`` uses: a step whose gradients hold a
  NaN or inf leaves the weights, the moments and the step count untouched, decided on the device
  with no host sync. Skips are counted on the device and read only when metrics are published.
* :class:`StopSignal` records SIGTERM (what Slurm sends before preemption or at the time limit) and
  SIGINT; the trainer checks it after each step. A second SIGINT exits at once.
"""

from __future__ import annotations

import logging
import signal
import threading

import torch
import torch.distributed as dist

log = logging.getLogger(__name__)


class TrainingDiverged(RuntimeError):
    """K consecutive steps had non-finite loss or gradients; the message names the step and the fix."""


def _local(t: torch.Tensor) -> torch.Tensor:
    """The local shard of a ``DTensor`` (FSDP2 gradient), or ``t`` itself."""
    from torch.distributed.tensor import DTensor  # lazy: heavy distributed modules; only with a process group

    return t.to_local() if isinstance(t, DTensor) else t


class GuardedAdamW(torch.optim.AdamW):
    """``torch.optim.AdamW(fused=True)`` that skips steps whose gradients are not finite.

    ``num_skipped`` / ``longest_run`` are device tensors (total skipped steps, longest run of
    consecutive skips since :meth:`pop_longest_run`). Under FSDP each rank holds a gradient shard,
    so the verdict is all-reduced (max) over the default process group: every rank skips together.
    """

    def __init__(self, params, **kwargs) -> None:
        kwargs.pop("fused", None)
        super().__init__(params, fused=True, **kwargs)
        self.num_skipped: torch.Tensor | None = None
        self._run: torch.Tensor | None = None
        self._longest: torch.Tensor | None = None

    def _nonfinite(self) -> torch.Tensor | None:
        # FSDP2 gradients are DTensor shards: look at the local shard (the MAX below covers the rest).
        grads = [_local(p.grad) for g in self.param_groups for p in g["params"] if p.grad is not None]
        if not grads:
            return None
        norms = torch._foreach_norm(grads)
        found = (~torch.isfinite(torch.stack([n.float() for n in norms]).sum())).float()
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            dist.all_reduce(found, op=dist.ReduceOp.MAX)
        return found

    @torch.no_grad()
    def step(self, closure=None):  # type: ignore[override]
        found = self._nonfinite()
        if found is None:
            return super().step(closure)
        if self.num_skipped is None:
            self.num_skipped = torch.zeros((), dtype=torch.long, device=found.device)
            self._run = torch.zeros_like(self.num_skipped)
            self._longest = torch.zeros_like(self.num_skipped)
        self.found_inf = found
        try:
            loss = super().step(closure)
        finally:
            del self.found_inf
        skipped = found.long()
        self.num_skipped += skipped
        self._run = (self._run + 1) * skipped  # type: ignore[operator]
        torch.maximum(self._longest, self._run, out=self._longest)  # type: ignore[arg-type]
        return loss

    def pop_longest_run(self) -> tuple[int, int]:
        """``(total skipped, longest consecutive run since the last call)``; syncs with the device."""
        if self.num_skipped is None:
            return 0, 0
        total, longest = int(self.num_skipped), int(self._longest)  # type: ignore[arg-type]
        self._longest.copy_(self._run)  # type: ignore[union-attr]  # a run in progress carries over
        return total, longest


class StopSignal:
    """Set by SIGTERM / SIGINT while installed (``with StopSignal() as stop: ... stop.is_set()``)."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self) -> None:
        self._event = threading.Event()
        self._previous: dict[int, object] = {}
        self.signum: int | None = None
        self.forced = False
        """A second Ctrl-C came: the run stops now, whatever the KeyboardInterrupt was turned into on the way."""

    def _handle(self, signum, frame) -> None:
        if self._event.is_set() and signum == signal.SIGINT:
            self.forced = True
            raise KeyboardInterrupt  # second Ctrl-C: stop now
        self.signum = signum
        self._event.set()
        log.warning(
            "%s received: saving a checkpoint at the end of this step, then exiting (run the same command to resume)",
            signal.Signals(signum).name,
        )

    def is_set(self) -> bool:
        return self._event.is_set()

    def __enter__(self) -> "StopSignal":
        if threading.current_thread() is threading.main_thread():
            for s in self.SIGNALS:
                self._previous[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for s, h in self._previous.items():
            signal.signal(s, h)  # type: ignore[arg-type]
        self._previous.clear()
