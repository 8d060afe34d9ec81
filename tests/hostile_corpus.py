"""A hostile keyword-spotting corpus for the reliability tests (issue #9, item 4).

:func:`build_hostile_corpus` writes, under ``root``::

    root/keywords/{train,valid,test}.tsv + .lbl      fairseq manifests (root line = root/keywords)
    root/keywords/wav/<split>/*.wav                  the audio, good and bad

the layout ``audiossl bench --tasks ks --data root`` reads, so one corpus drives every verb.
About 1,000 rows: mostly short (0.3-1.0 s) 16 kHz 16-bit tones in noise, four classes, plus a
planted mix, each bad kind once per split:

=================  ===============================================  ==================
kind               what the file is                                 expected reason
=================  ===============================================  ==================
corrupt_header     a WAV whose RIFF/fmt header bytes are garbage     ``unreadable``
truncated          header promises 1 s, half the data is missing    ``truncated``
zero_length        0 bytes                                          ``empty``
nan / inf          32-bit float WAV with NaN / inf samples          ``non_finite``
text / png / rand  a text file, a PNG header, random bytes as .wav  ``unreadable``
missing            listed in the manifest, not on disk              ``missing``
=================  ===============================================  ==================

Kept and fixed on load (they are good rows): 8 kHz and 48 kHz files (resampled), 6-channel files
(mixed down), and ONE 1-hour 16 kHz 16-bit file (~115 MB of low-level noise, train split only).
Manifest ``num_samples`` is the file's own frame count (fairseq's convention); bad rows get the
length they claim (1 s) so every row has one. Build time: ~2 s, ~135 MB on disk.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

SR = 16000
SPLITS = ("train", "valid", "test")
CLASSES = ("yes", "no", "up", "down")
_FREQ = {"yes": 300.0, "no": 600.0, "up": 1200.0, "down": 2400.0}

BAD_KINDS: dict[str, str] = {
    "corrupt_header": "unreadable",
    "corrupt_fmt": "unreadable",
    "truncated": "truncated",
    "zero_length": "empty",
    "nan": "non_finite",
    "inf": "non_finite",
    "text": "unreadable",
    "png": "unreadable",
    "random_bytes": "unreadable",
    "missing": "missing",
}
"""Bad kind → the reason code of :mod:`audiossl.audio.validate` every verb should report."""

FIXED_KINDS = ("sr8k", "sr48k", "six_channel")
"""Kept with a fix on load (resample / mix down), once per split; plus ``one_hour`` in train."""


@dataclass
class HostileCorpus:
    root: Path
    """``--data`` for ``audiossl bench``."""
    task_dir: Path
    """``root/keywords``: the manifests and label files."""
    wav_dir: Path
    """``task_dir/wav``: every audio file (input of ``audiossl prepare dir``)."""
    good: list[Path] = field(default_factory=list)
    """Every file that must survive every verb (including the fixed kinds below)."""
    bad: dict[Path, str] = field(default_factory=dict)
    """Planted bad file → expected reason code."""
    fixed: dict[Path, str] = field(default_factory=dict)
    """Good files that need a fix on load → kind (``sr8k``, ``sr48k``, ``six_channel``, ``one_hour``)."""
    splits: dict[str, list[tuple[Path, str, int]]] = field(default_factory=dict)
    """Split → manifest rows ``(path, label, num_samples)`` in manifest order."""

    @property
    def one_hour(self) -> Path:
        return next(p for p, k in self.fixed.items() if k == "one_hour")

    def manifest(self, split: str) -> Path:
        return self.task_dir / f"{split}.tsv"

    def uid(self, path: Path) -> str:
        """The utterance id the manifest gives ``path`` (relpath under the root, no extension)."""
        return Path(path).relative_to(self.task_dir).with_suffix("").as_posix()


def _tone(rng: np.random.Generator, label: str, seconds: float, sr: int = SR) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    x = 0.3 * np.sin(2 * np.pi * _FREQ[label] * t) + 0.02 * rng.standard_normal(t.size)
    return x.astype(np.float32)


def _write_one_hour(path: Path, rng: np.random.Generator, seconds: int = 3600) -> int:
    """1 hour of 16-bit noise at about -50 dBFS, written in 60 s blocks (~1 s in all)."""
    block = 60 * SR
    with sf.SoundFile(str(path), "w", samplerate=SR, channels=1, subtype="PCM_16", format="WAV") as f:
        for _ in range(seconds // 60):
            f.write(rng.integers(-100, 101, size=block, dtype=np.int16))
    return seconds * SR


def _write_bad(path: Path, kind: str, rng: np.random.Generator) -> None:
    if kind == "missing":
        return
    if kind == "zero_length":
        path.write_bytes(b"")
    elif kind == "text":
        path.write_text("this is a README, not audio\n" * 20)
    elif kind == "png":
        path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + rng.bytes(2000))
    elif kind == "random_bytes":
        path.write_bytes(b"\x13\x37" + rng.bytes(20000))
    elif kind in ("nan", "inf"):
        x = _tone(rng, "yes", 0.5)
        x[1000:1010] = np.nan if kind == "nan" else np.inf
        sf.write(str(path), x, SR, subtype="FLOAT")
    else:
        sf.write(str(path), _tone(rng, "yes", 1.0), SR, subtype="PCM_16")
        data = bytearray(path.read_bytes())
        if kind == "corrupt_header":
            data[8:16] = b"\x00GARBAGE"  # "WAVEfmt " marker gone: no format libsndfile knows
        elif kind == "corrupt_fmt":
            data[20:24] = b"\xff\xff\x00\x00"  # format tag 0xffff, 0 channels
        elif kind == "truncated":
            del data[len(data) // 2 :]  # the data chunk size still says 1 s
        path.write_bytes(bytes(data))


def build_hostile_corpus(root: str | os.PathLike, *, num_good: int = 960, seed: int = 0,
                         one_hour: bool = True) -> HostileCorpus:
    """Write the corpus (see the module docstring) and return what was planted where.

    ``num_good`` plain good files are spread 70/15/15 over train/valid/test; the planted kinds
    add 10 bad and 3 fixed rows per split (+ the 1-hour file in train when ``one_hour``).
    """
    rng = np.random.default_rng(seed)
    root = Path(root)
    task = root / "keywords"
    wav = task / "wav"
    corpus = HostileCorpus(root, task, wav)
    n_split = {"train": num_good - 2 * (num_good * 15 // 100), "valid": num_good * 15 // 100, "test": num_good * 15 // 100}
    for split in SPLITS:
        d = wav / split
        d.mkdir(parents=True, exist_ok=True)
        rows: list[tuple[Path, str, int]] = []
        for i in range(n_split[split]):
            label = CLASSES[i % len(CLASSES)]
            x = _tone(rng, label, float(rng.uniform(0.3, 1.0)))
            p = d / f"{label}_{i:04d}.wav"
            sf.write(str(p), x, SR, subtype="PCM_16")
            rows.append((p, label, x.size))
            corpus.good.append(p)
        for j, kind in enumerate(FIXED_KINDS):
            label = CLASSES[j % len(CLASSES)]
            p = d / f"fixed_{kind}.wav"
            if kind == "six_channel":
                x = np.repeat(_tone(rng, label, 0.8)[:, None], 6, axis=1)
                sf.write(str(p), x, SR, subtype="PCM_16")
            else:
                sr = 8000 if kind == "sr8k" else 48000
                x = _tone(rng, label, 0.8, sr)
                sf.write(str(p), x, sr, subtype="PCM_16")
            rows.append((p, label, x.shape[0]))
            corpus.good.append(p)
            corpus.fixed[p] = kind
        if split == "train" and one_hour:
            p = d / "fixed_one_hour.wav"
            rows.append((p, CLASSES[0], _write_one_hour(p, rng)))
            corpus.good.append(p)
            corpus.fixed[p] = "one_hour"
        for kind, reason in BAD_KINDS.items():
            p = d / f"bad_{kind}.wav"
            _write_bad(p, kind, rng)
            rows.append((p, CLASSES[0], SR))
            corpus.bad[p] = reason
        # interleave planted rows with good ones so no verb sees them all in one batch
        order = rng.permutation(len(rows))
        rows = [rows[k] for k in order]
        corpus.splits[split] = rows
        (task / f"{split}.tsv").write_text(
            f"{task}\n" + "".join(f"{p.relative_to(task).as_posix()}\t{n}\n" for p, _, n in rows)
        )
        (task / f"{split}.lbl").write_text("".join(f"{lab}\n" for _, lab, _ in rows))
    return corpus
