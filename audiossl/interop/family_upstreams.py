"""The ``beats:<file>`` and ``mert:<dir>`` upstream specs: a released BEATs / MERT checkpoint, read by
its family's importer (:mod:`audiossl.models.beats.checkpoint`, :mod:`audiossl.models.mert.hf`) and
wrapped as an :class:`~audiossl.upstream.encoder.EncoderUpstream`. They live here, not in the family
rooms, because they need ``upstream`` (which sits above ``models``).
"""

from __future__ import annotations

from pathlib import Path

from audiossl.models.beats.checkpoint import load_beats_model
from audiossl.models.mert.hf import load_mert_model
from audiossl.upstream.encoder import EncoderUpstream


def load_beats_upstream(path: str | Path) -> EncoderUpstream:
    """``beats:<file>`` upstream spec: a released BEATs checkpoint as an :class:`EncoderUpstream`."""
    return EncoderUpstream(load_beats_model(path), name=f"beats:{path}")


def load_mert_upstream(directory: str | Path) -> EncoderUpstream:
    """``mert:<dir>`` upstream spec: a released HF-format MERT directory as an :class:`EncoderUpstream`."""
    model, normalize = load_mert_model(directory)
    return EncoderUpstream(model, name=f"mert:{directory}", normalize=normalize)
