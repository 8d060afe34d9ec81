"""Multi-instrument mixtures for the tagging task (MARBLE MagnaTagATune-style, rendered offline).

A clip mixes 1-3 parts, each one GM program of a *different* family of
:data:`audiossl.data.synth.music.FAMILIES`; its tags are exactly those families. The parts play
one chord progression in a random key and tempo: a ``bass`` family plays the bass line, the
others take distinct roles (block chords, arpeggio, melody) in their family's playable range.
Each part is rendered alone (a stem), brought to the same RMS, scaled by a random gain of
-6..0 dB and summed, so every tagged instrument is audible (presets differ by 20 dB in level)
and loudness is no tag cue. :func:`render_mixture` returns the mix and the stems' parameters.
"""

from __future__ import annotations

import random

import numpy as np

from audiossl.data.synth.harmony import chord, degree_pitch, into_range
from audiossl.data.synth.music import FAMILIES, NoteEvent, render_events

TAGS = tuple(sorted(FAMILIES))
CLIP_SECONDS = 4.0
PART_COUNTS = ((1, 0.3), (2, 0.4), (3, 0.3))
"""(instruments per clip, probability)"""
_PROGRESSIONS = {"major": ((0, 3, 4, 0), (0, 5, 3, 4), (0, 4, 5, 3)), "minor": ((0, 5, 2, 6), (0, 3, 4, 0), (0, 6, 5, 4))}
_ROLES = ("chords", "arpeggio", "melody")


def mixture_params(seed: int) -> dict:
    """The seeded parameters of one mixture (pure): families, programs, roles, gains, key, tempo."""
    rng = random.Random(f"mixture:{seed}")
    k = rng.choices([n for n, _ in PART_COUNTS], [w for _, w in PART_COUNTS])[0]
    families = rng.sample(TAGS, k)
    roles = list(_ROLES)
    rng.shuffle(roles)
    parts = []
    for fam in families:
        role = "bass" if fam == "bass" else roles.pop()
        parts.append({"family": fam, "program": rng.choice(FAMILIES[fam][0]), "role": role,
                      "gain_db": round(rng.uniform(-6.0, 0.0), 2)})
    mode = rng.choice(("major", "minor"))
    return {"parts": parts, "mode": mode, "progression": list(rng.choice(_PROGRESSIONS[mode])),
            "tonic": rng.randrange(12), "bpm": round(rng.uniform(80, 140), 2)}


def part_events(p: dict, part: dict, duration: float, rng: random.Random) -> list[NoteEvent]:
    """Note events of one part: two beats per chord, pitches moved into the family's range."""
    lo, hi = FAMILIES[part["family"]][1]
    period = 60.0 / p["bpm"]
    tonic = 48 + p["tonic"]
    events = []
    n_chords = int(np.ceil(duration / (2 * period)))
    for c in range(n_chords):
        tones = chord(p["mode"], p["progression"][c % len(p["progression"])], "triad")
        t0 = c * 2 * period
        role = part["role"]
        if role == "bass":
            for b in range(2):
                pitch = into_range(tonic + tones[0] - 24, max(lo, 28), min(hi, 55))
                events.append(NoteEvent(pitch, t0 + b * period, t0 + (b + 0.9) * period, rng.randint(80, 110)))
        elif role == "chords":
            mid = into_range(tonic + tones[0], lo + 6, hi - 12)
            events += [NoteEvent(mid + n - tones[0], t0, t0 + 1.9 * period, rng.randint(65, 95)) for n in tones]
        elif role == "arpeggio":
            for j in range(4):
                pitch = into_range(tonic + tones[j % 3] + 12 * (j // 3), lo, hi)
                events.append(NoteEvent(pitch, t0 + j * period / 2, t0 + (j + 1) * period / 2, rng.randint(70, 100)))
        else:  # melody: quarter or eighth notes on scale degrees
            step = rng.choice((0.5, 1.0))
            for j in range(int(2 / step)):
                pitch = into_range(tonic + 12 + degree_pitch(p["mode"], rng.randrange(8)), lo, hi)
                events.append(NoteEvent(pitch, t0 + j * step * period, t0 + (j + 0.9) * step * period,
                                        rng.randint(80, 115)))
    return [NoteEvent(e.pitch, e.start, min(e.end, duration), e.velocity) for e in events if e.start < duration - 0.05]


def render_stems(seed: int, duration: float = CLIP_SECONDS) -> tuple[list[np.ndarray], dict]:
    """Each part rendered alone, at equal RMS times its gain: (``[time]`` per part, parameters)."""
    p = mixture_params(seed)
    stems = []
    for k, part in enumerate(p["parts"]):
        rng = random.Random(f"mixture:{seed}:part{k}")
        audio = render_events(part_events(p, part, duration, rng), {0: part["program"]}, duration)
        rms = float(np.sqrt(np.mean(audio.astype(np.float64) ** 2)))
        if rms > 0:
            audio = audio * np.float32(0.1 / rms * 10 ** (part["gain_db"] / 20))
        stems.append(audio.astype(np.float32))
    return stems, p


def render_mixture(seed: int, duration: float = CLIP_SECONDS) -> tuple[np.ndarray, dict]:
    """The mix of :func:`render_stems`, peak-normalised to 0.5: (audio ``[time]`` at 24 kHz, parameters
    with ``tags``, the sorted families of the parts)."""
    stems, p = render_stems(seed, duration)
    mix = np.sum(stems, axis=0).astype(np.float32)
    peak = float(np.abs(mix).max())
    if peak > 0:
        mix *= np.float32(0.5 / peak)
    return mix, p | {"tags": sorted(part["family"] for part in p["parts"])}
