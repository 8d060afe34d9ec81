"""CTC decoding of character emissions: greedy (best path) and lexicon-constrained beam search + word LM.

The beam search is torchaudio's :func:`torchaudio.models.decoder.ctc_decoder` (flashlight-text's
``LexiconDecoder`` with KenLM): hypotheses may only spell words of the lexicon, and each word is
scored by the n-gram LM, ``score = log p_ctc + lm_weight · log p_lm + word_score · #words``.
Token 0 of the emissions is the CTC blank; ``|`` is the fairseq word boundary (``.ltr`` labels).

WER and CER are computed with jiwer on space-joined words. CER counts the spaces between words as
characters (jiwer's and s3prl's definition).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch

from audiossl.eval.lm import UNK, LMError, check_lm
from audiossl.utils.fileio import atomic_write_text
from audiossl.utils.imports import import_module

BLANK = "<blank>"
BOUNDARY = "|"


def greedy(logits: torch.Tensor, length: int) -> list[int]:
    """Best path of one utterance ``[frame, vocab]``: argmax, merge repeats, drop blanks (index 0)."""
    seq = torch.unique_consecutive(logits[:length].argmax(-1)).tolist()
    return [k for k in seq if k != 0]


def build_lexicon(words: Iterable[str], letters: Sequence[str]) -> dict[str, list[str]]:
    """``word → [letters…, "|"]`` for every word spelled only with ``letters`` (others are left out)."""
    have = set(letters)
    return {w: [*w, BOUNDARY] for w in sorted(set(words)) if w and all(c in have for c in w)}


def read_lexicon(path: str | Path, letters: Sequence[str]) -> dict[str, list[str]]:
    """A flashlight/torchaudio lexicon file (``word<TAB>t o k e n s |``) restricted to ``letters``."""
    have, out = set(letters), {}
    for lineno, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        spelling = parts[1:] or [*parts[0], BOUNDARY]
        if spelling[-1] != BOUNDARY:
            spelling.append(BOUNDARY)
        if all(t in have for t in spelling):
            out.setdefault(parts[0], spelling)
    if not out:
        raise LMError(f"lexicon {path}: no word is spelled with this task's letters ({' '.join(sorted(have))})")
    return out


def write_lexicon(lexicon: dict[str, list[str]], path: str | Path) -> Path:
    atomic_write_text(Path(path), "".join(f"{w}\t{' '.join(s)}\n" for w, s in lexicon.items()))
    return Path(path)


@dataclass
class DecodeConfig:
    lm: str | None = None
    """ARPA or KenLM binary word LM; None = the task's own 3-gram estimated from the training transcripts"""
    lexicon: str | None = None
    """extra lexicon file (``word<TAB>letters |``); the training words are always in the lexicon"""
    lm_weight: float = 2.0
    word_score: float = 0.0
    beam_size: int = 50
    beam_threshold: float = 25.0


class LexiconLMDecoder:
    """Beam search constrained to ``lexicon`` words with the word LM at ``lm_path``.

    ``vocab`` are the CTC output tokens 1..V (index 0 is the blank) and must contain ``|``.
    """

    def __init__(self, vocab: Sequence[str], lexicon: dict[str, list[str]], lm_path: str | Path, workdir: str | Path,
                 cfg: DecodeConfig | None = None) -> None:
        ctc_decoder = import_module("torchaudio.models.decoder").ctc_decoder  # lazy (import lock): flashlight-text decoder; only LM decoding needs it

        cfg = cfg or DecodeConfig()
        if BOUNDARY not in vocab:
            raise LMError(f"lexicon decoding needs the word boundary token '{BOUNDARY}' among the letters")
        if not lexicon:
            raise LMError("lexicon decoding needs at least one word spelled with this task's letters")
        check_lm(lm_path)
        lex = write_lexicon(lexicon, Path(workdir) / "lexicon.txt")
        self.decoder = ctc_decoder(lexicon=str(lex), tokens=[BLANK, *vocab], lm=str(lm_path), nbest=1,
                                   beam_size=cfg.beam_size, beam_threshold=cfg.beam_threshold, lm_weight=cfg.lm_weight,
                                   word_score=cfg.word_score, sil_score=0.0, blank_token=BLANK, sil_token=BOUNDARY,
                                   unk_word=UNK)

    def __call__(self, logprobs: torch.Tensor, lengths: torch.Tensor) -> list[list[str]]:
        """``[batch, frame, 1 + V]`` log-probabilities (CPU) → the best word sequence per utterance."""
        hyps = self.decoder(logprobs.float().cpu().contiguous(), lengths.cpu().to(torch.int32))
        return [list(h[0].words) if h else [] for h in hyps]


def word_errors(refs: Sequence[Sequence[str]], hyps: Sequence[Sequence[str]]) -> tuple[np.ndarray, np.ndarray]:
    """Per utterance ``(word edits S+D+I, reference words)`` from jiwer (corpus WER = Σ edits / Σ words)."""
    return _errors(refs, hyps, chars=False)


def char_errors(refs: Sequence[Sequence[str]], hyps: Sequence[Sequence[str]]) -> tuple[np.ndarray, np.ndarray]:
    """Per utterance ``(character edits, reference characters)`` of the space-joined words, from jiwer."""
    return _errors(refs, hyps, chars=True)


def _errors(refs, hyps, chars: bool) -> tuple[np.ndarray, np.ndarray]:
    import jiwer  # lazy: only WER/CER need it

    if len(refs) != len(hyps):
        raise ValueError(f"{len(refs)} references but {len(hyps)} hypotheses")
    edits, lens = np.zeros(len(refs)), np.zeros(len(refs))
    for i, (r, h) in enumerate(zip(refs, hyps)):
        rs, hs = " ".join(r), " ".join(h)
        n = len(rs) if chars else len(r)
        if n == 0:  # jiwer refuses empty references: every hypothesis token is an insertion
            edits[i] = len(hs) if chars else len(h)
            continue
        o = (jiwer.process_characters if chars else jiwer.process_words)(rs, hs)
        edits[i], lens[i] = o.substitutions + o.deletions + o.insertions, n
    return edits, lens
