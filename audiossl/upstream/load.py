"""``load_upstream(spec)``: a spec (see :mod:`audiossl.upstream.specs`) → a frozen :class:`Upstream`.

An audiossl checkpoint directory of a model family (HuBERT, WavLM, BEATs, MERT) is read by its family's
``load_encoder`` and wrapped generically (:class:`~audiossl.upstream.encoder.EncoderUpstream`);
a tokenizer family's checkpoint (BEATs tokenizer, RVQ-VAE) brings its own ``build_upstream``.
"""

from __future__ import annotations

from pathlib import Path

import torch

from audiossl.models.checkpoint import read_meta
from audiossl.models.families import get_family
from audiossl.upstream.base import Upstream
from audiossl.upstream.encoder import EncoderUpstream
from audiossl.upstream.specs import resolve, spec_help


def load_checkpoint_dir(spec: str) -> Upstream:
    """An audiossl checkpoint directory (``<dir>`` / ``hubert:<dir>``) → its family's upstream."""
    path = Path(spec)
    if not path.exists():
        raise FileNotFoundError(f"upstream {spec!r}: no such checkpoint directory. Valid specs: {spec_help()}")
    if path.is_file():
        raise ValueError(f"upstream {spec!r} is a file; for a fairseq checkpoint use 'fairseq:{spec}'")
    meta = read_meta(path, family=None, check_version=False)
    name = str(meta.get("family", "hubert"))
    family = get_family(name)
    if hasattr(family, "build_upstream"):  # tokenizer families: their own output layout
        return family.build_upstream(path, meta)
    # waveform normalisation (fairseq task ``normalize``) travels in the checkpoint's "extra"
    normalize = bool((meta.get("extra") or {}).get("normalize", False))
    return EncoderUpstream(family.load_encoder(path), name=f"{name}:{path}", normalize=normalize)


def load_upstream(spec: str, device: str | torch.device = "cpu") -> Upstream:
    """Build a frozen, eval-mode upstream from ``spec`` (see module docstring) on ``device``.

    Dispatch goes through the one scheme table, :data:`audiossl.upstream.specs.SCHEMES`."""
    _, loader, arg = resolve(str(spec))
    up: Upstream = loader(arg)
    return up.to(device).eval()
