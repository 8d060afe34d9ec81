"""Diatonic harmony and rhythm helpers shared by the synthesized genre and tagging sets.

Chords are built by stacking thirds inside a mode's scale (so a progression is a list of scale
degrees, 0-based), or with fixed intervals (``dom7``, ``power``). Rhythms are per-bar lists of
``(onset, length)`` in beats of a 4/4 bar; swing delays every off-beat eighth.
"""

from __future__ import annotations

# Semitones of each mode's seven degrees from the tonic.
MODES: dict[str, tuple[int, ...]] = {
    "major": (0, 2, 4, 5, 7, 9, 11),
    "minor": (0, 2, 3, 5, 7, 8, 10),
    "dorian": (0, 2, 3, 5, 7, 9, 10),
    "mixolydian": (0, 2, 4, 5, 7, 9, 10),
    "phrygian": (0, 1, 3, 5, 7, 8, 10),
    "harmonic_minor": (0, 2, 3, 5, 7, 8, 11),
}
CHORD_TYPES = ("triad", "seventh", "dom7", "power")


def degree_pitch(mode: str, degree: int) -> int:
    """Semitones above the tonic of scale ``degree`` (any integer; 7 = the octave)."""
    scale = MODES[mode]
    octave, step = divmod(degree, 7)
    return 12 * octave + scale[step]


def chord(mode: str, degree: int, kind: str) -> list[int]:
    """Semitones above the tonic of the chord on ``degree``: diatonic ``triad`` / ``seventh``
    (stacked thirds in the mode), or ``dom7`` (root + 4, 7, 10) / ``power`` (root, fifth, octave)."""
    root = degree_pitch(mode, degree)
    if kind == "triad":
        return [degree_pitch(mode, degree + k) for k in (0, 2, 4)]
    if kind == "seventh":
        return [degree_pitch(mode, degree + k) for k in (0, 2, 4, 6)]
    if kind == "dom7":
        return [root + iv for iv in (0, 4, 7, 10)]
    if kind == "power":
        return [root, root + 7, root + 12]
    raise ValueError(f"unknown chord type {kind!r}; choose from {CHORD_TYPES}")


def into_range(pitch: int, lo: int, hi: int) -> int:
    """``pitch`` moved by octaves into ``[lo, hi]`` (the nearest octave when the range is narrower)."""
    while pitch < lo:
        pitch += 12
    while pitch > hi:
        pitch -= 12
    return pitch


def swung(beat: float, swing: float) -> float:
    """A beat position with the off-beat eighth (``x.5``) moved to ``x + swing`` (0.5 = straight,
    0.67 = triplet swing); other positions are unchanged."""
    whole = int(beat)
    frac = beat - whole
    return whole + swing if abs(frac - 0.5) < 1e-9 else beat


# Comping rhythms (chord instrument): per bar, (onset, length) in beats.
COMP: dict[str, tuple[tuple[float, float], ...]] = {
    "block": ((0.0, 3.9),),
    "halves": ((0.0, 1.9), (2.0, 1.9)),
    "eighths": tuple((k * 0.5, 0.45) for k in range(8)),
    "sixteenths": tuple((k * 0.25, 0.2) for k in range(16)),
    "offbeat": ((0.5, 0.3), (1.5, 0.3), (2.5, 0.3), (3.5, 0.3)),
    "backbeat": ((1.0, 0.5), (3.0, 0.5)),
    "syncopated": ((0.0, 0.6), (1.5, 0.4), (3.0, 0.4)),
    "arpeggio": tuple((k * 0.5, 0.5) for k in range(8)),  # one chord tone at a time
}
# Bass lines: per bar, (onset, length, chord tone index; 4 = the fifth above the root, 5 = octave).
BASS: dict[str, tuple[tuple[float, float, int], ...]] = {
    "roots": ((0.0, 1.8, 0), (2.0, 1.8, 0)),
    "root_fifth": ((0.0, 0.9, 0), (2.0, 0.9, 4)),
    "walking": ((0.0, 0.9, 0), (1.0, 0.9, 1), (2.0, 0.9, 2), (3.0, 0.9, 4)),
    "octaves": tuple((k * 0.5, 0.4, 5 if k % 2 else 0) for k in range(8)),
    "eighths": tuple((k * 0.5, 0.45, 0) for k in range(8)),
    "one_drop": ((0.0, 1.4, 0), (1.5, 0.4, 4), (2.5, 1.0, 0)),
}
# Drum grooves: per bar, (onset, GM percussion key). 35/36 kick, 37 side stick, 38 snare,
# 39 clap, 42 closed / 44 pedal / 46 open hi-hat, 49 crash, 51 ride.
DRUMS: dict[str, tuple[tuple[float, int], ...]] = {
    "rock": ((0, 36), (2.5, 36), (2, 36), (1, 38), (3, 38)) + tuple((k * 0.5, 42) for k in range(8)),
    "metal": tuple((k * 0.5, 36) for k in range(8)) + ((1, 38), (3, 38), (0, 49)) + tuple((k, 51) for k in range(4)),
    "swing": ((0, 51), (1, 51), (1.5, 51), (2, 51), (3, 51), (3.5, 51), (1, 44), (3, 44)),
    "shuffle": ((0, 36), (2, 36), (1, 38), (3, 38)) + tuple((k * 0.5, 42) for k in range(8)),
    "four": tuple((k, 36) for k in range(4)) + tuple((k + 0.5, 46) for k in range(4)) + ((1, 39), (3, 39)),
    "one_drop": ((2, 36), (2, 37)) + tuple((k * 0.5, 42) for k in range(8)),
    "train": ((0, 36), (2, 36)) + tuple((k * 0.5, 38) for k in range(8)),
    "none": (),
}
