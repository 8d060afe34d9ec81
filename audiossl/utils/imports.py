"""First imports that two threads may race for, under one process-wide lock.

torchaudio's package ``__init__`` imports its submodules in a cycle (``pipelines`` → ``transforms``).
When two threads import it for the first time at once, one of them sees the other's partially
initialised ``torchaudio.transforms`` (``ImportError: cannot import name 'GriffinLim'``) or Python's
module-lock deadlock detector fires. audiossl decodes audio on a background thread
(:func:`audiossl.upstream.engine.prefetched`: resampling needs ``torchaudio.transforms``) while the
main thread runs a model (the BEATs fbank needs ``torchaudio.compliance.kaldi``), and either may be
the process's first torchaudio user. Every lazy torchaudio import in audiossl goes through
:func:`import_module`, so those first imports happen one at a time.
"""

from __future__ import annotations

import importlib
import threading
from types import ModuleType

_LOCK = threading.RLock()


def import_module(name: str) -> ModuleType:
    """``importlib.import_module(name)`` while holding the process-wide import lock."""
    with _LOCK:
        return importlib.import_module(name)
