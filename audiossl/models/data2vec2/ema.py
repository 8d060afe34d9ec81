"""The EMA teacher of data2vec 2.0 (fairseq ``EMAModule`` + ``Data2VecMultiModel.set_num_updates``).

The teacher is a copy of the student's :class:`~audiossl.models.data2vec2.model.ContextEncoder` whose
parameters are turned into **buffers**: they are in the model's ``state_dict`` (so fairseq2's
checkpoint carries them and a resumed run continues with the same teacher), the optimizer never sees
them, DDP does not all-reduce them, and nothing flows back into them.

After every optimizer step ``n`` (``n = 1, 2, ...``) the teacher moves towards the student::

    decay(n) = end - (end - start) * (1 - n / anneal_end)     (n < anneal_end; ``end`` after)
    teacher  = decay * teacher + (1 - decay) * student          (fp32, in place, on the device)

(fairseq ``get_annealed_rate`` and ``EMAModule.step``; no step while ``decay >= 1``.)
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn


def ema_decay_at(num_updates: int, start: float, end: float, anneal_end_step: int) -> float:
    """The decay used for the EMA step after update ``num_updates`` (fairseq ``get_annealed_rate``)."""
    if start == end or num_updates >= anneal_end_step:
        return end
    return end - (end - start) * (1.0 - num_updates / anneal_end_step)


def params_to_buffers(module: nn.Module) -> nn.Module:
    """Turn every parameter of ``module`` (in place) into a persistent buffer of the same name."""
    for sub in module.modules():
        for name, p in list(sub._parameters.items()):
            if p is None:
                continue
            del sub._parameters[name]
            sub.register_buffer(name, p.detach())
    return module


def make_teacher(student: nn.Module, build: Callable[[], nn.Module]) -> nn.Module:
    """A frozen copy of ``student`` with its parameters as buffers (eval mode, no LayerDrop).

    ``build()`` makes a module of the student's class; it runs on the meta device (no random init,
    so the global RNG is not consumed) and then takes clones of the student's tensors."""
    with torch.device("meta"):
        teacher = build()
    teacher.load_state_dict({k: v.detach().clone() for k, v in student.state_dict().items()}, strict=True, assign=True)
    teacher = params_to_buffers(teacher)
    if hasattr(teacher, "layerdrop"):
        teacher.layerdrop = 0.0
    return teacher.requires_grad_(False).eval()


def ema_pairs(teacher: nn.Module, student: nn.Module) -> tuple[list[Tensor], list[Tensor]]:
    """``(teacher buffers, student parameters)`` matched by name (every student parameter has one)."""
    buffers = dict(teacher.named_buffers())
    t, s = [], []
    for name, p in student.named_parameters():
        if name not in buffers:
            raise KeyError(f"EMA teacher has no buffer {name!r} for the student parameter of that name")
        t.append(buffers[name])
        s.append(p)
    return t, s


@torch.no_grad()
def ema_update_(teacher: nn.Module, student: nn.Module, decay: float) -> None:
    """``teacher = decay * teacher + (1 - decay) * student`` for every student parameter, in place."""
    t, s = ema_pairs(teacher, student)
    if any(type(p).__name__ == "DTensor" or type(getattr(p, "data", None)).__name__ == "DTensor" for p in s):
        raise RuntimeError(
            "data2vec2: the EMA teacher needs the full student weights on every rank; FSDP shards them. "
            "Train data2vec2 with data_parallelism=ddp."
        )
    src = [p.detach().to(b.dtype) for p, b in zip(s, t)]
    torch._foreach_mul_(t, decay)
    torch._foreach_add_(t, src, alpha=1.0 - decay)
