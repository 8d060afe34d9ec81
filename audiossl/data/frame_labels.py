"""Frame labels (k-means units, tokenizer codes) stored with their identity and frame rate.

``<split>.<name>`` holds one line per manifest row with space-separated integer labels (fairseq's
``.km`` format), and ``<split>.<name>.json`` beside it records what produced them::

    {"frame_rate": 50.0, "num_classes": 500, "tokenizer": {...}, "num_rows": N, "num_codebooks": 1}

Multi-codebook codes (BEATs' 8 frequency patches per time step, MERT's 8 RVQ levels) store each
frame's ``num_codebooks`` codes consecutively (frame-major), and read back as ``[frames, codebooks]``
arrays; single-codebook labels read back as ``[frames]``. Trainers check the rate and the per-utterance count against the model before step 1.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from audiossl.utils.fileio import atomic_write_json, atomic_write_text


class LabelError(ValueError):
    """Frame labels that do not fit; the message names the file, the row and both numbers."""


@dataclass
class LabelInfo:
    frame_rate: float
    num_classes: int
    tokenizer: dict = field(default_factory=dict)
    num_codebooks: int = 1
    """Codes per frame (each in ``[0, num_classes)``); rows are ``[frames, num_codebooks]`` when > 1."""


def sidecar(path: str | os.PathLike) -> Path:
    return Path(str(path) + ".json")


def write_frame_labels(path: str | os.PathLike, labels: list[np.ndarray], info: LabelInfo) -> Path:
    """Rows are ``[frames]`` (or ``[frames, num_codebooks]`` when ``info.num_codebooks > 1``)."""
    path = Path(path)
    c = info.num_codebooks
    for i, lab in enumerate(labels):
        lab = np.asarray(lab)
        if c > 1 and (lab.ndim != 2 or lab.shape[1] != c):
            raise LabelError(f"{path}: row {i + 1} has shape {list(lab.shape)}, expected [frames, {c}] codes")
        if c == 1 and lab.ndim != 1:
            raise LabelError(f"{path}: row {i + 1} has shape {list(lab.shape)}, expected [frames] (num_codebooks=1)")
        if lab.size and (lab.min() < 0 or lab.max() >= info.num_classes):
            raise LabelError(f"{path}: row {i + 1} has labels outside [0, {info.num_classes})")
    atomic_write_text(path, "".join(" ".join(map(str, np.asarray(l).reshape(-1).tolist())) + "\n" for l in labels))
    meta = {"frame_rate": info.frame_rate, "num_classes": info.num_classes, "tokenizer": info.tokenizer, "num_rows": len(labels)}
    if c > 1:
        meta["num_codebooks"] = c
    atomic_write_json(sidecar(path), meta)
    return path


def _read_sidecar(path: Path) -> dict:
    meta_path = sidecar(path)
    if not meta_path.is_file():
        raise LabelError(
            f"{path}: no {meta_path.name} beside it, so the frame rate and tokenizer are unknown; "
            f"write labels with `audiossl kmeans label` (or add the sidecar by hand)."
        )
    return json.loads(meta_path.read_text())


def _info(meta: dict, meta_path: Path) -> LabelInfo:
    info = LabelInfo(float(meta["frame_rate"]), int(meta["num_classes"]), meta.get("tokenizer", {}), int(meta.get("num_codebooks", 1)))
    if info.num_classes <= 0:
        raise LabelError(f"{meta_path}: num_classes is {info.num_classes}; the label dictionary is empty")
    if info.num_codebooks <= 0:
        raise LabelError(f"{meta_path}: num_codebooks is {info.num_codebooks}; it must be >= 1")
    return info


def read_label_info(path: str | os.PathLike) -> LabelInfo:
    """The sidecar of ``path`` alone (frame rate, classes, codebooks, tokenizer), without reading the labels."""
    path = Path(path)
    if not path.is_file():
        raise LabelError(f"{path}: label file not found")
    return _info(_read_sidecar(path), sidecar(path))


def read_frame_labels(path: str | os.PathLike) -> tuple[list[np.ndarray], LabelInfo]:
    """Read labels and their sidecar; checks row count, range and that the sidecar exists."""
    path = Path(path)
    if not path.is_file():
        raise LabelError(f"{path}: label file not found")
    meta_path = sidecar(path)
    meta = _read_sidecar(path)
    info = _info(meta, meta_path)
    c = info.num_codebooks
    labels = []
    for lineno, line in enumerate(path.read_text().splitlines(), start=1):
        try:
            lab = np.array(line.split(), dtype=np.int64)
        except ValueError:
            raise LabelError(f"{path}:{lineno}: non-integer label in {line[:60]!r}") from None
        if lab.size and (lab.min() < 0 or lab.max() >= info.num_classes):
            raise LabelError(
                f"{path}:{lineno}: label {int(lab.max() if lab.max() >= info.num_classes else lab.min())} "
                f"outside [0, {info.num_classes}) declared in {meta_path.name}"
            )
        if c > 1:
            if lab.size % c:
                raise LabelError(
                    f"{path}:{lineno}: {lab.size} codes is not a multiple of num_codebooks={c} declared in "
                    f"{meta_path.name} (a truncated line, or codes from another tokenizer)"
                )
            lab = lab.reshape(-1, c)
        labels.append(lab)
    if "num_rows" in meta and meta["num_rows"] != len(labels):
        raise LabelError(f"{path}: {len(labels)} rows but {meta_path.name} says {meta['num_rows']} (half-written file?)")
    return labels, info


def write_fairseq_dict(path: str | os.PathLike, num_classes: int) -> Path:
    """fairseq's ``dict.km.txt``: ``<symbol> <count>`` per class."""
    atomic_write_text(path, "".join(f"{i} 1\n" for i in range(num_classes)))
    return Path(path)
