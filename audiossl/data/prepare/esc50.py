"""ESC-50 → ``fold1`` … ``fold5`` ``.tsv`` + ``.lbl`` (category name) for 5-fold cross-validation.

Layout: ``SRC/audio/{fold}-{clip}-{take}-{target}.wav`` and ``SRC/meta/esc50.csv`` with
columns ``filename,fold,target,category,esc10,src_file,take``. ``esc10=True`` restricts to the
ESC-10 subset (rows whose esc10 column is True).
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
    require_file,
    write_splits,
)

COLUMNS = ("filename", "fold", "target", "category", "esc10", "src_file", "take")


def read_esc50_csv(path: Path) -> list[dict[str, str]]:
    """Rows of ``esc50.csv`` (checked: columns present, fold 1-5, target an integer)."""
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise PrepareError(f"{path}:1: missing column(s) {missing}; expected header {','.join(COLUMNS)}")
        rows = []
        for lineno, row in enumerate(reader, start=2):
            if row["fold"] not in {"1", "2", "3", "4", "5"}:
                raise PrepareError(f"{path}:{lineno}: fold {row['fold']!r} is not 1-5")
            if not row["target"].isdigit():
                raise PrepareError(f"{path}:{lineno}: target {row['target']!r} is not an integer")
            if not row["filename"].endswith(".wav") or "/" in row["filename"]:
                raise PrepareError(f"{path}:{lineno}: filename {row['filename']!r} should be a bare '<name>.wav'")
            rows.append(row)
    if not rows:
        raise PrepareError(f"{path}: no rows after the header")
    return rows


def prepare_esc50(src: str | Path, out: str | Path, *, esc10: bool = False, **common) -> PrepareResult:
    """Write ``OUT/fold{1..5}.tsv`` + ``.lbl`` (category, e.g. ``dog``) + ``.target`` (0-49)."""
    config = common_options(common)
    src = Path(src)
    meta = require_file(src / "meta" / "esc50.csv", f"the ESC-50 metadata with columns {','.join(COLUMNS)}")
    if not (src / "audio").is_dir():
        raise PrepareError(f"{src / 'audio'}: not found; expected the ESC-50 clips as audio/<fold>-<clip>-<take>-<target>.wav")
    splits: dict[str, list[Entry]] = {f"fold{k}": [] for k in range(1, 6)}
    skipped: list[Problem] = []
    for row in read_esc50_csv(meta):
        if esc10 and row["esc10"].strip().lower() != "true":
            continue
        rel = f"audio/{row['filename']}"
        if not (src / rel).is_file():
            skipped.append(Problem(str(src / rel), "missing", f"listed in {meta} but the audio file does not exist"))
            continue
        splits[f"fold{row['fold']}"].append(Entry(rel, {"lbl": row["category"], "target": row["target"]}))
    return finish(write_splits(src, splits, out, config, skipped=skipped))
