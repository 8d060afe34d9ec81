"""ASR decoding and scoring: the Kneser-Ney ARPA writer (hand-checked), LM load errors, the lexicon + LM
beam search turning a greedy error into the right word, and jiwer WER/CER against hand-computed cases."""

from __future__ import annotations

import itertools
import random

import pytest
import torch

from audiossl.eval.ctc_decode import (DecodeConfig, LexiconLMDecoder, build_lexicon, char_errors, greedy,
                                      read_lexicon, word_errors)
from audiossl.eval.lm import (ArpaLM, LMError, arpa_unigrams, check_lm, train_kneser_ney, transcript_lm,
                              write_arpa)


def test_kneser_ney_bigram_hand_checked(tmp_path):
    # <s> a b </s> ×2, <s> b </s>.  Bigram counts: <s>a 2, ab 2, b</s> 3, <s>b 1 → D2 = n1/(n1+2n2) = 1/5.
    # Unigram continuation counts: a 1 ({<s>}), b 2 ({a,<s>}), </s> 1 → D1 = 2/(2+2·1) = 0.5, total 4,
    # γ1 = 0.5·3/4; p1(w) = (N1+(•w) − D1)/4 + γ1/|V|, |V| = 4 (a, b, </s>, <unk>).
    lm = ArpaLM(write_arpa(train_kneser_ney([["a", "b"], ["a", "b"], ["b"]], order=2), tmp_path / "t.arpa"))
    p = lambda w, *ctx: 10 ** lm.logprob(w, ctx)  # noqa: E731
    g1 = 0.5 * 3 / 4
    assert p("a") == pytest.approx(0.5 / 4 + g1 / 4, abs=1e-5)  # 0.21875
    assert p("b") == pytest.approx(1.5 / 4 + g1 / 4, abs=1e-5)  # 0.46875
    assert p("<unk>") == pytest.approx(g1 / 4, abs=1e-5)
    assert p("zzz") == pytest.approx(g1 / 4, abs=1e-5)  # unseen words are <unk>
    # context <s>: a(<s>•) = 3, 2 types → γ = 0.2·2/3
    assert p("a", "<s>") == pytest.approx(1.8 / 3 + 0.2 * 2 / 3 * 0.21875, abs=1e-5)
    assert p("b", "<s>") == pytest.approx(0.8 / 3 + 0.2 * 2 / 3 * 0.46875, abs=1e-5)
    assert p("b", "a") == pytest.approx(1.8 / 2 + 0.1 * 0.46875, abs=1e-5)
    # unseen bigram b a: back-off weight of b (γ(b) = 0.2·1/3) times p1(a)
    assert lm.bow[("b",)] == pytest.approx(__import__("math").log10(0.2 / 3), abs=1e-6)
    assert p("a", "b") == pytest.approx(0.2 / 3 * 0.21875, abs=1e-6)


def test_kneser_ney_trigram_distributions_normalise(tmp_path):
    rng = random.Random(0)
    words = "the cat dog sat ran on a mat".split()
    sents = [[rng.choice(words) for _ in range(rng.randint(1, 6))] for _ in range(60)]
    model = train_kneser_ney(sents, order=3)
    assert all(0 < d < 1 for d in model["discounts"])
    lm = ArpaLM(write_arpa(model, tmp_path / "t3.arpa"))
    vocab = [w for w in lm.vocab if w != "<s>"]
    contexts = [()] + [(w,) for w in lm.vocab] + list(itertools.product(["<s>", "the", "cat", "mat"], ["the", "sat", "a"]))
    for ctx in contexts:
        assert sum(10 ** lm.logprob(w, ctx) for w in vocab) == pytest.approx(1.0, abs=1e-4), ctx
    check_lm(tmp_path / "t3.arpa")  # KenLM reads it
    assert set(arpa_unigrams(tmp_path / "t3.arpa")) == set(words)


def test_transcript_lm_from_letters(tmp_path):
    (tmp_path / "train.ltr").write_text("T H E | C A T |\nA | C A T |\n")
    lm = ArpaLM(transcript_lm(tmp_path / "train.ltr", tmp_path / "lm.arpa"))
    assert set(lm.vocab) == {"<s>", "</s>", "<unk>", "THE", "CAT", "A"}


