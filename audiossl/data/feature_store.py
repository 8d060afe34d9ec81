"""Sharded, memory-mappable frame features with an index.

Layout of a store directory::

    meta.json              kind, dim, frame_rate, dtype, totals, free-form ``extra``
    index.tsv              utt_id<TAB>shard<TAB>offset<TAB>frames   (one line per utterance)
    shard_00000.npy        float array [frames_in_shard, dim]
    shard_00000.index.tsv  the index lines of that shard (written with it; makes resume possible)
    part_00001-of-00004.index.tsv  a finished part (torchrun rank / ``--shard I/N``): row<TAB>index line

Parts: a writer with ``part=(I, N)`` numbers its shards ``I, I+N, I+2N, …`` so no two parts
write the same file, and its ``close_part`` writes its own part index. :func:`merge_parts` joins
the N part indexes in manifest-row order into ``index.tsv`` and then ``meta.json`` (the store
exists once ``meta.json`` is there), each written atomically; it runs once, after every part is
done (rank 0 after a barrier, or the ``audiossl features merge`` step of a Slurm array).

Readers map shards with ``np.load(mmap_mode="r")`` so later stages (k-means, heads) stream
features without loading the whole corpus into RAM. Every file is written atomically.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from audiossl.utils.fileio import atomic_save_npy, atomic_write_json, atomic_write_text

META = "meta.json"
INDEX = "index.tsv"


@dataclass(frozen=True)
class Entry:
    utt_id: str
    shard: int
    offset: int
    frames: int


class FeatureWriter:
    """Append utterances ``[frames, dim]``; shards are flushed at ``shard_bytes``.

    With ``resume=True`` shards already on disk are kept and their utterances are reported by
    :attr:`done_ids`, so an interrupted dump redoes only what is missing.
    """

    def __init__(
        self,
        out: str | os.PathLike,
        *,
        kind: str,
        dim: int,
        frame_rate: float,
        dtype: str = "float32",
        shard_bytes: int = 256 << 20,
        extra: dict | None = None,
        resume: bool = False,
        part: tuple[int, int] = (0, 1),
    ) -> None:
        self.out = Path(out)
        self.part, self.num_parts = int(part[0]), int(part[1])
        self.out.mkdir(parents=True, exist_ok=True)
        self.kind, self.dim, self.frame_rate, self.dtype = kind, int(dim), float(frame_rate), np.dtype(dtype)
        self.shard_frames = max(1, shard_bytes // (self.dim * self.dtype.itemsize))
        self.extra = dict(extra or {})
        self.entries: list[Entry] = []
        self._buf: list[np.ndarray] = []
        self._buf_ids: list[str] = []
        self._buf_frames = 0
        self._shard = self.part
        if resume:
            self._load_existing()
        else:
            stale = [p for p in self.out.glob("shard_*") if self._mine(p)] + [self.out / _part_name(self.part, self.num_parts)]
            if self.part == 0:
                stale += [self.out / INDEX, self.out / META]
            for p in stale:
                if p.exists():
                    p.unlink()

    def _mine(self, p: Path) -> bool:
        return int(p.name.split("_")[1].split(".")[0]) % self.num_parts == self.part

    def _load_existing(self) -> None:
        meta = self.out / META
        if meta.exists():
            m = json.loads(meta.read_text())
            if m.get("dim") != self.dim or m.get("kind") != self.kind:
                raise ValueError(
                    f"{meta}: existing store has kind={m.get('kind')} dim={m.get('dim')}, this run "
                    f"writes kind={self.kind} dim={self.dim}; use another output directory."
                )
        for idx in sorted(self.out.glob("shard_*.index.tsv")):
            shard = int(idx.name.split("_")[1].split(".")[0])
            if not self._mine(idx) or not (self.out / f"shard_{shard:05d}.npy").exists():
                continue
            self.entries.extend(_read_index_lines(idx))
            self._shard = max(self._shard, shard + self.num_parts)

    @property
    def done_ids(self) -> set[str]:
        return {e.utt_id for e in self.entries} | set(self._buf_ids)

    def add(self, utt_id: str, feats: np.ndarray) -> None:
        feats = np.asarray(feats)
        if feats.ndim != 2 or feats.shape[1] != self.dim:
            raise ValueError(f"{utt_id}: features of shape {feats.shape}, expected [frames, {self.dim}]")
        self._buf.append(feats.astype(self.dtype, copy=False))
        self._buf_ids.append(utt_id)
        self._buf_frames += feats.shape[0]
        if self._buf_frames >= self.shard_frames:
            self._flush()

    def _flush(self) -> None:
        if not self._buf:
            return
        data = np.concatenate(self._buf, axis=0)
        lines, offset = [], 0
        for uid, arr in zip(self._buf_ids, self._buf):
            e = Entry(uid, self._shard, offset, arr.shape[0])
            self.entries.append(e)
            lines.append(_index_line(e))
            offset += arr.shape[0]
        atomic_save_npy(self.out / f"shard_{self._shard:05d}.npy", data)
        atomic_write_text(self.out / f"shard_{self._shard:05d}.index.tsv", "".join(lines))
        self._shard += self.num_parts
        self._buf, self._buf_ids, self._buf_frames = [], [], 0

    def _meta(self, entries: list[Entry]) -> dict:
        return {
            "kind": self.kind,
            "dim": self.dim,
            "frame_rate": self.frame_rate,
            "dtype": self.dtype.name,
            "num_utts": len(entries),
            "num_frames": int(sum(e.frames for e in entries)),
            "num_shards": len({e.shard for e in entries}),
            "extra": self.extra,
        }

    def close(self, order: list[str] | None = None) -> "FeatureStore":
        """Flush, then write ``index.tsv`` (in ``order`` when given) and ``meta.json``."""
        self._flush()
        entries = self.entries
        if order is not None:
            by_id = {e.utt_id: e for e in entries}
            entries = [by_id[u] for u in order if u in by_id]
        atomic_write_text(self.out / INDEX, "".join(_index_line(e) for e in entries))
        atomic_write_json(self.out / META, self._meta(entries))
        return FeatureStore(self.out)

    def close_part(self, rows: dict[str, int]) -> Path:
        """Flush, then write this part's index (``row<TAB>index line``, rows from ``rows``: utt id →
        manifest row) with the store's meta in a sidecar; :func:`merge_parts` joins the parts."""
        self._flush()
        entries = sorted((rows[e.utt_id], e) for e in self.entries if e.utt_id in rows)
        path = self.out / _part_name(self.part, self.num_parts)
        atomic_write_json(path.with_suffix(".json"), self._meta([e for _, e in entries]))
        atomic_write_text(path, "".join(f"{r}\t{_index_line(e)}" for r, e in entries))
        return path


