"""Speech for the demo corpus: speakers, phone inventory, 16 kHz audio and frame alignments.

eSpeak speaks at 22,050 Hz and reports phoneme onsets in its own samples. Here the audio is
resampled to 16 kHz and the onsets mapped onto 10 ms frames: frame ``i`` covers 16 kHz samples
``[160 i, 160 (i + 1))`` and takes the phone sounding at its centre, so an utterance of ``n``
samples has ``ceil(n / 160)`` frame labels.
"""

from __future__ import annotations

import contextlib
import math
import random
from dataclasses import dataclass

import numpy as np

from audiossl.audio.io import resample
from audiossl.data.synth.espeak import ESpeak, Synthesis, VoiceSettings


SPEECH_RATE = 16_000
HOP = 160  # 10 ms at 16 kHz
SIL = "sil"
SPN = "spn"  # a phone outside the inventory (a voice or word this table does not know)

# English eSpeak phonemes (stress marks removed) after folding allophones, plus sil/spn.
PHONES = [
    SIL, "0", "3", "3:", "@", "@L", "A:", "A@", "D", "E", "I", "I@", "N", "O:", "O@", "OI", "S", "T", "U",
    "U@", "V", "Z", "a", "aI", "aI@", "aU", "b", "d", "dZ", "e@", "eI", "f", "g", "h", "i", "i:", "i@", "j",
    "k", "l", "m", "n", "o@", "oU", "p", "r", "s", "t", "tS", "u:", "v", "w", "x", "z", SPN,
]
_FOLD = {
    "I#": "I", "I2": "I", "a#": "@", "@2": "@", "@5": "@", "t#": "t", "t2": "t", "t[": "t", "d#": "d",
    "r-": "r", "aI2": "aI", "O2": "O:", "i@3": "i@", "IR": "3:", "VR": "3:", "aa": "a", "0#": "0",
    "oU#": "oU", "e": "E", "A": "A:", "l/": "l", "l/2": "l", "n-": "n", "z#": "z", "s#": "s", "aU@": "aU",
    "u": "u:", "?": "t", "eI#": "eI", "3:r": "3:",
}
_ZERO_WIDTH = {";", "#", ":", "-"}  # modifiers eSpeak sometimes reports as their own event
_PHONE_SET = set(PHONES)


def fold_phone(mnemonic: str) -> str | None:
    """eSpeak mnemonic → inventory symbol; None for zero-width modifiers (merge with previous)."""
    p = mnemonic.strip().lstrip("',=%")
    if not p or p.startswith("_"):
        return SIL
    if p in _ZERO_WIDTH:
        return None
    p = _FOLD.get(p, p)
    if p in _PHONE_SET:
        return p
    base = p.rstrip("#0123456789[-/;")
    base = _FOLD.get(base, base)
    return base if base in _PHONE_SET else SPN


@dataclass(frozen=True)
class Speaker:
    """A synthetic speaker: eSpeak language voice + variant, with its own base pitch and rate."""

    spk_id: str
    voice: str
    pitch: int
    rate: int
    range: int

    def settings(self, rate_scale: float = 1.0, pitch_shift: int = 0, range_: int | None = None, wordgap: int = 0) -> VoiceSettings:
        return VoiceSettings(
            self.voice,
            rate=int(round(min(400, max(80, self.rate * rate_scale)))),
            pitch=int(min(99, max(0, self.pitch + pitch_shift))),
            range=int(self.range if range_ is None else range_),
            wordgap=wordgap,
        )


_LANGS = ["en-us", "en", "en-gb-x-rp", "en-gb-scotland", "en-029", "en-us-nyc", "en-gb-x-gbclan", "en-gb-x-gbcwmd"]
_VARIANTS = [
    "m1", "f1", "m2", "f2", "m3", "f3", "m4", "f4", "m5", "f5", "m6", "m7", "klatt", "klatt2", "klatt3",
    "klatt4", "Andy", "annie", "Denis", "linda", "Mike", "aunty", "max", "m8", "belinda", "david",
    "michel", "steph", "john", "robert", "quincy", "adam",
]
_FEMALE = {"f1", "f2", "f3", "f4", "f5", "annie", "linda", "aunty", "belinda", "steph", "klatt4"}


