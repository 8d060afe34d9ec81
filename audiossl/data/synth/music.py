"""Offline music rendering: General MIDI notes and chord progressions through a SoundFont.

``pretty_midi`` ships the TimGM6mb General MIDI SoundFont; ``tinysoundfont`` renders it in C
with no audio device. Output is float32 mono ``[time]`` at 24 kHz. Every clip is rendered by a
fresh synthesizer voice state (all sounds off, channel reset), so a clip's samples depend only
on its own parameters, not on what was rendered before it.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass

import numpy as np

MUSIC_RATE = 24_000
PITCH_CLASSES = ["C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B"]

# NSynth-like instrument families → General MIDI programs (0-based) and a playable MIDI range.
FAMILIES: dict[str, tuple[tuple[int, ...], tuple[int, int]]] = {
    "piano": ((0, 1, 2, 4), (36, 96)),
    "organ": ((16, 17, 19), (36, 96)),
    "guitar": ((24, 25, 26, 27), (40, 84)),
    "bass": ((32, 33, 34, 38), (28, 60)),
    "strings": ((40, 41, 42, 48), (36, 96)),
    "brass": ((56, 57, 60, 61), (40, 84)),
    "reed": ((64, 65, 68, 71), (48, 84)),
    "flute": ((72, 73, 75, 79), (60, 96)),
    "synth_lead": ((80, 81, 82, 87), (36, 96)),
    "mallet": ((8, 11, 12, 13), (48, 96)),
}
KEY_PROGRAMS = (0, 4, 19, 24, 48, 52)  # piano, e-piano, organ, guitar, strings, choir

# Scale degrees (semitones from the tonic) of triads; minor uses harmonic-minor V (major).
_MAJOR_TRIADS = {"I": (0, 4, 7), "ii": (2, 5, 9), "IV": (5, 9, 12), "V": (7, 11, 14), "vi": (9, 12, 16)}
_MINOR_TRIADS = {"i": (0, 3, 7), "iv": (5, 8, 12), "V": (7, 11, 14), "VI": (8, 12, 15), "III": (3, 7, 10)}
MAJOR_PROGRESSIONS = (("I", "IV", "V", "I"), ("I", "vi", "IV", "V", "I"), ("I", "ii", "V", "I"), ("I", "V", "vi", "IV", "I"))
MINOR_PROGRESSIONS = (("i", "iv", "V", "i"), ("i", "VI", "iv", "V", "i"), ("i", "III", "iv", "V", "i"))


def soundfont_path() -> str:
    import pretty_midi  # lazy: only MIDI rendering needs it

    path = os.path.join(os.path.dirname(pretty_midi.__file__), "TimGM6mb.sf2")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: General MIDI SoundFont missing; reinstall pretty_midi (it ships TimGM6mb.sf2).")
    return path


def key_names() -> list[str]:
    """The 24 key labels, ``"C major" .. "B minor"`` (sharps)."""
    return [f"{pc} {mode}" for mode in ("major", "minor") for pc in PITCH_CLASSES]


class _Renderer:
    """One SoundFont loaded per process (loading takes ~20 ms; rendering is the cheap part)."""

    _synth = None
    _sfid = 0

    @classmethod
    def get(cls):
        if cls._synth is None:
            import tinysoundfont  # lazy: only music synthesis needs it

            cls._synth = tinysoundfont.Synth(samplerate=MUSIC_RATE, gain=-6.0)
            cls._sfid = cls._synth.sfload(soundfont_path())
            # The very first render after loading differs slightly (~1e-5) from later ones (lazy
            # channel defaults); render once and discard so every clip sees the same state.
            render_events([NoteEvent(60, 0.0, 0.05, 100)], {0: 0}, 0.1)
        return cls._synth, cls._sfid


@dataclass(frozen=True)
class NoteEvent:
    """``pitch`` (MIDI) sounding from ``start`` to ``end`` seconds at ``velocity`` (1-127)."""

    pitch: int
    start: float
    end: float
    velocity: int
    channel: int = 0


def render_events(
    events: list[NoteEvent], programs: dict[int, int], duration: float, peak_level: float = 0.5,
    drums: tuple[int, ...] = (),
) -> np.ndarray:
    """Render note events (channel → GM program) to mono float32 ``[round(duration * 24000)]``,
    peak-normalised to ``peak_level``. Channels in ``drums`` play the GM drum kit (bank 128),
    where an event's ``pitch`` is the GM percussion key (36 kick, 38 snare, 42 closed hi-hat)."""
    synth, sfid = _Renderer.get()
    # sounds_off() only starts a quick release; render past it so nothing bleeds into this clip.
    synth.sounds_off()
    synth.generate(MUSIC_RATE // 10)
    for chan, program in programs.items():
        synth.program_select(chan, sfid, 0, program)
        synth.control_change(chan, 121, 0)  # reset all controllers
        synth.control_change(chan, 7, 100)
    for chan in drums:
        synth.program_select(chan, sfid, 128, 0, is_drums=True)
        synth.control_change(chan, 121, 0)
        synth.control_change(chan, 7, 100)
    total = int(round(duration * MUSIC_RATE))
    # Sample-accurate schedule: (sample, is_on, event); note-offs first at equal times.
    schedule = sorted(
        [(int(round(e.start * MUSIC_RATE)), 1, i) for i, e in enumerate(events)]
        + [(int(round(e.end * MUSIC_RATE)), 0, i) for i, e in enumerate(events)]
    )
    out = np.zeros((total, 2), np.float32)
    pos = 0
    for at, is_on, i in schedule + [(total, -1, -1)]:
        at = min(at, total)
        if at > pos:
            out[pos:at] = np.frombuffer(synth.generate(at - pos), dtype=np.float32).reshape(-1, 2)
            pos = at
        if is_on == 1:
            synth.noteon(events[i].channel, events[i].pitch, events[i].velocity)
        elif is_on == 0:
            synth.noteoff(events[i].channel, events[i].pitch)
    synth.sounds_off()
    mono = out.mean(axis=1)
    peak = float(np.abs(mono).max()) if mono.size else 0.0
    if peak > 0:  # presets differ in level by 20 dB; peak-normalise so loudness is no label cue
        mono *= peak_level / peak
    return mono


def note_programs(family: str, split: str) -> tuple[int, ...]:
    """The GM programs that play ``family``'s notes in ``split``. As in NSynth, no instrument of the valid and
    test notes is heard in training: train uses all but the family's last program, valid/test only that one.
    (With programs drawn from the whole family, a third of the valid notes had a train twin with the same
    program and pitch and a tenth of the test notes did, so pitch probes scored memorised twins.)"""
    programs = FAMILIES[family][0]
    return programs[:-1] if split == "train" else programs[-1:]


def render_note(family: str, pitch: int, seed: int, duration: float = 1.5,
                programs: tuple[int, ...] | None = None) -> tuple[np.ndarray, dict]:
    """An NSynth-like single note: held ~1 s, then released, by one of ``programs`` (default: any of the
    family's). Returns (audio ``[time]``, labels)."""
    if family not in FAMILIES:
        raise ValueError(f"unknown instrument family {family!r}; choose from {sorted(FAMILIES)}")
    rng = random.Random(seed)
    program = rng.choice(programs or FAMILIES[family][0])
    velocity = rng.randint(70, 120)
    hold = rng.uniform(0.8, 1.1)
    audio = render_events([NoteEvent(pitch, 0.0, hold, velocity)], {0: program}, duration)
    return audio, {"family": family, "pitch": pitch, "program": program, "velocity": velocity}


def render_progression(tonic: int, mode: str, seed: int) -> tuple[np.ndarray, dict]:
    """A short cadential chord progression in ``PITCH_CLASSES[tonic] mode``; returns (audio, labels)."""
    rng = random.Random(seed)
    triads, progs = (_MAJOR_TRIADS, MAJOR_PROGRESSIONS) if mode == "major" else (_MINOR_TRIADS, MINOR_PROGRESSIONS)
    prog = rng.choice(progs)
    program = rng.choice(KEY_PROGRAMS)
    chord_dur = rng.uniform(0.45, 0.8)
    base = 48 + tonic if tonic < 6 else 36 + tonic  # tonic in C3..F4
    events: list[NoteEvent] = []
    for k, name in enumerate(prog):
        start, end = k * chord_dur, (k + 1) * chord_dur * 0.97 if k < len(prog) - 1 else (k + 1.6) * chord_dur
        notes = [base + iv for iv in triads[name]]
        inversion = rng.randrange(3) if 0 < k < len(prog) - 1 else 0
        notes = notes[inversion:] + [n + 12 for n in notes[:inversion]]
        velocity = rng.randint(70, 105)
        for n in notes:
            events.append(NoteEvent(n, start, end, velocity))
        events.append(NoteEvent(base + triads[name][0] - 12, start, end, velocity, channel=1))  # bass root
    duration = (len(prog) + 2.0) * chord_dur
    audio = render_events(events, {0: program, 1: 32}, duration)
    label = f"{PITCH_CLASSES[tonic]} {mode}"
    return audio, {"key": label, "program": program, "progression": "-".join(prog)}


# Drum patterns per beat (GM keys at fractions of a beat): rock backbeat, four-on-the-floor,
# half-time; "none" leaves the pulse to the chords and bass alone.
DRUM_PATTERNS: dict[str, tuple[tuple[tuple[float, int], ...], ...]] = {
    # one tuple per beat of a 4/4 bar: (offset in beats, key)
    "rock": (((0, 36), (0, 42), (0.5, 42)), ((0, 38), (0, 42), (0.5, 42)),
             ((0, 36), (0, 42), (0.5, 36), (0.5, 42)), ((0, 38), (0, 42), (0.5, 42))),
    "four": (((0, 36), (0.5, 42)),) * 4,
    "half": (((0, 36), (0, 42)), ((0, 42),), ((0, 38), (0, 42)), ((0, 42),)),
    "none": ((),) * 4,
}


def render_beats(seed: int, duration: float = 6.0) -> tuple[np.ndarray, dict]:
    """A 4/4 groove with a known pulse: returns (audio ``[time]``, ``{"beats": [s...], "downbeats": [...],
    "bpm", "pattern", ...}``). Tempo 70-160 BPM, a random start offset (so the phase is no cue),
    chords on the downbeats, bass on beats 1 and 3 (every beat without drums), one of
    :data:`DRUM_PATTERNS`. The beat times are exact (sample-accurate onsets)."""
    rng = random.Random(seed)
    bpm = rng.uniform(70.0, 160.0)
    period = 60.0 / bpm
    offset = rng.uniform(0.05, period)
    pattern = rng.choice(list(DRUM_PATTERNS))
    program = rng.choice(KEY_PROGRAMS)
    tonic = rng.randrange(12)
    mode = rng.choice(("major", "minor"))
    triads, progs = (_MAJOR_TRIADS, MAJOR_PROGRESSIONS) if mode == "major" else (_MINOR_TRIADS, MINOR_PROGRESSIONS)
    prog = rng.choice(progs)
    base = 48 + tonic if tonic < 6 else 36 + tonic
    beats = []
    t = offset
    while t < duration - 0.05:
        beats.append(round(t, 6))
        t += period
    events: list[NoteEvent] = []
    for k, b in enumerate(beats):
        in_bar = k % 4
        end = min(b + period * 0.9, duration)
        if in_bar == 0:
            chord = triads[prog[(k // 4) % len(prog)]]
            bar_end = min(b + 4 * period * 0.97, duration)
            vel = rng.randint(60, 90)
            events += [NoteEvent(base + iv, b, bar_end, vel) for iv in chord]
        root = base + triads[prog[(k // 4) % len(prog)]][0] - 12
        if pattern == "none" or in_bar in (0, 2):
            events.append(NoteEvent(root, b, end, rng.randint(80, 110) if in_bar == 0 else rng.randint(60, 90), channel=1))
        for frac, key in DRUM_PATTERNS[pattern][in_bar]:
            at = b + frac * period
            if at < duration - 0.02:
                events.append(NoteEvent(key, at, min(at + 0.08, duration), rng.randint(85, 120), channel=9))
    audio = render_events(events, {0: program, 1: 33}, duration, drums=(9,))
    return audio, {"beats": beats, "downbeats": beats[::4], "bpm": round(bpm, 3), "pattern": pattern,
                   "program": program}
