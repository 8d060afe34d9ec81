"""The one table of upstream spec schemes: ``load_upstream`` dispatches through it and every
``--help`` that takes a spec lists it (:func:`spec_help`), so the two cannot drift.

Importing this module is cheap (no torch): CLI ``--help`` uses it.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass


@dataclass(frozen=True)
class Scheme:
    usage: str
    """How a spec of this scheme is written, e.g. ``fairseq:<file>``."""
    loader: str
    """``module:function``; the function takes the text after ``<scheme>:`` (the whole spec for
    baselines) and returns an :class:`audiossl.upstream.base.Upstream`."""
    help: str
    whole_spec: bool = False
    """Pass the whole spec (``fbank:64+cmvn``) instead of the part after the colon."""


SCHEMES: dict[str, Scheme] = {
    "hubert": Scheme("<dir> | hubert:<dir>", "audiossl.upstream.load:load_checkpoint_dir",
                     "an audiossl checkpoint directory of any family (HuBERT, WavLM, BEATs, MERT)"),
    "hf": Scheme("hf:<dir>", "audiossl.interop.hf:load_hf_upstream",
                 "a local transformers HuBERT / wav2vec 2.0 / WavLM / data2vec-audio directory"),
    "fairseq": Scheme("fairseq:<file>", "audiossl.interop.fairseq_upstream:load_any_fairseq_upstream",
                      "a fairseq .pt: HuBERT, wav2vec 2.0, WavLM (unilm/s3prl layout), data2vec-audio; no code unpickled"),
    "s3prl": Scheme("s3prl:<name>[:<local ckpt>]", "audiossl.interop.s3prl_upstream:load_s3prl_upstream",
                    "any s3prl upstream that runs from local files, e.g. s3prl:hubert_local:/path/to/hubert.pt"),
    "beats": Scheme("beats:<file>", "audiossl.interop.family_upstreams:load_beats_upstream",
                    "a released BEATs checkpoint (microsoft/unilm layout)"),
    "beats_tokenizer": Scheme("beats_tokenizer:<file>", "audiossl.tokenizers.beats.checkpoint:load_beats_tokenizer_upstream",
                              "a released BEATs tokenizer (microsoft/unilm Tokenizers layout): its encoder's layers"),
    "mert": Scheme("mert:<dir>", "audiossl.interop.family_upstreams:load_mert_upstream",
                   "a released HF-format MERT directory (no trust_remote_code)"),
    "fbank": Scheme("fbank[:<bins>][+cmvn]", "audiossl.upstream.baselines:build_baseline",
                    "Kaldi log-mel filterbank baseline", whole_spec=True),
    "mfcc": Scheme("mfcc[+cmvn]", "audiossl.upstream.baselines:build_baseline",
                   "Kaldi MFCC baseline", whole_spec=True),
}


def split_spec(spec: str) -> tuple[str, str]:
    """``spec`` → ``(scheme, argument for its loader)``; a bare path is the ``hubert`` scheme."""
    head, sep, rest = spec.partition(":")
    base = spec.removesuffix("+cmvn").partition(":")[0]
    if base in ("fbank", "mfcc"):
        return base, spec
    if sep and head in SCHEMES:
        return head, rest
    return "hubert", spec


def resolve(spec: str):
    """``spec`` → ``(scheme name, loader function, loader argument)``."""
    name, arg = split_spec(spec)
    module, func = SCHEMES[name].loader.split(":")
    return name, getattr(importlib.import_module(module), func), arg


def spec_help(sep: str = " | ") -> str:
    """Every scheme's usage, for ``--help`` texts."""
    return sep.join(s.usage for s in SCHEMES.values())


def spec_help_long() -> str:
    """One line per scheme: usage and what it loads."""
    width = max(len(s.usage) for s in SCHEMES.values())
    return "\n".join(f"  {s.usage:<{width}}  {s.help}" for s in SCHEMES.values())
