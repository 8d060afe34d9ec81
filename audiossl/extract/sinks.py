"""Output formats of the extractor: one directory ``OUT`` with an ``index.tsv`` and the arrays.

- ``npy``: ``OUT/<id>.npy`` per utterance (written atomically).
- ``hdf5``: datasets ``<id>`` in ``OUT/feats.h5`` (h5py).
- ``ark``: Kaldi ``OUT/feats.ark`` + ``OUT/feats.scp`` (kaldiio); matrices only (2-D at most).

``index.tsv`` (``id<TAB>shape<TAB>frame_rate``, shape like ``13x499x768``) is the commit record:
it is rewritten atomically (at most every 30 s, and at the end), and an id in it is finished. HDF5 and ark are
append-only containers that cannot be replaced atomically per utterance; an utterance appended but
not yet indexed when a run is killed is simply written again on resume (HDF5: the dataset is
replaced; ark: a later duplicate key, which kaldiio's ``load_scp`` resolves to the newest).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from audiossl.utils.fileio import atomic_save_npy, atomic_write_text

INDEX = "index.tsv"
FORMATS = ("npy", "hdf5", "ark")


def read_index(out: Path) -> dict[str, tuple[str, str]]:
    """``id → (shape, frame_rate)`` of finished utterances (empty when there is no index)."""
    path = out / INDEX
    done: dict[str, tuple[str, str]] = {}
    if not path.is_file():
        return done
    for lineno, line in enumerate(path.read_text().splitlines(), start=1):
        if lineno == 1 and line.startswith("id\t"):
            continue
        parts = line.split("\t")
        if len(parts) != 3:
            raise ValueError(f"{path}:{lineno}: expected 'id<TAB>shape<TAB>frame_rate', got {line!r}; delete the index to redo")
        done[parts[0]] = (parts[1], parts[2])
    return done


class Sink:
    """Writes arrays in one format and keeps ``index.tsv`` in step."""

    def __init__(self, out: str | Path, fmt: str) -> None:
        if fmt not in FORMATS:
            raise ValueError(f"unknown format {fmt!r}; choose one of {FORMATS}")
        self.out = Path(out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.fmt = fmt
        self.index = read_index(self.out)
        self._h5 = None
        self._last_commit = time.monotonic()

    def is_done(self, uid: str) -> bool:
        if uid not in self.index:
            return False
        if self.fmt == "npy":
            return self.path_of(uid).is_file()
        return True

    def path_of(self, uid: str) -> Path:
        return self.out / f"{uid}.npy"

    def write(self, uid: str, array: np.ndarray, frame_rate: float) -> None:
        """Store ``array`` (``[frame, dim]``, ``[layer, frame, dim]``, ``[dim]`` or ``[layer, dim]``)."""
        if self.fmt == "npy":
            atomic_save_npy(self.path_of(uid), array)
        elif self.fmt == "hdf5":
            import h5py  # lazy: only the HDF5 sink needs it

            if self._h5 is None:
                self._h5 = h5py.File(self.out / "feats.h5", "a")
            if uid in self._h5:
                del self._h5[uid]
            ds = self._h5.create_dataset(uid, data=array)
            ds.attrs["frame_rate"] = frame_rate
        else:
            import kaldiio  # lazy: only the Kaldi ark reader needs it

            if array.ndim > 2:
                raise ValueError("ark stores matrices only: pick one layer (--layers N), weighted layers, or --pool mean")
            kaldiio.save_ark(str(self.out / "feats.ark"), {uid: array}, scp=str(self.out / "feats.scp"), append=True)
        self.index[uid] = ("x".join(map(str, array.shape)), f"{frame_rate:g}")

    def maybe_commit(self, every_s: float = 30.0) -> None:
        """:meth:`commit` at most every ``every_s`` seconds: rewriting the whole index after every
        batch would cost O(utterances²) on a large corpus; a crash redoes at most that much work."""
        if time.monotonic() - self._last_commit >= every_s:
            self.commit()

    def commit(self) -> None:
        """Make everything written so far durable, then rewrite the index atomically."""
        self._last_commit = time.monotonic()
        if self._h5 is not None:
            self._h5.flush()
        lines = ["id\tshape\tframe_rate"] + [f"{k}\t{s}\t{r}" for k, (s, r) in self.index.items()]
        atomic_write_text(self.out / INDEX, "\n".join(lines) + "\n")

    def close(self) -> None:
        self.commit()
        if self._h5 is not None:
            self._h5.close()
            self._h5 = None
