"""Synthesized music *styles* for the genre task (MARBLE GTZAN-style, rendered offline).

A style is a distribution over instrumentation (GM programs of the chord, lead and bass parts),
tempo, harmony (mode, chord type, progressions over scale degrees) and rhythm (comping pattern,
bass line, drum groove, swing). Styles overlap on purpose — rock and metal share guitars and
drums, jazz and blues share swing and seventh chords, disco and reggae share the organ, tempo
ranges cross — and with probability :data:`BORROW` a clip takes one facet (instruments, tempo,
groove or harmony) from another style, so a genre is not decided by one cue. Keys are drawn
uniformly over 12 tonics, so absolute pitch carries no label information.

:func:`render_style` returns float32 mono audio ``[round(duration * 24000)]`` and its facets.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np

from audiossl.data.synth.harmony import BASS, COMP, DRUMS, chord, degree_pitch, into_range, swung
from audiossl.data.synth.music import NoteEvent, render_events

BORROW = 0.2
"""probability that a clip borrows one facet from another style"""
CLIP_SECONDS = 5.0


@dataclass(frozen=True)
class Style:
    chords: tuple[int, ...]
    """GM programs (0-based) of the chord part"""
    lead: tuple[int, ...]
    """GM programs of the melody part (empty: never a melody)"""
    bass: tuple[int, ...]
    bpm: tuple[float, float]
    modes: tuple[str, ...]
    chord_types: tuple[str, ...]
    progressions: tuple[tuple[int, ...], ...]
    """scale degrees (0-based), one chord per ``beats_per_chord`` beats"""
    comp: tuple[str, ...]
    bass_lines: tuple[str, ...]
    drums: tuple[str, ...]
    swing: tuple[float, float] = (0.5, 0.5)
    beats_per_chord: tuple[int, ...] = (4,)
    lead_prob: float = 0.5


STYLES: dict[str, Style] = {
    "rock": Style((29, 30, 27, 25), (29, 30, 81), (33, 34), (100, 150), ("major", "mixolydian"), ("power", "triad"),
                  ((0, 3, 4, 0), (0, 6, 3, 0), (0, 4, 5, 3)), ("eighths", "halves"), ("eighths", "roots"),
                  ("rock",), beats_per_chord=(4, 2)),
    "metal": Style((30, 29), (30, 29, 81), (34, 33, 38), (125, 180), ("minor", "phrygian"), ("power",),
                   ((0, 1, 0, 6), (0, 5, 6, 0), (0, 0, 5, 4)), ("sixteenths", "eighths"), ("eighths",),
                   ("metal", "rock"), beats_per_chord=(2, 4), lead_prob=0.3),
    "jazz": Style((0, 4, 11, 26), (65, 66, 56, 73, 11), (32,), (90, 170), ("major", "dorian"), ("seventh",),
                  ((1, 4, 0, 0), (0, 5, 1, 4), (1, 4, 0, 5)), ("syncopated", "backbeat"), ("walking",),
                  ("swing",), swing=(0.62, 0.7), beats_per_chord=(2, 4), lead_prob=0.6),
    "blues": Style((25, 26, 27, 0, 16), (26, 27, 22, 65), (32, 33), (65, 120), ("mixolydian",), ("dom7",),
                   ((0, 3, 0, 4), (0, 0, 3, 0), (4, 3, 0, 4)), ("eighths", "syncopated"), ("walking", "roots"),
                   ("shuffle", "swing"), swing=(0.62, 0.7), lead_prob=0.6),
    "classical": Style((48, 40, 42, 0, 46), (73, 68, 40, 71), (42, 43), (55, 110), ("major", "harmonic_minor"),
                       ("triad",), ((0, 3, 4, 0), (0, 5, 3, 4), (0, 1, 4, 0)), ("arpeggio", "block"),
                       ("roots",), ("none",), beats_per_chord=(4, 2), lead_prob=0.6),
    "disco": Style((48, 4, 16), (80, 81, 61, 48), (38, 39, 33), (110, 132), ("minor", "dorian"), ("seventh",),
                   ((0, 3, 0, 3), (0, 6, 5, 6), (1, 4, 0, 0)), ("offbeat", "eighths"), ("octaves",),
                   ("four",), beats_per_chord=(4, 2), lead_prob=0.4),
    "reggae": Style((16, 17, 27, 28), (80, 16, 56), (33, 34), (65, 95), ("major", "minor"), ("triad",),
                    ((0, 3, 0, 4), (0, 4, 3, 3), (0, 6, 0, 6)), ("offbeat",), ("one_drop",),
                    ("one_drop",), swing=(0.5, 0.58), lead_prob=0.3),
    "country": Style((25, 24, 0), (40, 25, 22, 105), (32, 33), (90, 145), ("major",), ("triad",),
                     ((0, 3, 4, 0), (0, 4, 0, 3), (0, 0, 3, 4)), ("backbeat", "eighths"), ("root_fifth",),
                     ("train", "rock"), beats_per_chord=(4, 2), lead_prob=0.6),
}
GENRES = tuple(STYLES)
_FACETS = ("instruments", "tempo", "groove", "harmony")


def _draw(style: Style, other: Style, facet: str | None, rng: random.Random) -> dict:
    """One clip's parameters from ``style``; ``facet`` (if any) is drawn from ``other`` instead."""
    src = {f: other if f == facet else style for f in _FACETS}
    ins, tem, gro, har = (src[f] for f in _FACETS)
    return {
        "chord_program": rng.choice(ins.chords), "bass_program": rng.choice(ins.bass),
        "lead_program": rng.choice(ins.lead) if ins.lead and rng.random() < ins.lead_prob else None,
        "bpm": round(rng.uniform(*tem.bpm), 2), "swing": round(rng.uniform(*gro.swing), 3),
        "comp": rng.choice(gro.comp), "bass_line": rng.choice(gro.bass_lines), "drums": rng.choice(gro.drums),
        "mode": rng.choice(har.modes), "chord_type": rng.choice(har.chord_types),
        "progression": list(rng.choice(har.progressions)), "beats_per_chord": rng.choice(har.beats_per_chord),
        "tonic": rng.randrange(12),
    }


