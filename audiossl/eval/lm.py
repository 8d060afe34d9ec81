"""Word n-gram language models for CTC beam search: an ARPA writer, a small ARPA reader, a load check.

:func:`train_kneser_ney` estimates an **interpolated Kneser-Ney** model (Chen & Goodman 1998, §3;
one absolute discount per order, ``D_n = n1 / (n1 + 2 n2)`` from that order's count-of-counts, 0.5
when ``n1`` or ``n2`` is zero) from tokenised sentences, with the conventions of KenLM's ``lmplz``:

* every sentence is ``<s> w1 … wk </s>``; the highest order uses raw counts, lower orders use
  continuation counts ``N1+(• g)`` (how many distinct words precede ``g``), except n-grams that
  start with ``<s>`` (nothing can precede them), which keep their raw counts;
* ``p_n(w | h) = max(a(h w) − D_n, 0) / a(h •) + γ(h) · p_{n−1}(w | h[1:])`` with
  ``γ(h) = D_n · |{w : a(h w) > 0}| / a(h •)``; unigrams interpolate with the uniform distribution
  over the vocabulary (all words, ``</s>`` and ``<unk>``; not ``<s>``, which gets log10 p = −99);
* the interpolated probabilities of seen n-grams are written as ARPA probabilities and ``γ(h)`` as the
  back-off weight of context ``h``, so the ARPA back-off rule reproduces the interpolated model
  exactly and every conditional distribution sums to one.

The ARPA file loads in KenLM (what torchaudio's ``ctc_decoder`` uses), SRILM and pyctcdecode. Users
with their own model (LibriSpeech's 4-gram, ARPA or KenLM binary) pass it with ``--lm`` instead.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from pathlib import Path
from typing import Iterable, Sequence

from audiossl.utils.fileio import atomic_write_text

BOS, EOS, UNK = "<s>", "</s>", "<unk>"


class LMError(ValueError):
    """A language model file that cannot be used (names the file)."""


def _discount(counts: Iterable[int]) -> float:
    cc = Counter(counts)
    n1, n2 = cc.get(1, 0), cc.get(2, 0)
    return n1 / (n1 + 2 * n2) if n1 > 0 and n2 > 0 else 0.5


def train_kneser_ney(sentences: Iterable[Sequence[str]], order: int = 3) -> dict:
    """Interpolated Kneser-Ney n-gram model of ``sentences`` (lists of words).

    Returns ``{"order", "prob": {ngram: log10 p}, "bow": {ngram: log10 γ}, "discounts": [D_1..D_N]}``
    with n-grams as tuples; :func:`write_arpa` writes it.
    """
    if order < 1:
        raise ValueError(f"order must be ≥ 1, got {order}")
    raw: list[Counter] = [Counter() for _ in range(order + 1)]
    nsent = 0
    for s in sentences:
        if not s:
            continue
        toks = [BOS, *s, EOS]
        nsent += 1
        for n in range(1, order + 1):
            for i in range(len(toks) - n + 1):
                raw[n][tuple(toks[i : i + n])] += 1
    if nsent == 0:
        raise ValueError("cannot estimate a language model from 0 non-empty sentences")
    # adjusted counts: raw at the highest order and for n-grams starting with <s>, else continuation counts
    adj: list[Counter] = [Counter() for _ in range(order + 1)]
    adj[order] = Counter(raw[order])
    for n in range(order - 1, 0, -1):
        for g in raw[n + 1]:
            adj[n][g[1:]] += 1
        for g, c in raw[n].items():
            if g[0] == BOS:
                adj[n][g] = c
    adj[1].pop((BOS,), None)
    prob: dict[tuple, float] = {}
    bow: dict[tuple, float] = {}
    discounts = []
    # unigrams: interpolated with the uniform distribution over the vocabulary
    vocab = sorted({g[0] for g in adj[1]} | {EOS, UNK})
    d1 = _discount(adj[1].values())
    total = sum(adj[1].values())
    gamma = d1 * len(adj[1]) / total
    p1 = {w: max(adj[1].get((w,), 0) - d1, 0.0) / total + gamma / len(vocab) for w in vocab}
    discounts.append(d1)
    lin: dict[tuple, float] = {(w,): p for w, p in p1.items()}
    for n in range(2, order + 1):
        dn = _discount(adj[n].values())
        discounts.append(dn)
        ctx_total: dict[tuple, int] = defaultdict(int)
        ctx_types: dict[tuple, int] = defaultdict(int)
        for g, c in adj[n].items():
            ctx_total[g[:-1]] += c
            ctx_types[g[:-1]] += 1
        gam = {h: dn * ctx_types[h] / ctx_total[h] for h in ctx_total}
        for g, c in adj[n].items():
            lower = lin[g[1:]]  # seen: every suffix of a seen n-gram is a seen (n−1)-gram
            lin[g] = max(c - dn, 0.0) / ctx_total[g[:-1]] + gam[g[:-1]] * lower
        for h, v in gam.items():
            bow[h] = math.log10(v) if v > 0 else -99.0
    for g, p in lin.items():
        prob[g] = math.log10(p)
    prob[(BOS,)] = -99.0
    return {"order": order, "prob": prob, "bow": bow, "discounts": discounts}


def write_arpa(model: dict, path: str | Path) -> Path:
    """Write :func:`train_kneser_ney`'s model as an ARPA text file (atomically)."""
    order = model["order"]
    by_n: dict[int, list[tuple]] = defaultdict(list)
    for g in model["prob"]:
        by_n[len(g)].append(g)
    lines = ["", "\\data\\"] + [f"ngram {n}={len(by_n[n])}" for n in range(1, order + 1)]
    for n in range(1, order + 1):
        lines += ["", f"\\{n}-grams:"]
        for g in sorted(by_n[n]):
            row = f"{model['prob'][g]:.6f}\t{' '.join(g)}"
            if n < order and g in model["bow"]:
                row += f"\t{model['bow'][g]:.6f}"
            lines.append(row)
    lines += ["", "\\end\\", ""]
    path = Path(path)
    atomic_write_text(path, "\n".join(lines))
    return path


