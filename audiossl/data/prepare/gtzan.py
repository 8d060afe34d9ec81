"""GTZAN → train/valid/test ``.tsv`` + ``.lbl`` (genre).

Layout: ``SRC/genres/<genre>/<genre>.000NN.wav`` (or ``SRC/genres_original/``, or SRC being
that genres directory). Splits come from the "fault-filtered" lists ``train_filtered.txt``,
``valid_filtered.txt``, ``test_filtered.txt`` (lines ``blues/blues.00000.wav``; looked for in
SRC, the genres dir, or ``split_dir``) when present, otherwise from a deterministic stratified
80/10/10 split per genre with ``seed``. The manifest root is the genres directory. The real
GTZAN has one corrupt file (``jazz.00054.wav``): it is reported and skipped like any bad file.
"""

from __future__ import annotations

import random
from pathlib import Path

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

SPLITS = ("train", "valid", "test")
GENRES = ("blues", "classical", "country", "disco", "hiphop", "jazz", "metal", "pop", "reggae", "rock")


def find_genres_dir(src: Path) -> Path:
    for d in (src / "genres", src / "genres_original", src / "Data" / "genres_original", src):
        if d.is_dir() and any((d / g).is_dir() for g in GENRES):
            return d
    raise PrepareError(
        f"{src}: no GTZAN genre directories found; expected {src}/genres/<genre>/<genre>.000NN.wav "
        f"(or genres_original/) with genres {', '.join(GENRES)}."
    )


def stratified_split(rels: list[str], seed: int, ratios=(0.8, 0.1, 0.1)) -> dict[str, list[str]]:
    """Per genre: shuffle the sorted files with ``seed``, then cut 80/10/10 (deterministic; at
    least one file per genre in valid and test when the genre has 3 or more)."""
    by_genre: dict[str, list[str]] = {}
    for r in sorted(rels):
        by_genre.setdefault(r.split("/")[0], []).append(r)
    out: dict[str, list[str]] = {s: [] for s in SPLITS}
    for genre, files in sorted(by_genre.items()):
        files = list(files)
        random.Random(f"{seed}:{genre}").shuffle(files)
        n = len(files)
        n_valid, n_test = int(ratios[1] * n + 0.5), int(ratios[2] * n + 0.5)
        if n >= 3:  # every genre in every split, even for tiny subsets
            n_valid, n_test = max(1, n_valid), max(1, n_test)
        n_train = n - n_valid - n_test
        out["train"] += files[:n_train]
        out["valid"] += files[n_train : n_train + n_valid]
        out["test"] += files[n_train + n_valid :]
    return out


def _read_list(path: Path) -> list[str]:
    rels = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            rel = line.strip()
            if not rel:
                continue
            if rel.count("/") != 1 or not rel.endswith(".wav"):
                raise PrepareError(f"{path}:{lineno}: expected '<genre>/<genre>.000NN.wav', got {rel!r}")
            rels.append(rel)
    return rels


def prepare_gtzan(
    src: str | Path,
    out: str | Path,
    *,
    split_dir: str | Path | None = None,
    seed: int = 0,
    **common,
) -> PrepareResult:
    """Write ``OUT/{train,valid,test}.tsv`` + ``.lbl`` (genre)."""
    config = common_options(common)
    src = Path(src)
    gdir = find_genres_dir(src)
    present = sorted(relpath_under(p, gdir) for p in gdir.glob("*/*.wav"))
    candidates = [Path(split_dir)] if split_dir else [src, gdir]
    lists = None
    for base in candidates:
        found = {s: base / f"{s}_filtered.txt" for s in SPLITS}
        have = [s for s, p in found.items() if p.is_file()]
        if have and len(have) < len(SPLITS):
            missing = [str(found[s]) for s in SPLITS if s not in have]
            raise PrepareError(f"{base}: found {have} split lists but not {missing}; provide all three or none.")
        if have:
            lists = found
            break
    if split_dir and lists is None:
        raise PrepareError(f"{split_dir}: no train_filtered.txt / valid_filtered.txt / test_filtered.txt found.")
    skipped: list[Problem] = []
    if lists is not None:
        have = set(present)
        split_rels = {}
        for s, path in lists.items():
            rels = _read_list(path)
            for r in rels:
                if r not in have:
                    skipped.append(Problem(str(gdir / r), "missing", f"listed in {path} but the audio file does not exist"))
            split_rels[s] = [r for r in rels if r in have]
    else:
        if not present:
            raise PrepareError(f"{gdir}: no '<genre>/*.wav' files found.")
        split_rels = stratified_split(present, seed)
    splits = {s: [Entry(r, {"lbl": r.split("/")[0]}) for r in rels] for s, rels in split_rels.items()}
    return finish(write_splits(gdir, splits, out, config, skipped=skipped))
