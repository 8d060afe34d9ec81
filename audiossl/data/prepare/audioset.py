"""AudioSet segments CSVs + a directory of downloaded clips → ``<split>.tsv`` + ``.tags`` + ``.mid``.

AudioSet ships no audio, only segment lists (``balanced_train_segments.csv``, ``eval_segments.csv``,
``unbalanced_train_segments.csv``)::

    # Segments csv created Sun Mar  5 10:54:31 2017
    # num_ytids=22160, num_segs=22160, num_unique_labels=527, num_positive_labels=52882
    # YTID, start_seconds, end_seconds, positive_labels
    --PJHxphWEs, 30.000, 40.000, "/m/09x0r,/t/dd00088"

Users download the clips with one of several tools, so a clip is matched to its CSV row by YTID
from any of the common file names (any audio extension soundfile reads, anywhere under SRC):
``<YTID>``, ``Y<YTID>``, ``<YTID>_<start>``, ``<YTID>_<start>_<end>`` (optionally ``Y``-prefixed;
start/end in seconds or milliseconds). A name carrying a start time matches only the row whose
segment starts there. Rows without a clip are normal (videos get taken down): they are counted
and listed in ``OUT/missing_<split>.txt``, not treated as errors. Bad clips are reported with
their reason by the shared probe and skipped.

Each CSV becomes one split named after it (``balanced_train_segments.csv`` → ``balanced_train``)
unless given as ``NAME=PATH``. ``.mid`` holds the label ids (``/m/09x0r,/t/dd00088``); ``.tags``
holds the display names from ``class_labels_indices.csv`` when given (commas inside a name become
``;`` because ``.tags`` is comma-separated), else the ids.
"""

from __future__ import annotations

import csv
import logging
import re
from dataclasses import dataclass, field
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
from audiossl.data.sources import find_audio
from audiossl.utils.fileio import atomic_write_text

log = logging.getLogger("audiossl.prepare")

STANDARD_CSVS = ("balanced_train_segments.csv", "eval_segments.csv", "unbalanced_train_segments.csv")
_YTID = re.compile(r"[A-Za-z0-9_-]{11}")
_NUM = r"\d+(?:\.\d+)?"
# YTIDs may themselves contain '_' and start with 'Y', so every reading of a name is tried.
_NAME = re.compile(rf"(?P<id>[A-Za-z0-9_-]{{11}})(?:_(?P<start>{_NUM})(?:_(?P<end>{_NUM}))?)?")


@dataclass(frozen=True)
class Segment:
    """One CSV row: the clip ``ytid`` from ``start`` to ``end`` seconds with label ids ``mids``."""

    ytid: str
    start: float
    end: float
    mids: tuple[str, ...]
    line: int


@dataclass
class AudioSetResult(PrepareResult):
    """:class:`PrepareResult` + the CSV rows that have no clip (split → count)."""

    missing: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        text = super().summary()
        if self.missing:
            per = ", ".join(f"{s}={n}" for s, n in self.missing.items())
            text += f"; CSV rows without a clip: {per} (normal for AudioSet; listed in {self.out}/missing_<split>.txt)"
        return text


def read_segments_csv(path: Path) -> tuple[list[Segment], list[Problem]]:
    """Rows of an AudioSet segments CSV (``#`` comment lines skipped). Malformed rows raise
    :class:`PrepareError` naming ``path:line``; a repeated YTID keeps the first row and reports the
    others as problems (a clip file could not tell them apart)."""
    if not path.is_file():
        raise PrepareError(f"{path}: not found; expected an AudioSet segments CSV (e.g. balanced_train_segments.csv).")
    rows: list[Segment] = []
    dups: list[Problem] = []
    seen: dict[str, int] = {}
    with open(path, encoding="utf-8", newline="") as f:
        for lineno, fields in enumerate(csv.reader(f, skipinitialspace=True), start=1):
            if not fields or not "".join(fields).strip() or fields[0].lstrip().startswith("#"):
                continue
            if len(fields) != 4:
                raise PrepareError(
                    f"{path}:{lineno}: expected 4 fields 'YTID, start_seconds, end_seconds, \"label1,label2\"', "
                    f"got {len(fields)}: {','.join(fields)!r} (quote the label list)"
                )
            ytid, start_s, end_s, labels = (x.strip() for x in fields)
            if not _YTID.fullmatch(ytid):
                raise PrepareError(f"{path}:{lineno}: YTID {ytid!r} is not an 11-character YouTube id")
            try:
                start, end = float(start_s), float(end_s)
            except ValueError:
                raise PrepareError(f"{path}:{lineno}: start/end {start_s!r}, {end_s!r} are not numbers of seconds") from None
            if not end > start >= 0:
                raise PrepareError(f"{path}:{lineno}: segment {start}..{end} s is empty or negative; expected 0 <= start < end")
            mids = tuple(m.strip() for m in labels.split(",") if m.strip())
            if not mids:
                raise PrepareError(f"{path}:{lineno}: no labels for {ytid}; expected a quoted list like \"/m/09x0r,/t/dd00088\"")
            if ytid in seen:
                dups.append(Problem(f"{path}:{lineno}", "duplicate row", f"YTID {ytid} already listed on line {seen[ytid]}; kept that row"))
                continue
            seen[ytid] = lineno
            rows.append(Segment(ytid, start, end, mids, lineno))
    if not rows:
        raise PrepareError(f"{path}: no segment rows (only comments or blank lines); expected 'YTID, start, end, \"labels\"' lines.")
    return rows, dups


