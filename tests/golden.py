"""Golden loss traces: 4-step traces of tiny deterministic runs, pinned to catch training changes.

A trace must hold on any x86-64 CPU. Kernels differ between machines (ATen's AVX2/AVX-512 paths,
MKL, oneDNN) and with the thread count, so two runs agree only to float rounding (~1e-7 relative);
the pinned tolerance (1e-5) leaves room for that and nothing else. Anything discrete in a run (an
argmin tie, a threshold) must therefore be decided with margin, never by rounding: see
``audiossl.tokenizers.vq.distinct_seeds``. ``tests/test_golden_kernels.py`` reruns every test marked
``golden`` under each kernel choice with 1 and 2 threads.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import torch

THREADS_ENV = "AUDIOSSL_GOLDEN_THREADS"
"""Torch threads a golden run uses (default 1); set by tests/test_golden_kernels.py."""

RTOL = 1e-5
"""Relative tolerance of a pinned trace: float rounding across kernels, not behaviour."""


@contextmanager
def golden_threads() -> Iterator[None]:
    """Run the block with ``$AUDIOSSL_GOLDEN_THREADS`` torch threads (default 1), then restore."""
    before = torch.get_num_threads()
    torch.set_num_threads(int(os.environ.get(THREADS_ENV, "1")))
    try:
        yield
    finally:
        torch.set_num_threads(before)
