"""What this CPU can do fast, for choices made at run time (``amp=auto``)."""

from __future__ import annotations

import torch


def has_native_bf16() -> bool:
    """Whether the CPU multiplies bf16 in hardware (AVX512-BF16 or AMX tiles).

    oneDNN then runs bf16 convolutions and matmuls with bf16 dot-product instructions (twice the
    fp32 FMA rate per instruction, or AMX tiles); on CPUs without them it emulates bf16 and is
    slower than fp32. Reads cpuinfo through torch, so ``ATEN_CPU_CAPABILITY`` does not change it.
    """
    cpu = getattr(torch._C, "_cpu", None)
    if cpu is None:  # a torch build without the probes: be conservative
        return False
    return bool(cpu._is_avx512_bf16_supported() or cpu._is_amx_tile_supported())
