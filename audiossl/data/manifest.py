"""fairseq-compatible manifests with parallel label files.

On disk, a split ``<dir>/<split>.tsv`` is::

    /abs/root/dir
    relpath/to/a.wav<TAB>num_samples
    ...

and each label kind is ``<dir>/<split>.<ext>`` (``.wrd``, ``.ltr``, ``.phn``, ``.spk``, ``.lbl``,
``.km``, ...) with exactly one line per manifest row. ``num_samples`` is at the file's own
sample rate (as fairseq writes it). Utterance ids are the relpath without its extension,
unless a ``.ids`` label file gives them (Kaldi ``wav.scp`` input). Row counts are checked
when a manifest is written and when it is read; ids must be unique.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Iterable, Iterator

from audiossl.utils.fileio import atomic_write_text


class ManifestError(ValueError):
    """A manifest or label file that cannot be used; the message names the file and the fix."""


@dataclass(frozen=True)
class Row:
    relpath: str
    num_samples: int


@dataclass
class Manifest:
    root: Path
    rows: list[Row]
    labels: dict[str, list[str]] = field(default_factory=dict)
    """Label kind (file extension without dot) → one string per row."""
    source: Path | None = None
    """The ``.tsv`` this was read from (None when built in memory)."""

    def __len__(self) -> int:
        return len(self.rows)

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        for ext, lines in self.labels.items():
            self._check_count(ext, lines)

    def _check_count(self, ext: str, lines: list[str]) -> None:
        if len(lines) != len(self.rows):
            where = self.label_path(ext) if self.source else f"labels '.{ext}'"
            raise ManifestError(
                f"{where}: {len(lines)} label lines but the manifest "
                f"{self.source or '(in memory)'} has {len(self.rows)} rows; every label file needs "
                f"exactly one line per manifest row (regenerate it from the same manifest)."
            )

    @property
    def ids(self) -> list[str]:
        if "ids" in self.labels:
            return self.labels["ids"]
        return [str(PurePosixPath(r.relpath).with_suffix("")) for r in self.rows]

    def path(self, i: int) -> Path:
        return self.root / self.rows[i].relpath

    def paths(self) -> Iterator[Path]:
        return (self.root / r.relpath for r in self.rows)

    def label_path(self, ext: str) -> Path:
        if self.source is None:
            raise ManifestError("in-memory manifest has no label paths; write it first")
        return self.source.with_suffix(f".{ext}")

    def add_labels(self, ext: str, lines: list[str]) -> None:
        self._check_count(ext, list(lines))
        self.labels[ext] = list(lines)

    def select(self, indices: Iterable[int]) -> "Manifest":
        """A new manifest with the given rows (and their labels), in the given order."""
        idx = list(indices)
        return Manifest(
            self.root,
            [self.rows[i] for i in idx],
            {ext: [lines[i] for i in idx] for ext, lines in self.labels.items()},
        )


def read_manifest(tsv: str | os.PathLike, labels: Iterable[str] | None = None, *, check_files: bool = False) -> Manifest:
    """Read ``<split>.tsv`` and the label files beside it.

    ``labels``: extensions to read (each must exist); None reads every ``<split>.*`` text label
    file present. Raises :class:`ManifestError` naming the file, the line and the fix.
    """
    tsv = Path(tsv)
    if not tsv.is_file():
        raise ManifestError(f"{tsv}: manifest not found (create it with `audiossl prepare`).")
    with open(tsv, encoding="utf-8") as f:
        lines = f.read().splitlines()
    if not lines:
        raise ManifestError(f"{tsv}: empty file; line 1 must be the root directory.")
    root = Path(lines[0].strip())
    rows: list[Row] = []
    for lineno, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) != 2:
            raise ManifestError(
                f"{tsv}:{lineno}: expected '<relpath><TAB><num_samples>', got {line!r}"
            )
        try:
            n = int(parts[1])
        except ValueError:
            raise ManifestError(f"{tsv}:{lineno}: num_samples {parts[1]!r} is not an integer") from None
        if n < 0:
            raise ManifestError(f"{tsv}:{lineno}: negative num_samples {n}")
        rows.append(Row(parts[0], n))
    m = Manifest(root, rows, {}, tsv)
    if labels is None:
        labels = [p.suffix[1:] for p in sorted(tsv.parent.glob(tsv.stem + ".*")) if _is_label_file(p, tsv)]
    for ext in labels:
        lp = m.label_path(ext)
        if not lp.is_file():
            raise ManifestError(f"{lp}: label file not found for manifest {tsv}")
        with open(lp, encoding="utf-8") as f:
            m.add_labels(ext, f.read().splitlines())
    _check_unique_ids(m)
    if check_files:
        missing = [(i, p) for i, p in enumerate(m.paths()) if not p.is_file()]
        if missing:
            i, p = missing[0]
            raise ManifestError(
                f"{tsv}:{i + 2}: audio file {p} does not exist ({len(missing)} missing in all); "
                f"check the root line ({root}) or re-run `audiossl prepare`."
            )
    return m


def _is_label_file(p: Path, tsv: Path) -> bool:
    # Only `<split>.<ext>` siblings with a single short extension; skip sidecars such as `.km.json`.
    return p != tsv and p.name.count(".") == tsv.name.count(".") and p.suffix not in {".json", ".npy", ".tsv", ".done"}


def _check_unique_ids(m: Manifest) -> None:
    seen: dict[str, int] = {}
    for i, uid in enumerate(m.ids):
        if uid in seen:
            raise ManifestError(
                f"{m.source}: duplicate utterance id {uid!r} on rows {seen[uid] + 2} and {i + 2}; "
                f"ids must be unique (remove the duplicate row)."
            )
        seen[uid] = i


def write_manifest(m: Manifest, tsv: str | os.PathLike) -> Path:
    """Write ``tsv`` and every label file beside it (each atomically). Returns the tsv path."""
    tsv = Path(tsv)
    for ext, lines in m.labels.items():
        m._check_count(ext, lines)
        bad = [i for i, line in enumerate(lines) if "\n" in line]
        if bad:
            raise ManifestError(f"label '.{ext}' row {bad[0]} contains a newline")
    body = [str(Path(m.root).resolve())] + [f"{r.relpath}\t{r.num_samples}" for r in m.rows]
    atomic_write_text(tsv, "\n".join(body) + "\n")
    m.source = tsv
    for ext, lines in m.labels.items():
        atomic_write_text(tsv.with_suffix(f".{ext}"), "".join(line + "\n" for line in lines))
    return tsv
