"""``fairseq:<file>``: one entry point for every fairseq speech encoder we read.

HuBERT and WavLM go onto our own encoders (:mod:`audiossl.models.hubert.fairseq`,
:mod:`audiossl.models.wavlm.fairseq`); wav2vec 2.0 and data2vec-audio onto transformers' models
(:mod:`audiossl.interop.fairseq_w2v`), wrapped by :func:`audiossl.interop.hf.hf_upstream_from_model`
(wav2vec 2.0 then runs on our encoder too).
"""

from __future__ import annotations

from pathlib import Path

from audiossl.interop.fairseq_w2v import unwrap_finetuned, detect_kind, load_fairseq_hf_model
from audiossl.interop.hf import hf_upstream_from_model
from audiossl.models.fairseq_io import read_fairseq_checkpoint
from audiossl.models.hubert.fairseq import load_fairseq_hubert
from audiossl.models.wavlm.fairseq import load_fairseq_wavlm
from audiossl.upstream.encoder import EncoderUpstream


def load_any_fairseq_upstream(path: str | Path):
    """``fairseq:<file>`` → an :class:`audiossl.upstream.base.Upstream` for the model the file holds."""
    ck = read_fairseq_checkpoint(path)
    kind = detect_kind(*unwrap_finetuned(ck["model_cfg"], ck["model"]))
    if kind == "hubert":
        return load_fairseq_upstream(path)
    if kind == "wavlm":
        model, normalize = load_fairseq_wavlm(path)
        return EncoderUpstream(model, name=f"fairseq:{path}", normalize=normalize)
    model, normalize = load_fairseq_hf_model(path)
    return hf_upstream_from_model(model, name=f"fairseq:{path}", normalize=normalize)


def load_fairseq_upstream(path: str | Path):
    """``fairseq:<file>`` spec → :class:`audiossl.upstream.encoder.EncoderUpstream` (task ``normalize`` honoured)."""
    model, task_cfg = load_fairseq_hubert(path)
    return EncoderUpstream(model, name=f"fairseq:{path}", normalize=bool(task_cfg.get("normalize", False)))