def speaker_table(n: int) -> list[Speaker]:
    """``n`` distinct speakers, the same list for every corpus seed (so ids are stable)."""
    rng = random.Random("audiossl-speakers-v1")
    variants, langs = list(_VARIANTS), list(_LANGS)
    rng.shuffle(variants)
    rng.shuffle(langs)
    if n > len(variants) * len(langs):
        raise ValueError(f"at most {len(variants) * len(langs)} synthetic speakers, asked for {n}")
    # Cycle through variants first (the most audible difference), shifting the language each round.
    combos = [(langs[(i + i // len(variants)) % len(langs)], variants[i % len(variants)]) for i in range(n)]
    out = []
    for i, (lang, var) in enumerate(combos):
        female = var in _FEMALE
        pitch = rng.randint(45, 80) if female else rng.randint(20, 55)
        out.append(Speaker(f"spk{i:03d}", f"{lang}+{var}", pitch, rng.randint(140, 200), rng.randint(30, 75)))
    return out


# Emotion-like speaking styles: (rate scale, pitch shift, pitch range, word gap in 10 ms).
PROSODY_STYLES: dict[str, tuple[float, int, int, int]] = {
    "neutral": (1.0, 0, 45, 0),
    "calm": (0.8, -8, 20, 1),
    "excited": (1.35, 22, 95, 0),
    "sad": (0.65, -18, 6, 3),
}


def synthesize(text: str, settings: VoiceSettings, seed: int) -> Synthesis:
    """eSpeak ``text`` in this process (call from one worker at a time)."""
    return ESpeak().synthesize(text, settings, seed=seed)


@contextlib.contextmanager
def _one_thread():
    import torch  # lazy: keeps torch/numpy out of startup (`prepare`, `validate`, `--help` start fast)

    n = torch.get_num_threads()
    torch.set_num_threads(1)  # identical float results whatever the machine's core count
    try:
        yield
    finally:
        torch.set_num_threads(n)


def to_16k(samples: np.ndarray, rate: int) -> np.ndarray:
    """int16 ``[time]`` at ``rate`` → float32 ``[time']`` at 16 kHz, |x| ≤ 1."""
    import torch  # lazy: keeps torch/numpy out of startup (`prepare`, `validate`, `--help` start fast)

    wav = torch.from_numpy(samples.astype(np.float32) / 32768.0)
    with _one_thread():
        out = resample(wav, rate, SPEECH_RATE).numpy()
    return np.clip(out, -1.0, 32767 / 32768)


def segments(syn: Synthesis, num_samples: int) -> list[tuple[str, int, int]]:
    """Phone segments ``(symbol, start, end)`` in 16 kHz samples covering ``[0, num_samples)``."""
    scale = SPEECH_RATE / syn.sample_rate
    marks: list[tuple[str, int]] = [(SIL, 0)]
    for mnemonic, onset in syn.phonemes:
        sym = fold_phone(mnemonic)
        if sym is None:
            continue
        at = min(num_samples, max(0, int(math.floor(onset * scale + 0.5))))
        if at <= marks[-1][1]:
            marks[-1] = (sym, marks[-1][1])  # zero-length predecessor: the later phone wins
        else:
            marks.append((sym, at))
    bounds = [m[1] for m in marks[1:]] + [num_samples]
    segs = [(sym, start, end) for (sym, start), end in zip(marks, bounds) if end > start]
    merged: list[tuple[str, int, int]] = []
    for sym, start, end in segs:
        if merged and sym == SIL and merged[-1][0] == SIL:
            merged[-1] = (SIL, merged[-1][1], end)
        else:
            merged.append((sym, start, end))
    return merged


def frame_alignment(segs: list[tuple[str, int, int]], num_samples: int) -> list[str]:
    """One symbol per 10 ms frame (``ceil(num_samples / 160)`` of them), the phone at its centre."""
    n_frames = -(-num_samples // HOP)
    starts = np.array([s for _, s, _ in segs], dtype=np.int64)
    centres = np.minimum(np.arange(n_frames, dtype=np.int64) * HOP + HOP // 2, max(num_samples - 1, 0))
    idx = np.searchsorted(starts, centres, side="right") - 1
    return [segs[max(0, int(i))][0] for i in idx]


def phone_sequence(segs: list[tuple[str, int, int]]) -> list[str]:
    """The spoken phones in order, without silences."""
    return [sym for sym, _, _ in segs if sym != SIL]


def speech_region(segs: list[tuple[str, int, int]]) -> tuple[int, int]:
    """``(start, end)`` samples from the first to the last non-silence phone."""
    voiced = [(s, e) for sym, s, e in segs if sym != SIL]
    if not voiced:
        return 0, 0
    return voiced[0][0], voiced[-1][1]
