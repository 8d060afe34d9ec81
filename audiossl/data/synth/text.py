"""Built-in text for the demo corpus: a small vocabulary, a sentence grammar, keyword lists.

Only plain lowercase words that eSpeak reads as written (no digits, abbreviations or
punctuation inside a sentence), so ``.wrd``/``.ltr`` labels match what is spoken.
"""

from __future__ import annotations

import random

DETERMINERS = ["the", "a", "my", "your", "this", "that", "every", "one", "some", "her", "his", "our"]
ADJECTIVES = [
    "big", "small", "red", "green", "blue", "old", "young", "quiet", "loud", "happy", "sad", "quick",
    "slow", "bright", "dark", "warm", "cold", "soft", "heavy", "little", "clever", "strange", "gentle",
    "busy", "lazy", "yellow", "brown", "tall", "round", "sharp",
]
NOUNS = [
    "cat", "dog", "bird", "fish", "horse", "teacher", "doctor", "farmer", "child", "friend", "river",
    "garden", "window", "table", "letter", "music", "city", "forest", "mountain", "boat", "train", "house",
    "apple", "book", "song", "flower", "kitchen", "market", "winter", "summer", "morning", "engine",
    "pencil", "bottle", "picture", "village", "island", "baker", "sister", "brother",
]
VERBS = [
    "sees", "finds", "likes", "takes", "brings", "holds", "paints", "watches", "follows", "carries",
    "opens", "closes", "moves", "keeps", "leaves", "wants", "reads", "builds", "cleans", "visits",
]
INTRANSITIVE = ["sleeps", "sings", "runs", "waits", "smiles", "jumps", "listens", "works", "laughs", "walks"]
ADVERBS = ["today", "again", "slowly", "quickly", "quietly", "often", "never", "always", "outside", "later"]
PREPOSITIONS = ["near", "behind", "under", "over", "beside", "inside", "past", "around"]

# Speech-Commands-style keyword spotting: 20 targets, fillers for `_unknown_`.
KEYWORDS = [
    "yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go",
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
]
UNKNOWN_WORDS = [
    "bed", "bird", "cat", "dog", "happy", "house", "tree", "wow", "follow", "learn", "visual",
    "forward", "backward", "marvin", "sheila", "garden", "window", "music", "river", "apple",
]
UNKNOWN = "_unknown_"
SILENCE = "_silence_"


def noun_phrase(rng: random.Random) -> list[str]:
    words = [rng.choice(DETERMINERS)]
    if rng.random() < 0.6:
        words.append(rng.choice(ADJECTIVES))
    words.append(rng.choice(NOUNS))
    return words


def sentence(rng: random.Random, min_words: int = 3, max_words: int = 14) -> list[str]:
    """A grammatical-ish sentence as a list of lowercase words (``min_words..max_words`` long)."""
    while True:
        words = noun_phrase(rng)
        if rng.random() < 0.6:
            words += [rng.choice(VERBS)] + noun_phrase(rng)
        else:
            words.append(rng.choice(INTRANSITIVE))
        if rng.random() < 0.4:
            words += [rng.choice(PREPOSITIONS)] + noun_phrase(rng)
        if rng.random() < 0.4:
            words.append(rng.choice(ADVERBS))
        if min_words <= len(words) <= max_words:
            return words


def letters(words: list[str]) -> str:
    """fairseq ``.ltr`` line: ``"H E L L O | W O R L D |"``."""
    return " ".join(" ".join(w.upper()) + " |" for w in words)
