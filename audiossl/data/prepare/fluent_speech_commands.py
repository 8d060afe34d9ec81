"""Fluent Speech Commands → SUPERB intent classification: train/valid/test ``.tsv`` + labels.

Layout: ``SRC/data/{train,valid,test}_data.csv`` (header ``,path,speakerId,transcription,action,
object,location``; the first column is a pandas index) and the audio under ``SRC/wavs/speakers/
<speakerId>/<uuid>.wav``, the CSV ``path`` column being relative to SRC. SRC may also be the
``data`` directory's parent under another name (``fluent_speech_commands_dataset``).

Labels: ``.lbl`` = ``action|object|location`` (the full intent; SUPERB IC counts an utterance
correct only when all three slots are), the slots alone in ``.action`` / ``.object`` /
``.location``, ``.wrd`` (transcription, upper case) and ``.spk``. A CSV row with an empty slot or
a missing column stops the run naming the file and line; listed audio that is missing or bad is
reported and skipped.
"""

from __future__ import annotations

import csv
from pathlib import Path

from audiossl.audio.validate import Problem
from audiossl.data.prepare.common import (
    Entry,
    PrepareError,
    PrepareResult,
    common_options,
    finish,
    write_splits,
)

SPLITS = ("train", "valid", "test")
COLUMNS = ("path", "speakerId", "transcription", "action", "object", "location")


def read_fsc_csv(path: Path) -> list[tuple[int, dict[str, str]]]:
    """``(line number, row)`` of one ``<split>_data.csv`` (columns and slot values checked)."""
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise PrepareError(f"{path}:1: missing column(s) {missing}; expected the Fluent Speech Commands header "
                               f"',{','.join(COLUMNS)}'")
        rows = []
        for lineno, row in enumerate(reader, start=2):
            empty = [c for c in COLUMNS if not (row.get(c) or "").strip()]
            if empty:
                raise PrepareError(f"{path}:{lineno}: empty {', '.join(empty)}; every row needs a path and all three "
                                   f"slots (FSC writes 'none' for an empty slot)")
            if "|" in row["action"] + row["object"] + row["location"]:
                raise PrepareError(f"{path}:{lineno}: a slot value contains '|', which separates slots in .lbl")
            rows.append((lineno, {c: row[c].strip() for c in COLUMNS}))
    if not rows:
        raise PrepareError(f"{path}: no rows after the header")
    return rows


def prepare_fluent_speech_commands(src: str | Path, out: str | Path, **common) -> PrepareResult:
    """Write ``OUT/{train,valid,test}.tsv`` + ``.lbl .action .object .location .wrd .spk``."""
    config = common_options(common)
    src = Path(src)
    data = src / "data"
    if not data.is_dir():
        raise PrepareError(f"{data}: not found; expected the Fluent Speech Commands layout "
                           f"SRC/data/{{train,valid,test}}_data.csv + SRC/wavs/speakers/<speakerId>/*.wav")
    found = [s for s in SPLITS if (data / f"{s}_data.csv").is_file()]
    if not found:
        raise PrepareError(f"{data}: none of {', '.join(s + '_data.csv' for s in SPLITS)} found")
    splits: dict[str, list[Entry]] = {}
    skipped: list[Problem] = []
    for split in found:
        csv_path = data / f"{split}_data.csv"
        entries = []
        for lineno, row in read_fsc_csv(csv_path):
            rel = row["path"][2:] if row["path"].startswith("./") else row["path"]
            if Path(rel).is_absolute() or ".." in Path(rel).parts:
                raise PrepareError(f"{csv_path}:{lineno}: path {rel!r} must be relative to {src}")
            if not (src / rel).is_file():
                skipped.append(Problem(str(src / rel), "missing", f"listed in {csv_path}:{lineno} but the audio file does not exist"))
                continue
            a, o, loc = row["action"], row["object"], row["location"]
            entries.append(Entry(rel, {"lbl": f"{a}|{o}|{loc}", "action": a, "object": o, "location": loc,
                                       "wrd": " ".join(row["transcription"].upper().split()), "spk": row["speakerId"]}))
        splits[split] = entries
    return finish(write_splits(src, splits, out, config, skipped=skipped))
