"""Keep glibc from handing large tensor buffers back to the kernel after every step.

PyTorch's CPU allocator is plain ``malloc``. glibc serves a block above its mmap threshold
(128 KiB, raised dynamically up to 32 MiB) with a fresh ``mmap`` and unmaps it on ``free``; the
freed top of the heap is trimmed back to the kernel too. A training step allocates the same
multi-MiB activations every time, so each step pays page faults and kernel zeroing of every
activation on first touch: on a 2-core AVX-512 machine, 20-30 % of a HuBERT-tiny step
(``conv`` outputs, their layout copies, GroupNorm and GELU outputs of ``[12, 64, 6399]``).

``tune_malloc()`` sets the thresholds once per process with ``mallopt`` (the same effect as
``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_`` in the environment, and what Intel's
PyTorch CPU guide gets by preloading jemalloc/tcmalloc, which we cannot assume are installed):
blocks up to 32 MiB come from the heap and freed memory stays with the process for reuse.
The cost is that the process keeps its peak heap instead of returning it.

Measured (``python tools/bench/malloc.py``): HuBERT-tiny bare train step, batch 12 × 2 s, 2 threads:
151 ms → 118 ms. Opt out with ``AUDIOSSL_MALLOC_TUNING=0``; a user's own ``MALLOC_*`` variables win.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

M_TRIM_THRESHOLD = -1  # glibc's mallopt parameter numbers (malloc.h)
M_TOP_PAD = -2
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_MAX = 32 * 1024 * 1024  # glibc's ceiling on 64-bit (DEFAULT_MMAP_THRESHOLD_MAX)
TRIM_THRESHOLD = 1024 * 1024 * 1024
TOP_PAD = 256 * 1024 * 1024

_USER_VARS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "LD_PRELOAD")
_done: bool | None = None


def tune_malloc() -> bool:
    """Raise glibc's mmap and trim thresholds for this process; True when they were set.

    A no-op (False) off Linux/glibc, when ``AUDIOSSL_MALLOC_TUNING=0``, or when the user set any of
    ``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TRIM_THRESHOLD_``, ``MALLOC_TOP_PAD_`` or ``LD_PRELOAD`` (an
    allocator of their own). Idempotent.
    """
    global _done
    if _done is not None:
        return _done
    _done = False
    if not sys.platform.startswith("linux") or os.environ.get("AUDIOSSL_MALLOC_TUNING", "1") == "0":
        return False
    if any(os.environ.get(v) for v in _USER_VARS):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and others have no mallopt
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    ok = all(
        mallopt(param, value) == 1
        for param, value in (
            (M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX),
            (M_TRIM_THRESHOLD, TRIM_THRESHOLD),
            (M_TOP_PAD, TOP_PAD),
        )
    )
    _done = ok
    return ok
