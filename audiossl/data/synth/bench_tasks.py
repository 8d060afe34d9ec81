"""Demo data for the IC, SD and beat-tracking bench tasks (opt-in ``audiossl synth --tasks``).

* ``intents`` — Fluent-Speech-Commands-style spoken commands (eSpeak): each utterance carries an
  (action, object, location) triple; ``.lbl`` is ``action|object|location`` (the full intent, which
  is what SUPERB IC scores), plus ``.action``, ``.object``, ``.location`` and ``.wrd``.
* ``conversations`` — two-speaker conversations: eSpeak turns of two seen speakers placed one
  after another with gaps and overlaps (about a third of the turn changes overlap). ``.seg``
  holds the speech-activity segments, ``start:end:speaker`` tokens in seconds, so the frame
  labels can be drawn at any upstream frame rate; ``rttm/<split>.rttm`` has the same in RTTM (not beside the
  manifest, where every ``<split>.*`` file is read as a one-line-per-row label file).
* ``qbe`` — query by example: isolated spoken keywords (``<split>_queries.tsv``, ``.kw`` = the
  keyword) and search documents, sentences of other speakers with one of the keywords inserted
  or none (``<split>.tsv``, ``.kw`` = the keywords spoken, ``none`` for none, plus ``.wrd``). Only
  ``valid`` and ``test``: QbE trains nothing, dev picks the layer.
* ``music_beats`` — rendered 4/4 MIDI grooves at 70-160 BPM with a random phase; ``.beats`` are
  the exact beat times in seconds (known from the tempo), ``.downbeats`` every fourth beat.
* ``music_genre`` — 5-s clips of eight synthesized styles (:mod:`.styles`: instrumentation x tempo x
  harmony x groove, overlapping); ``.lbl`` is the style, ``.bpm`` its tempo. The GTZAN layout.
* ``music_tagging`` — 4-s mixtures of 1-3 instruments of distinct families (:mod:`.mixtures`);
  ``.tags`` are the families rendered (comma-separated), ``.programs`` their GM programs in the
  same order, ``tags.txt`` the tag set. The MagnaTagATune preparer's layout.

Sizes live in :data:`SIZES` (per split: train, valid, test), small enough that ``small`` renders
in seconds on two cores.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np

from audiossl.data.synth import text

SPLITS = ("train", "valid", "test")


@dataclass(frozen=True)
class BenchSizes:
    intent_utts: tuple[int, int, int]
    """utterances per intent"""
    conversations: tuple[int, int, int]
    beat_clips: tuple[int, int, int]
    qbe_keywords: int = 8
    """keywords of the QbE set (the first n of :data:`QBE_KEYWORDS`)"""
    qbe_queries: int = 2
    """queries per keyword and split (valid, test)"""
    qbe_docs: int = 40
    """search documents per split (valid, test); three in four contain a keyword"""
    genre_clips: tuple[int, int, int] = (2, 1, 1)
    """5-s clips per style (8 styles) and split"""
    tag_clips: tuple[int, int, int] = (12, 6, 6)
    """4-s mixtures per split"""


# music_genre small: 36 test clips x 8 styles = 288; at an accuracy of 75 % the 95 % interval is
# +-1.96 * sqrt(0.75 * 0.25 / 288) = +-5.0 points (+-5.8 at the worst case, 50 %; +-4.1 at 85 %).
# music_tagging small: 240 test clips (about 48 positives per tag); measured with the FBANK row
# (macro ROC-AUC 83.4): 95 % interval [81.3, 85.6], about +-2.1 points. FBANK genre: 76.7 [71.9, 81.6].
SIZES = {
    "tiny": BenchSizes((2, 1, 1), (4, 2, 2), (4, 2, 2), 3, 1, 8),
    "small": BenchSizes((8, 2, 2), (40, 8, 8), (40, 10, 10), 8, 2, 40, (40, 10, 36), (320, 80, 240)),
    "full": BenchSizes((60, 10, 10), (300, 40, 40), (300, 50, 50), 12, 10, 400, (150, 25, 50), (2000, 300, 600)),
}

# -- intents (Fluent Speech Commands' slot values) ------------------------------------------------

_LOC = {"kitchen": "in the kitchen", "bedroom": "in the bedroom", "washroom": "in the washroom"}
# (action, object, location) → phrasings; "{loc}" is filled from _LOC (empty for "none").
_TEMPLATES: dict[tuple[str, str], tuple[str, ...]] = {
    ("activate", "lights"): ("turn on the lights {loc}", "switch on the lights {loc}", "lights on {loc}"),
    ("deactivate", "lights"): ("turn off the lights {loc}", "switch off the lights {loc}", "lights off {loc}"),
    ("increase", "heat"): ("turn the heat up {loc}", "make it warmer {loc}", "increase the temperature {loc}"),
    ("decrease", "heat"): ("turn the heat down {loc}", "make it cooler {loc}", "decrease the temperature {loc}"),
    ("increase", "volume"): ("turn up the volume", "make it louder", "increase the volume"),
    ("decrease", "volume"): ("turn down the volume", "make it quieter", "decrease the volume"),
    ("activate", "music"): ("play the music", "put on some music", "start the music"),
    ("deactivate", "music"): ("stop the music", "turn the music off", "pause the music"),
    ("bring", "newspaper"): ("bring me the newspaper", "get me the newspaper", "fetch the newspaper"),
    ("bring", "shoes"): ("bring me my shoes", "get me my shoes", "fetch my shoes"),
    ("change language", "German"): ("switch the language to german", "change the language to german", "use german"),
    ("change language", "Korean"): ("switch the language to korean", "change the language to korean", "use korean"),
}
_LOCATED = {("activate", "lights"): ("none", "kitchen", "bedroom"), ("deactivate", "lights"): ("none", "kitchen", "bedroom"),
            ("increase", "heat"): ("none", "washroom"), ("decrease", "heat"): ("none", "washroom")}
INTENTS: list[tuple[str, str, str]] = [
    (a, o, loc) for (a, o) in _TEMPLATES for loc in _LOCATED.get((a, o), ("none",))
]


def intent_label(action: str, obj: str, location: str) -> str:
    """The full intent as one class: ``action|object|location`` (FSC slot values)."""
    return f"{action}|{obj}|{location}"


def intent_text(action: str, obj: str, location: str, rng: random.Random) -> str:
    phrase = rng.choice(_TEMPLATES[(action, obj)])
    return " ".join(phrase.format(loc=_LOC.get(location, "")).split())


# -- conversations --------------------------------------------------------------------------------


def conversation_plan(rng: random.Random) -> list[dict]:
    """Turns of a two-speaker conversation: ``[{"who": 0|1, "text", "gap"}]``; ``gap`` seconds
    from the end of the previous turn to the start of this one (negative = overlap)."""
    turns = []
    who = rng.randrange(2)
    for k in range(rng.randint(3, 5)):
        change = k > 0 and who != turns[-1]["who"]
        # only a change of speaker may overlap: nobody talks over themselves
        gap = 0.0 if k == 0 else (rng.uniform(-0.8, -0.2) if change and rng.random() < 0.4 else rng.uniform(0.1, 0.6))
        turns.append({"who": who, "text": " ".join(text.sentence(rng, 3, 6)), "gap": round(gap, 3)})
        who = 1 - who if rng.random() < 0.85 else who
    return turns


def mix_conversation(turn_audio: list[np.ndarray], turn_regions: list[tuple[int, int]], turns: list[dict],
                     speakers: list[str], rate: int, lead: float = 0.3, tail: float = 0.3,
                     gains: tuple[float, float] = (1.0, 1.0)) -> tuple[np.ndarray, list[tuple[float, float, str]]]:
    """Place each turn's speech region after the previous one (+ its gap) and sum the two voices.

    ``turn_audio[k]`` is 16 kHz float audio, ``turn_regions[k]`` its ``(start, end)`` speech samples.
    Returns (mono mix, segments ``(start_s, end_s, speaker)`` in time order). A turn never starts
    before the previous turn has spoken for 0.3 s, so every turn keeps some speech of its own.
    """
    pieces, segs = [], []
    cursor = int(lead * rate)
    prev_start, voice_end = -rate, [0, 0]
    for k, (audio, (s, e), turn) in enumerate(zip(turn_audio, turn_regions, turns)):
        speech_part = audio[s:e] * gains[turn["who"]]
        if len(speech_part) == 0:
            continue
        start = cursor if not pieces else max(prev_start + int(0.3 * rate), cursor + int(turn["gap"] * rate))
        start = max(start, voice_end[turn["who"]])  # nobody talks over themselves
        pieces.append((start, speech_part))
        segs.append((start / rate, (start + len(speech_part)) / rate, speakers[turn["who"]]))
        prev_start, cursor = start, max(cursor, start + len(speech_part))
        voice_end[turn["who"]] = start + len(speech_part)
    total = cursor + int(tail * rate)
    mix = np.zeros(total, np.float32)
    for start, part in pieces:
        mix[start:start + len(part)] += part
    peak = float(np.abs(mix).max()) if mix.size else 0.0
    if peak > 0.95:
        mix *= 0.95 / peak
    return mix, segs


def format_segments(segs: list[tuple[float, float, str]]) -> str:
    """``[(start, end, spk)]`` → the ``.seg`` line ``start:end:spk ...`` (seconds, 3 decimals)."""
    return " ".join(f"{s:.3f}:{e:.3f}:{spk}" for s, e, spk in segs)


def rttm_lines(utt: str, segs: list[tuple[float, float, str]]) -> list[str]:
    """NIST RTTM ``SPEAKER <file> 1 <onset> <dur> <NA> <NA> <spk> <NA> <NA>`` lines."""
    return [f"SPEAKER {utt} 1 {s:.3f} {e - s:.3f} <NA> <NA> {spk} <NA> <NA>" for s, e, spk in segs]


# -- query by example -----------------------------------------------------------------------------

# Multi-syllable words outside the sentence grammar's vocabulary (so a document holds a keyword
# only where one was inserted), all read by eSpeak as written.
QBE_KEYWORDS = ["umbrella", "computer", "elephant", "chocolate", "telephone", "butterfly", "banana",
                "potato", "tomato", "airplane", "dinosaur", "kangaroo"]


def qbe_documents(count: int, keywords: list[str], rng: random.Random) -> list[tuple[list[str], str | None]]:
    """``count`` documents ``(words, keyword or None)``: every fourth has no keyword, the others
    take the keywords in turn (each keyword in about the same number of documents), inserted at a
    random word position of a 3-6 word sentence."""
    out, j = [], 0
    for k in range(count):
        words = text.sentence(rng, 3, 6)
        kw = None
        if k % 4 != 3:
            kw = keywords[j % len(keywords)]
            j += 1
            words.insert(rng.randint(0, len(words)), kw)
        out.append((words, kw))
    return out