def read_class_labels(path: Path) -> dict[str, str]:
    """``class_labels_indices.csv`` (header ``index,mid,display_name``) → mid → display name."""
    if not path.is_file():
        raise PrepareError(f"{path}: not found; expected AudioSet's class_labels_indices.csv (index,mid,display_name).")
    names: dict[str, str] = {}
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f, skipinitialspace=True)
        missing = [c for c in ("mid", "display_name") if c not in (reader.fieldnames or [])]
        if missing:
            raise PrepareError(f"{path}:1: missing column(s) {missing}; expected header index,mid,display_name")
        for lineno, row in enumerate(reader, start=2):
            mid, name = (row["mid"] or "").strip(), (row["display_name"] or "").strip()
            if not mid or not name:
                raise PrepareError(f"{path}:{lineno}: empty mid or display_name")
            if mid in names:
                raise PrepareError(f"{path}:{lineno}: mid {mid} listed twice")
            names[mid] = name.replace(",", ";")
    if not names:
        raise PrepareError(f"{path}: no rows after the header")
    return names


def name_readings(stem: str) -> list[tuple[str, float | None]]:
    """Every ``(ytid, start or None)`` a clip file stem can mean (see the module docstring)."""
    out = []
    for prefix in ("", "Y"):
        if prefix and not stem.startswith(prefix):
            continue
        m = _NAME.fullmatch(stem[len(prefix):])
        if m is None:
            continue
        out.append((m["id"], float(m["start"]) if m["start"] else None))
    return out


def _same_start(file_start: float, row_start: float) -> bool:
    return abs(file_start - row_start) < 1e-3 or abs(file_start / 1000.0 - row_start) < 1e-3


def match_clips(files: list[Path], segments: dict[str, Segment]) -> tuple[dict[str, Path], int]:
    """YTID → clip path for the files that match a row (first in sorted order when several do).
    Returns the matches and the number of files matching no row."""
    found: dict[str, Path] = {}
    unmatched = 0
    for path in sorted(files):
        hits = [y for y, start in name_readings(path.stem) if y in segments and (start is None or _same_start(start, segments[y].start))]
        if not hits:
            unmatched += 1
        elif hits[0] in found:
            log.debug("clip %s: YTID %s already matched %s; ignored", path, hits[0], found[hits[0]])
        else:
            found[hits[0]] = path
    return found, unmatched


def _parse_csv_arg(item: str | Path) -> tuple[str, Path]:
    text = str(item)
    if "=" in text and not Path(text).exists():
        name, path = text.split("=", 1)
        return name, Path(path)
    path = Path(text)
    return path.stem.removesuffix("_segments"), path


def _default_csvs(src: Path) -> list[Path]:
    found = [d / n for d in (src, src / "meta", src.parent) for n in STANDARD_CSVS if (d / n).is_file()]
    if not found:
        raise PrepareError(
            f"{src}: no segments CSV given and none of {', '.join(STANDARD_CSVS)} found in {src}, {src / 'meta'} or "
            f"{src.parent}; pass --csv PATH (or NAME=PATH) for each split."
        )
    return found


def prepare_audioset(
    src: str | Path,
    out: str | Path,
    *,
    csv_files: list[str | Path] | None = None,
    class_labels: str | Path | None = None,
    **common,
) -> AudioSetResult:
    """Write ``OUT/<split>.tsv`` + ``.tags`` + ``.mid`` for each segments CSV, clips found under ``src``.

    ``csv_files``: CSV paths or ``NAME=PATH`` (None: the standard CSVs found in SRC, SRC/meta or
    the parent of SRC). ``class_labels``: ``class_labels_indices.csv`` for display names in ``.tags``.
    """
    config = common_options(common)
    src, out = Path(src), Path(out)
    if not src.is_dir():
        raise PrepareError(f"{src}: not a directory; expected the directory of downloaded AudioSet clips.")
    pairs = [_parse_csv_arg(c) for c in (csv_files or _default_csvs(src))]
    names = [n for n, _ in pairs]
    if len(set(names)) != len(names):
        raise PrepareError(f"two CSVs map to the same split name ({names}); name them with NAME=PATH.")
    display = read_class_labels(Path(class_labels)) if class_labels else None
    files = find_audio(src)
    if not files:
        raise PrepareError(f"{src}: no audio files found (looked for .wav, .flac, .ogg, .mp3, ... recursively).")
    splits: dict[str, list[Entry]] = {}
    skipped: list[Problem] = []
    missing: dict[str, int] = {}
    out.mkdir(parents=True, exist_ok=True)
    for split, path in pairs:
        rows, dups = read_segments_csv(path)
        skipped.extend(dups)
        by_id = {r.ytid: r for r in rows}
        clips, unmatched = match_clips(files, by_id)
        entries = []
        for r in rows:
            if r.ytid not in clips:
                continue
            if display is not None:
                unknown = [m for m in r.mids if m not in display]
                if unknown:
                    raise PrepareError(f"{path}:{r.line}: label(s) {unknown} are not in {class_labels}; use the matching class_labels_indices.csv")
                tags = ",".join(display[m] for m in r.mids)
            else:
                tags = ",".join(r.mids)
            entries.append(Entry(relpath_under(clips[r.ytid], src), {"tags": tags, "mid": ",".join(r.mids)}))
        absent = [r for r in rows if r.ytid not in clips]
        missing[split] = len(absent)
        atomic_write_text(out / f"missing_{split}.txt", "".join(f"{r.ytid}\t{r.start:.3f}\t{r.end:.3f}\n" for r in absent))
        log.info("%s (%s): %d of %d rows have a clip, %d have none; %d files under %s match no row of this CSV",
                 split, path, len(entries), len(rows), len(absent), unmatched, src)
        splits[split] = entries
    result = finish(write_splits(src, splits, out, config, skipped=skipped))
    return AudioSetResult(**vars(result), missing=missing)