def style_params(genre: str, seed: int) -> dict:
    """The seeded parameters of one clip of ``genre`` (pure; :func:`render_style` renders them)."""
    if genre not in STYLES:
        raise ValueError(f"unknown style {genre!r}; choose from {', '.join(GENRES)}")
    rng = random.Random(f"{genre}:{seed}")
    facet, other = None, STYLES[genre]
    if rng.random() < BORROW:
        facet = rng.choice(_FACETS)
        other = STYLES[rng.choice([g for g in GENRES if g != genre])]
    return _draw(STYLES[genre], other, facet, rng) | {"genre": genre, "borrowed": facet or ""}


def style_events(p: dict, duration: float, rng: random.Random) -> list[NoteEvent]:
    """Note events of a clip: chords on channel 0, bass on 1, lead on 2, drums on 9."""
    period = 60.0 / p["bpm"]
    offset = rng.uniform(0.0, period)  # the first downbeat is not at 0, so phase is no cue
    tonic = 48 + p["tonic"] if p["tonic"] < 6 else 36 + p["tonic"]
    events: list[NoteEvent] = []

    def at(bar: int, beat: float) -> float:
        return offset + (bar * 4 + swung(beat, p["swing"])) * period

    n_bars = int(np.ceil(duration / (4 * period))) + 1
    for bar in range(-1, n_bars):  # bar -1: the clip starts mid-bar
        for half in range(4 // p["beats_per_chord"]):
            k = (bar * (4 // p["beats_per_chord"]) + half) % len(p["progression"])
            tones = chord(p["mode"], p["progression"][k], p["chord_type"])
            lo_beat, hi_beat = half * p["beats_per_chord"], (half + 1) * p["beats_per_chord"]
            comp = COMP[p["comp"]]
            for j, (on, length) in enumerate(comp):
                if lo_beat <= on < hi_beat:
                    notes = [tones[j % len(tones)]] if p["comp"] == "arpeggio" else tones
                    vel = rng.randint(60, 95)
                    events += [NoteEvent(tonic + n, at(bar, on), at(bar, on) + length * period, vel) for n in notes]
            for on, length, tone in BASS[p["bass_line"]]:
                if lo_beat <= on < hi_beat:
                    root = tonic + tones[0] - 12
                    pitch = root + (7 if tone == 4 else 12 if tone == 5 else tones[min(tone, len(tones) - 1)] - tones[0])
                    events.append(NoteEvent(into_range(pitch, 28, 60), at(bar, on), at(bar, on) + length * period,
                                            rng.randint(75, 110), channel=1))
        for on, key in DRUMS[p["drums"]]:
            events.append(NoteEvent(key, at(bar, on), at(bar, on) + 0.08, rng.randint(70, 115), channel=9))
        if p["lead_program"] is not None:
            for beat in np.arange(0.0, 4.0, rng.choice((0.5, 1.0))):
                if rng.random() < 0.75:
                    deg = rng.randrange(0, 9)
                    pitch = into_range(tonic + 12 + degree_pitch(p["mode"], deg), 60, 88)
                    events.append(NoteEvent(pitch, at(bar, float(beat)), at(bar, float(beat)) + 0.45 * period,
                                            rng.randint(80, 110), channel=2))
    return [e for e in events if e.end > 0.0 and e.start < duration - 0.02]


def render_style(genre: str, seed: int, duration: float = CLIP_SECONDS) -> tuple[np.ndarray, dict]:
    """A ``duration``-second clip of ``genre``: (audio ``[time]`` at 24 kHz, parameters)."""
    p = style_params(genre, seed)
    rng = random.Random(f"{genre}:{seed}:events")
    events = [NoteEvent(e.pitch, max(e.start, 0.0), min(e.end, duration), e.velocity, e.channel)
              for e in style_events(p, duration, rng)]
    programs = {0: p["chord_program"], 1: p["bass_program"]}
    if p["lead_program"] is not None:
        programs[2] = p["lead_program"]
    audio = render_events(events, programs, duration, drums=(9,) if p["drums"] != "none" else ())
    return audio, p
