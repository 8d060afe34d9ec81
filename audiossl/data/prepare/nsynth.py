"""NSynth → train/valid/test ``.tsv`` + ``.lbl`` (instrument family) + ``.pitch`` (MIDI pitch)
+ ``.source`` (acoustic/electronic/synthetic).

Layout: ``SRC/nsynth-{train,valid,test}/audio/<note_str>.wav`` and
``SRC/nsynth-{split}/examples.json`` (a dict note_str → {"instrument_family_str", "pitch",
"velocity", "instrument_source_str", ...}). The manifest root is SRC.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from audiossl.audio.validate import Problem
from audiossl.data.prepare.common import (
    Entry,
    PrepareError,
    PrepareResult,
    common_options,
    finish,
    require_file,
    write_splits,
)

log = logging.getLogger("audiossl.prepare")

SPLITS = ("train", "valid", "test")
KEYS = ("instrument_family_str", "pitch", "instrument_source_str")


def read_examples(path: Path) -> dict[str, dict]:
    require_file(path, "the NSynth metadata (a JSON dict note_str → {instrument_family_str, pitch, ...})")
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except json.JSONDecodeError as e:
        raise PrepareError(f"{path}:{e.lineno}: not valid JSON ({e.msg}); re-download the split archive.") from None
    if not isinstance(data, dict):
        raise PrepareError(f"{path}: expected a JSON object note_str → attributes, got {type(data).__name__}")
    for note, attrs in data.items():
        missing = [k for k in KEYS if not isinstance(attrs, dict) or k not in attrs]
        if missing:
            raise PrepareError(f"{path}: note {note!r} lacks {missing}; every note needs {', '.join(KEYS)}.")
    return data


def prepare_nsynth(src: str | Path, out: str | Path, *, splits: list[str] | None = None, **common) -> PrepareResult:
    """Write ``OUT/<split>.tsv`` + ``.lbl`` ``.pitch`` ``.source`` for each ``nsynth-<split>``
    directory found (or the ``splits`` named)."""
    config = common_options(common)
    src = Path(src)
    wanted = list(splits or [s for s in SPLITS if (src / f"nsynth-{s}").is_dir()])
    if not wanted:
        raise PrepareError(f"{src}: no nsynth-train/, nsynth-valid/ or nsynth-test/ directory found.")
    entries: dict[str, list[Entry]] = {}
    skipped: list[Problem] = []
    for split in wanted:
        sdir = src / f"nsynth-{split}"
        if not sdir.is_dir():
            raise PrepareError(f"{sdir}: not found; expected {sdir}/audio/<note_str>.wav and {sdir}/examples.json")
        examples = read_examples(sdir / "examples.json")
        present = {p.stem for p in (sdir / "audio").glob("*.wav")}
        unlisted = len(present - set(examples))
        if unlisted:
            log.warning("%s: %d audio files have no entry in examples.json and are left out", sdir / "audio", unlisted)
        rows = []
        for note in sorted(examples):
            rel = f"nsynth-{split}/audio/{note}.wav"
            if note not in present:
                skipped.append(Problem(str(src / rel), "missing", f"listed in {sdir / 'examples.json'} but the audio file does not exist"))
                continue
            a = examples[note]
            rows.append(Entry(rel, {"lbl": str(a["instrument_family_str"]), "pitch": str(int(a["pitch"])), "source": str(a["instrument_source_str"])}))
        entries[split] = rows
    return finish(write_splits(src, entries, out, config, skipped=skipped))
