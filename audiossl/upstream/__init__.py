"""The upstream API: ``load_upstream(spec)`` → a frozen :class:`Upstream` mapping waveforms to
layers (:mod:`.base`, :mod:`.load`, the spec table :mod:`.specs`), the generic encoder wrapper
(:mod:`.encoder`), fbank/MFCC baselines (:mod:`.baselines`) and the engine that runs an upstream
over audio files (:mod:`.engine`).

Importing the package is cheap (``--help`` imports :mod:`.specs`); the names below load on first use.
"""

from __future__ import annotations

import importlib

_LAZY = {"Upstream": "base", "UpstreamOutput": "base", "load_upstream": "load", "EncoderUpstream": "encoder"}
__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