def _part_name(i: int, n: int) -> str:
    return f"part_{i:05d}-of-{n:05d}.index.tsv"


def merge_parts(out: str | os.PathLike) -> "FeatureStore":
    """Join the finished parts of a sharded dump into ``index.tsv`` + ``meta.json`` (rows in
    manifest order; ``extra.num_skipped`` summed). Raises ``FileNotFoundError`` naming the parts
    that are missing. Idempotent: rerunning gives the same files."""
    out = Path(out)
    found = sorted(out.glob("part_*-of-*.index.tsv"))
    counts = {int(p.name.split("-of-")[1].split(".")[0]) for p in found}
    if len(counts) != 1:
        raise FileNotFoundError(f"{out}: no finished parts to merge" if not counts else
                                f"{out}: parts of different runs ({sorted(counts)} parts); rerun the dump with --no-resume")
    n = counts.pop()
    missing = [i for i in range(n) if not (out / _part_name(i, n)).is_file()]
    if missing:
        raise FileNotFoundError(f"{out}: parts {missing} of {n} are not finished yet; run them (they resume) before merging")
    rows: list[tuple[int, Entry]] = []
    metas = []
    for i in range(n):
        p = out / _part_name(i, n)
        metas.append(json.loads(p.with_suffix(".json").read_text()))
        for line in p.read_text().splitlines():
            r, rest = line.split("\t", 1)
            f = rest.split("\t")
            rows.append((int(r), Entry(f[0], int(f[1]), int(f[2]), int(f[3]))))
    rows.sort(key=lambda t: t[0])
    entries = [e for _, e in rows]
    meta = dict(metas[0])
    meta.update(num_utts=len(entries), num_frames=int(sum(e.frames for e in entries)),
                num_shards=len({e.shard for e in entries}), num_parts=n)
    extra = dict(meta.get("extra") or {})
    if any("num_skipped" in (m.get("extra") or {}) for m in metas):
        extra["num_skipped"] = sum(int((m.get("extra") or {}).get("num_skipped", 0)) for m in metas)
    meta["extra"] = extra
    atomic_write_text(out / INDEX, "".join(_index_line(e) for e in entries))
    atomic_write_json(out / META, meta)
    return FeatureStore(out)


def _index_line(e: Entry) -> str:
    return f"{e.utt_id}\t{e.shard}\t{e.offset}\t{e.frames}\n"


def _read_index_lines(path: Path) -> list[Entry]:
    out = []
    for lineno, line in enumerate(path.read_text().splitlines(), start=1):
        parts = line.split("\t")
        if len(parts) != 4:
            raise ValueError(f"{path}:{lineno}: expected 4 tab-separated fields, got {line!r}")
        out.append(Entry(parts[0], int(parts[1]), int(parts[2]), int(parts[3])))
    return out


class FeatureStore:
    """Read side: ``store[utt_id]`` or ``store[i]`` → ``[frames, dim]`` (a memory-mapped view)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        meta = self.path / META
        if not meta.is_file():
            raise FileNotFoundError(
                f"{self.path}: not a feature store (no {META}); create it with `audiossl features`."
            )
        self.meta = json.loads(meta.read_text())
        self.entries = _read_index_lines(self.path / INDEX)
        self._by_id = {e.utt_id: i for i, e in enumerate(self.entries)}
        self._shards: dict[int, np.ndarray] = {}

    kind = property(lambda self: self.meta["kind"])
    dim = property(lambda self: int(self.meta["dim"]))
    frame_rate = property(lambda self: float(self.meta["frame_rate"]))
    ids = property(lambda self: [e.utt_id for e in self.entries])

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def num_frames(self) -> int:
        return int(self.meta["num_frames"])

    def shard(self, k: int) -> np.ndarray:
        if k not in self._shards:
            self._shards[k] = np.load(self.path / f"shard_{k:05d}.npy", mmap_mode="r")
        return self._shards[k]

    def __getitem__(self, key: int | str) -> np.ndarray:
        e = self.entries[self._by_id[key] if isinstance(key, str) else key]
        return self.shard(e.shard)[e.offset : e.offset + e.frames]

    def __contains__(self, utt_id: str) -> bool:
        return utt_id in self._by_id

    def iter_shards(self) -> Iterator[tuple[np.ndarray, list[Entry]]]:
        """Each shard as ``(memmap [frames, dim], its entries)``, for streaming passes."""
        by_shard: dict[int, list[Entry]] = {}
        for e in self.entries:
            by_shard.setdefault(e.shard, []).append(e)
        for k in sorted(by_shard):
            yield self.shard(k), by_shard[k]
