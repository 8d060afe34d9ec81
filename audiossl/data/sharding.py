"""Which part of a corpus this process handles: ``torchrun`` ranks or a Slurm-array ``--shard I/N``.

Under ``torchrun`` (``WORLD_SIZE`` > 1 in the environment) the rank and world size come from the
environment and a gloo process group is opened for barriers and all-reduces (gloo on CPU tensors
also when the model runs on a GPU: the reduced statistics are small). With ``--shard I/N`` the
process is one independent job of N and nothing is communicated; a separate merge step joins
the parts (``audiossl features merge``, ``audiossl kmeans label --merge``).

Row ``i`` of a manifest belongs to part ``i % N``; store shard ``k`` is read by part ``k % N``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Part:
    index: int = 0
    count: int = 1
    distributed: bool = False
    """True under torchrun: collectives are available (barrier, all-reduce)."""

    @property
    def single(self) -> bool:
        return self.count == 1

    def barrier(self) -> None:
        if self.distributed:
            torch.distributed.barrier()

    def all_reduce(self, t: torch.Tensor) -> torch.Tensor:
        """Sum over ranks (a CPU copy through gloo), returned on ``t``'s device; identity otherwise."""
        if not self.distributed:
            return t
        c = t.detach().cpu().clone()
        torch.distributed.all_reduce(c)
        return c.to(t.device)

    def all_gather(self, t: torch.Tensor) -> list[torch.Tensor]:
        """Equal-shaped tensors of every rank, in rank order."""
        if not self.distributed:
            return [t]
        c = t.detach().cpu().contiguous()
        out = [torch.empty_like(c) for _ in range(self.count)]
        torch.distributed.all_gather(out, c)
        return [o.to(t.device) for o in out]


def parse_shard(text: str) -> tuple[int, int]:
    """``"I/N"`` → ``(I, N)`` with ``0 <= I < N``."""
    try:
        i, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise ValueError(f"--shard expects I/N (e.g. 0/4), got {text!r}") from None
    if not (n >= 1 and 0 <= i < n):
        raise ValueError(f"--shard {text}: need 0 <= I < N")
    return i, n


def current_part(shard: str | tuple[int, int] | None = None) -> Part:
    """The part of this process: ``shard`` (``"I/N"``) for a Slurm array task, else torchrun's
    rank/world from the environment (opening a gloo group once), else the whole corpus."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if shard is not None:
        if world > 1:
            raise ValueError("--shard is for independent jobs (Slurm arrays); under torchrun the rank picks the part")
        i, n = parse_shard(shard) if isinstance(shard, str) else shard
        return Part(i, n, False)
    if world <= 1:
        return Part()

    if not dist.is_initialized():
        dist.init_process_group("gloo")
    return Part(dist.get_rank(), dist.get_world_size(), True)