def test_bad_lm_files_name_the_file(tmp_path):
    with pytest.raises(LMError, match="no such file"):
        check_lm(tmp_path / "missing.arpa")
    bad = tmp_path / "broken.arpa"
    bad.write_text("this is not an ARPA file\n")
    with pytest.raises(LMError, match="broken.arpa"):
        check_lm(bad)
    with pytest.raises(LMError, match="broken.arpa"):
        ArpaLM(bad)


VOCAB = ["A", "B", "C", "E", "H", "T", "|"]


def _emissions(frames: list[dict[str, float]]) -> torch.Tensor:
    x = torch.full((len(frames), len(VOCAB) + 1), 1e-4)
    for f, d in enumerate(frames):
        for t, p in d.items():
            x[f, VOCAB.index(t) + 1] = p
        x[f, 0] += max(0.0, 1.0 - float(x[f].sum()))
    return (x / x.sum(-1, keepdim=True)).log()[None]


# "THE CA?" where the last letter is B (0.5) over T (0.4): greedy reads CAB
FRAMES = [{"T": .9}, {"H": .9}, {"E": .9}, {"|": .9}, {"C": .9}, {"A": .9}, {"B": .5, "T": .4}, {"|": .9}]


def test_lexicon_and_lm_turn_a_greedy_error_into_the_right_word(tmp_path):
    e, n = _emissions(FRAMES), torch.tensor([len(FRAMES)])
    hyp_greedy = "".join(VOCAB[k - 1] for k in greedy(e[0], len(FRAMES))).replace("|", " ").split()
    assert hyp_greedy == ["THE", "CAB"]
    lm = write_arpa(train_kneser_ney([["THE", "CAT"]] * 5 + [["A", "CAB"]], 3), tmp_path / "lm.arpa")
    # 1) lexicon constraint alone (LM weight 0): CAB is not a word of the lexicon
    only = LexiconLMDecoder(VOCAB, build_lexicon(["THE", "CAT"], VOCAB), lm, tmp_path, DecodeConfig(lm_weight=0.0))
    assert only(e, n) == [["THE", "CAT"]]
    # 2) both words in the lexicon: acoustics alone pick CAB, the LM ("THE CAT" seen 5×) picks CAT
    lex = build_lexicon(["THE", "CAT", "CAB", "A"], VOCAB)
    assert LexiconLMDecoder(VOCAB, lex, lm, tmp_path, DecodeConfig(lm_weight=0.0))(e, n) == [["THE", "CAB"]]
    hyp_lm = LexiconLMDecoder(VOCAB, lex, lm, tmp_path, DecodeConfig(lm_weight=1.0))(e, n)
    assert hyp_lm == [["THE", "CAT"]]
    ref = [["THE", "CAT"]]
    assert word_errors(ref, [hyp_greedy])[0].sum() == 1 and word_errors(ref, hyp_lm)[0].sum() == 0


def test_lexicon_file_and_letters(tmp_path):
    assert build_lexicon(["CAT", "DOG", ""], VOCAB) == {"CAT": ["C", "A", "T", "|"]}  # D, O, G not letters
    (tmp_path / "lex.txt").write_text("BAT\tB A T |\nHAT H A T\nDOG D O G |\n")
    assert read_lexicon(tmp_path / "lex.txt", VOCAB) == {"BAT": ["B", "A", "T", "|"], "HAT": ["H", "A", "T", "|"]}


def test_wer_cer_hand_computed():
    refs = [["THE", "CAT", "SAT"], ["A"], []]
    hyps = [["THE", "BAT"], ["A", "B"], ["X"]]
    e, n = word_errors(refs, hyps)
    # THE CAT SAT → THE BAT: 1 substitution + 1 deletion; A → A B: 1 insertion; empty ref: 1 insertion
    assert e.tolist() == [2, 1, 1] and n.tolist() == [3, 1, 0]
    assert 100 * e.sum() / n.sum() == pytest.approx(100.0)
    # CER over space-joined words: "THE CAT" (7 chars) vs "THE CA": 1 deletion; "AB" vs "BA": 2 edits
    e, n = char_errors([["THE", "CAT"], ["AB"]], [["THE", "CA"], ["BA"]])
    assert e.tolist() == [1, 2] and n.tolist() == [7, 2]