class ArpaLM:
    """A small ARPA reader with the back-off rule (for checks and tests, not for decoding speed)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.prob: dict[tuple, float] = {}
        self.bow: dict[tuple, float] = {}
        self.order = 0
        section = 0
        try:
            text = self.path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise LMError(f"language model {self.path}: cannot be read as an ARPA text file ({e})") from None
        if "\\data\\" not in text:
            raise LMError(f"language model {self.path}: not an ARPA file (no \\data\\ section)")
        for lineno, line in enumerate(text.splitlines(), start=1):
            line = line.strip()
            if not line or line.startswith("ngram ") or line == "\\data\\" or line == "\\end\\":
                continue
            if line.startswith("\\") and line.endswith("-grams:"):
                section = int(line[1:].split("-")[0])
                self.order = max(self.order, section)
                continue
            parts = line.split()
            if section == 0 or len(parts) < section + 1:
                raise LMError(f"language model {self.path}:{lineno}: malformed ARPA line {line!r}")
            g = tuple(parts[1 : 1 + section])
            try:
                self.prob[g] = float(parts[0])
                if len(parts) > section + 1:
                    self.bow[g] = float(parts[section + 1])
            except ValueError:
                raise LMError(f"language model {self.path}:{lineno}: malformed ARPA line {line!r}") from None
        if self.order == 0:
            raise LMError(f"language model {self.path}: no n-gram sections")

    @property
    def vocab(self) -> list[str]:
        return [g[0] for g in self.prob if len(g) == 1]

    def logprob(self, word: str, context: Sequence[str] = ()) -> float:
        """log10 p(word | context) by the ARPA back-off rule (last ``order − 1`` context words)."""
        ctx = tuple(context)[-(self.order - 1) :] if self.order > 1 else ()
        w = word if (word,) in self.prob else UNK
        backoff = 0.0
        while True:
            if ctx + (w,) in self.prob:
                return backoff + self.prob[ctx + (w,)]
            if not ctx:
                return backoff + self.prob.get((w,), -99.0)
            backoff += self.bow.get(ctx, 0.0)
            ctx = ctx[1:]


def check_lm(path: str | Path) -> Path:
    """Load ``path`` (ARPA text or KenLM binary) with KenLM as the decoder will; :class:`LMError` if it fails."""
    path = Path(path)
    if not path.is_file():
        raise LMError(f"language model {path}: no such file (pass an ARPA or KenLM binary file to --lm)")
    try:
        from flashlight.lib.text.decoder.kenlm import KenLM  # lazy: flashlight-text; only LM decoding needs it
        from flashlight.lib.text.dictionary import create_word_dict  # lazy: flashlight-text; only LM decoding needs it
    except ImportError as e:  # pragma: no cover - flashlight-text is a dependency
        raise LMError(f"language model {path}: KenLM decoding needs flashlight-text (pip install flashlight-text): {e}") from None
    try:
        KenLM(str(path), create_word_dict({UNK: [[UNK]]}))
    except Exception as e:  # KenLM raises RuntimeError with its own message
        raise LMError(f"language model {path}: KenLM cannot load it as an ARPA or binary model ({str(e).strip()[:300]})") from None
    return path


def arpa_unigrams(path: str | Path) -> list[str]:
    """The words of an ARPA file's 1-gram section (read up to ``\\2-grams:``); [] for a KenLM binary."""
    words: list[str] = []
    try:
        with open(path, encoding="utf-8") as f:
            in_uni = seen_data = False
            for line in f:
                line = line.strip()
                if not seen_data:
                    if not line:
                        continue
                    if line != "\\data\\":
                        return []
                    seen_data = True
                elif line.startswith("\\1-grams"):
                    in_uni = True
                elif line.startswith("\\"):
                    if in_uni:
                        break
                elif in_uni and line:
                    parts = line.split()
                    if len(parts) >= 2 and parts[1] not in (BOS, EOS, UNK):
                        words.append(parts[1])
    except (OSError, UnicodeDecodeError):
        return []
    return words


def transcript_lm(label_file: str | Path, out: str | Path, order: int = 3) -> Path:
    """The interpolated Kneser-Ney ``order``-gram of a fairseq ``.ltr`` (letters, ``|`` between words)
    or ``.wrd`` transcript file, written as ARPA to ``out``."""
    label_file = Path(label_file)
    lines = label_file.read_text(encoding="utf-8").splitlines()
    if label_file.suffix == ".ltr":
        sents = ["".join(" " if t == "|" else t for t in l.split()).split() for l in lines]
    else:
        sents = [l.split() for l in lines]
    return write_arpa(train_kneser_ney(sents, order), out)
