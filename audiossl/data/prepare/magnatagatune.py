"""MagnaTagATune → train/valid/test ``.tsv`` + ``.tags`` (comma-separated top-N tags, MARBLE MTT).

Layout: ``SRC/annotations_final.csv`` (tab-separated, fields usually double-quoted: ``clip_id``,
188 tag columns of 0/1, ``mp3_path`` relative to the mp3 dir) and ``SRC/mp3/<0-9a-f>/<name>.mp3``
(or the ``<0-9a-f>`` dirs directly in SRC). The manifest root is the mp3 dir.

Tags: the ``top_n`` most frequent over all clips (50, as in MARBLE and Won et al. 2020; ties keep
the column order). Splits follow the usual directory rule (Dieleman & Schrauwen 2014): dirs
``0``-``b`` train, ``c`` valid, ``d``-``f`` test. Clips with none of the top-N tags are left out
(``keep_untagged`` keeps them with an empty ``.tags`` line). A row whose mp3 is missing or unreadable
is reported in ``OUT/skipped.txt`` and skipped; a malformed row (wrong column count, a tag value
that is not 0/1) stops the preparer naming ``file:line``.
"""

from __future__ import annotations

import csv
from pathlib import Path

from audiossl.audio.validate import Problem
from audiossl.data.prepare.common import Entry, PrepareError, PrepareResult, common_options, finish, write_splits
from audiossl.utils.fileio import atomic_write_text

ANNOTATIONS = "annotations_final.csv"
SPLIT_OF_DIR = {**{d: "train" for d in "0123456789ab"}, "c": "valid", **{d: "test" for d in "def"}}


def find_mp3_dir(src: Path) -> Path:
    for d in (src / "mp3", src):
        if d.is_dir() and any((d / k).is_dir() for k in SPLIT_OF_DIR):
            return d
    raise PrepareError(f"{src}: no MagnaTagATune mp3 directories found; expected {src}/mp3/<0-9a-f>/*.mp3 "
                       f"(or the 0-9a-f dirs directly in {src}).")


def read_annotations(path: Path) -> tuple[list[str], list[tuple[int, str, list[int]]]]:
    """``(tag names, [(line number, mp3_path, 0/1 per tag)])`` from ``annotations_final.csv``."""
    if not path.is_file():
        raise PrepareError(f"{path}: not found; expected MagnaTagATune's tab-separated annotations_final.csv "
                           f"(clip_id, 188 tag columns, mp3_path).")
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.reader(f, delimiter="\t", quotechar='"')
        head = next(reader, None)
        if not head or head[0].strip() != "clip_id" or head[-1].strip() != "mp3_path" or len(head) < 3:
            raise PrepareError(f"{path}:1: expected a header 'clip_id<TAB><tags...><TAB>mp3_path', got {head!r:.200}")
        tags = [h.strip() for h in head[1:-1]]
        rows = []
        for lineno, row in enumerate(reader, start=2):
            if not row or not any(c.strip() for c in row):
                continue
            if len(row) != len(head):
                raise PrepareError(f"{path}:{lineno}: {len(row)} fields, the header has {len(head)}")
            vals = [v.strip() for v in row[1:-1]]
            bad = next((t for t, v in zip(tags, vals) if v not in ("0", "1")), None)
            if bad is not None:
                raise PrepareError(f"{path}:{lineno}: tag {bad!r} is {vals[tags.index(bad)]!r}, expected 0 or 1")
            rows.append((lineno, row[-1].strip(), [int(v) for v in vals]))
    return tags, rows


def top_tags(tags: list[str], rows: list[tuple[int, str, list[int]]], top_n: int) -> list[str]:
    counts = [sum(r[2][k] for r in rows) for k in range(len(tags))]
    order = sorted(range(len(tags)), key=lambda k: (-counts[k], k))
    return [tags[k] for k in order[:top_n] if counts[k] > 0]


def prepare_magnatagatune(src: str | Path, out: str | Path, *, top_n: int = 50, keep_untagged: bool = False,
                          **common) -> PrepareResult:
    """Write ``OUT/{train,valid,test}.tsv`` + ``.tags`` (comma-separated) + ``OUT/tags.txt`` (the tag set)."""
    config = common_options(common)
    src = Path(src)
    tags, rows = read_annotations(src / ANNOTATIONS)
    mp3 = find_mp3_dir(src)
    chosen = top_tags(tags, rows, top_n)
    for t in chosen:
        if "," in t:
            raise PrepareError(f"{src / ANNOTATIONS}: tag {t!r} contains a comma; .tags are comma-separated")
    index = {t: tags.index(t) for t in chosen}
    splits: dict[str, list[Entry]] = {"train": [], "valid": [], "test": []}
    skipped: list[Problem] = []
    for lineno, rel, vals in rows:
        split = SPLIT_OF_DIR.get(rel.split("/")[0]) if "/" in rel else None
        if split is None:
            skipped.append(Problem(str(mp3 / rel), "bad_path", f"{src / ANNOTATIONS}:{lineno}: mp3_path {rel!r} is not "
                                   f"under a 0-9a-f directory"))
            continue
        if not (mp3 / rel).is_file():
            skipped.append(Problem(str(mp3 / rel), "missing", f"listed in {src / ANNOTATIONS}:{lineno} but the "
                                   f"audio file does not exist"))
            continue
        on = [t for t in chosen if vals[index[t]]]
        if not on and not keep_untagged:
            continue
        splits[split].append(Entry(rel, {"tags": ",".join(on)}))
    if not any(splits.values()):
        raise PrepareError(f"{src / ANNOTATIONS}: no clip with an existing mp3 and a top-{top_n} tag.")
    result = write_splits(mp3, splits, out, config, skipped=skipped)
    atomic_write_text(Path(out) / "tags.txt", "\n".join(chosen) + "\n")
    return finish(result)
