"""Beat-annotated music (Ballroom, GTZAN beats, Hainsworth, ...) → train/valid/test ``.tsv`` + ``.beats``.

Layout: audio anywhere under SRC (``SRC/<genre>/<name>.wav``: Ballroom's ``BallroomData/``, GTZAN's
``genres/``) and one text annotation per clip, ``<name>.beats`` (lines ``<time in s> [<beat in
bar>]``, as in the Ballroom and GTZAN-beats annotation sets), beside the audio or in
``annotations=DIR`` (searched recursively). An annotation named ``gtzan_<genre>_<NNNNN>.beats``
also matches ``<genre>.<NNNNN>.wav``. ``.beats`` gets the beat times, ``.downbeats`` those whose
bar position is 1 (empty when the file has no positions).

No official splits exist: a deterministic stratified 80/10/10 split per top-level directory
(genre) with ``seed``. Clips without an annotation and annotations without audio are reported
and skipped; an annotation that does not parse, or whose beats run past the end of its audio by
more than ``tolerance`` seconds, stops the run naming the file and line.
"""

from __future__ import annotations

import re
from pathlib import Path

import soundfile as sf

from audiossl.audio.validate import Problem
from audiossl.data.prepare.common import (
    Entry,
    PrepareError,
    PrepareResult,
    common_options,
    finish,
    relpath_under,
    write_splits,
)
from audiossl.data.prepare.gtzan import stratified_split

AUDIO_EXT = (".wav", ".flac", ".mp3", ".ogg", ".au", ".aiff")


def read_beats(path: Path) -> tuple[list[float], list[float]]:
    """``(beats, downbeats)`` in seconds from a ``.beats`` file (``time [position]`` per line)."""
    beats, downbeats = [], []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            parts = line.replace(",", " ").split()
            if not parts:
                continue
            try:
                t = float(parts[0])
                pos = float(parts[1]) if len(parts) > 1 else None
            except ValueError:
                raise PrepareError(f"{path}:{lineno}: expected '<time in seconds> [<beat in bar>]', got {line.strip()!r}") from None
            if t < 0 or (beats and t <= beats[-1]):
                raise PrepareError(f"{path}:{lineno}: beat time {t} is negative or not after the previous one")
            beats.append(t)
            if pos is not None and int(pos) == 1:
                downbeats.append(t)
    if not beats:
        raise PrepareError(f"{path}: no beat times")
    return beats, downbeats


def _key(stem: str) -> str:
    m = re.fullmatch(r"gtzan_([a-z]+)_0*(\d+)", stem)
    return f"{m.group(1)}.{int(m.group(2)):05d}" if m else stem


def prepare_beats(src: str | Path, out: str | Path, *, annotations: str | Path | None = None, seed: int = 0,
                  tolerance: float = 0.5, **common) -> PrepareResult:
    """Write ``OUT/{train,valid,test}.tsv`` + ``.beats`` + ``.downbeats``."""
    config = common_options(common)
    src = Path(src).resolve()
    if not src.is_dir():
        raise PrepareError(f"{src}: not a directory; expected the audio tree (<genre>/<name>.wav)")
    ann_dir = Path(annotations).resolve() if annotations is not None else src
    audio = {}
    for p in sorted(src.rglob("*")):
        if p.suffix.lower() in AUDIO_EXT and p.is_file():
            audio.setdefault(_key(p.stem), p)
    anns = {_key(p.stem): p for p in sorted(ann_dir.rglob("*.beats"))}
    if not anns:
        raise PrepareError(f"{ann_dir}: no *.beats annotation files found")
    skipped: list[Problem] = []
    labels: dict[str, dict[str, str]] = {}
    for key, p in audio.items():
        if key not in anns:
            skipped.append(Problem(str(p), "no_annotation", f"no {key}.beats under {ann_dir}"))
            continue
        beats, downbeats = read_beats(anns[key])
        try:
            info = sf.info(str(p))
            dur = info.frames / info.samplerate
        except Exception:
            dur = None  # unreadable: write_splits reports and skips it
        if dur is not None and beats[-1] > dur + tolerance:
            raise PrepareError(f"{anns[key]}: a beat at {beats[-1]:.3f} s but {p} lasts {dur:.3f} s; the annotation "
                               f"belongs to another clip")
        labels[relpath_under(p, src)] = {"beats": " ".join(f"{t:.4f}" for t in beats),
                                         "downbeats": " ".join(f"{t:.4f}" for t in downbeats)}
    for key in sorted(set(anns) - set(audio)):
        skipped.append(Problem(str(anns[key]), "missing", f"annotation without audio ({key}.* under {src})"))
    if not labels:
        raise PrepareError(f"{src}: no audio file matches an annotation in {ann_dir}")
    flat = any("/" not in r for r in labels)  # no genre directories: one stratum
    parts = stratified_split([f"all/{r}" if flat else r for r in labels], seed)
    parts = {k: [r[4:] if flat else r for r in v] for k, v in parts.items()}
    splits = {s: [Entry(r, labels[r]) for r in rels] for s, rels in parts.items()}
    return finish(write_splits(src, splits, out, config, skipped=skipped))
