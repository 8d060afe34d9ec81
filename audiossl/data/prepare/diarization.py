"""A Kaldi-style diarization data dir (SUPERB SD / LibriMix / CALLHOME recipes) → ``.tsv`` + ``.seg``.

Layout: ``SRC/<split>/wav.scp`` (``<recording-id> <path>``, no pipes) and the speaker turns as
``SRC/<split>/rttm`` (``SPEAKER <recording-id> <channel> <onset> <duration> <NA> <NA> <speaker>
<NA> <NA>``) or, without an RTTM, ``segments`` (``<utt> <recording-id> <start> <end>``) +
``utt2spk``. SRC may also be one split directory (the split is then named after it). One manifest
row per recording; ``.seg`` holds its turns as ``start:end:speaker`` (seconds) and ``.reco`` the
recording id. Relative wav.scp paths are resolved against ``base_dir`` (Kaldi: the recipe
directory; default the current directory).

Turns that do not fit the audio stop the run with the file and line: an unknown recording id,
a turn that ends after its recording (more than ``tolerance`` seconds), a negative duration.
Missing or bad audio is reported and skipped like in every preparer.
"""

from __future__ import annotations

import os
from pathlib import Path

import soundfile as sf

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

Turns = dict[str, list[tuple[float, float, str, str]]]  # reco → (start, end, speaker, "file:line")


def _lines(path: Path):
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if line.strip() and not line.startswith(";;"):
                yield lineno, line.split()


def read_wav_scp(path: Path, base_dir: Path) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for lineno, parts in _lines(path):
        if len(parts) < 2:
            raise PrepareError(f"{path}:{lineno}: expected '<recording-id> <path>'")
        if parts[-1] == "|" or len(parts) > 2:
            raise PrepareError(f"{path}:{lineno}: commands (pipes) are not supported; give the audio file path "
                               f"(convert with the command first)")
        if parts[0] in out:
            raise PrepareError(f"{path}:{lineno}: recording id {parts[0]!r} appears twice")
        p = Path(parts[1])
        out[parts[0]] = p if p.is_absolute() else (base_dir / p)
    if not out:
        raise PrepareError(f"{path}: no recordings")
    return out


def read_rttm(path: Path, recos: dict[str, Path]) -> Turns:
    turns: Turns = {}
    for lineno, parts in _lines(path):
        where = f"{path}:{lineno}"
        if parts[0] != "SPEAKER":
            continue
        if len(parts) < 8:
            raise PrepareError(f"{where}: expected 'SPEAKER <reco> <chan> <onset> <dur> <NA> <NA> <speaker> ...'")
        reco, spk = parts[1], parts[7]
        try:
            onset, dur = float(parts[3]), float(parts[4])
        except ValueError:
            raise PrepareError(f"{where}: onset {parts[3]!r} / duration {parts[4]!r} are not numbers") from None
        if reco not in recos:
            raise PrepareError(f"{where}: recording id {reco!r} is not in wav.scp ({len(recos)} recordings); the RTTM "
                               f"belongs to another data dir")
        if onset < 0 or dur <= 0:
            raise PrepareError(f"{where}: onset {onset} / duration {dur} must be >= 0 / > 0")
        turns.setdefault(reco, []).append((onset, onset + dur, spk, where))
    return turns


def read_segments(segments: Path, utt2spk: Path, recos: dict[str, Path]) -> Turns:
    spk_of = {}
    for lineno, parts in _lines(utt2spk):
        if len(parts) != 2:
            raise PrepareError(f"{utt2spk}:{lineno}: expected '<utt> <speaker>'")
        spk_of[parts[0]] = parts[1]
    turns: Turns = {}
    for lineno, parts in _lines(segments):
        where = f"{segments}:{lineno}"
        if len(parts) != 4:
            raise PrepareError(f"{where}: expected '<utt> <recording-id> <start> <end>'")
        utt, reco = parts[0], parts[1]
        try:
            start, end = float(parts[2]), float(parts[3])
        except ValueError:
            raise PrepareError(f"{where}: start/end {parts[2]!r} {parts[3]!r} are not numbers") from None
        if reco not in recos:
            raise PrepareError(f"{where}: recording id {reco!r} is not in wav.scp")
        if utt not in spk_of:
            raise PrepareError(f"{where}: utterance {utt!r} has no speaker in {utt2spk}")
        if not 0 <= start < end:
            raise PrepareError(f"{where}: need 0 <= start < end, got {start} {end}")
        turns.setdefault(reco, []).append((start, end, spk_of[utt], where))
    return turns


def _split_dirs(src: Path) -> list[Path]:
    if (src / "wav.scp").is_file():
        return [src]
    dirs = sorted(d for d in src.iterdir() if d.is_dir() and (d / "wav.scp").is_file())
    if not dirs:
        raise PrepareError(f"{src}: no wav.scp in it or in its subdirectories; expected SRC/<split>/wav.scp + rttm "
                           f"(or segments + utt2spk)")
    return dirs


def prepare_diarization(src: str | Path, out: str | Path, *, base_dir: str | Path | None = None,
                        tolerance: float = 0.1, **common) -> PrepareResult:
    """Write ``OUT/<split>.tsv`` + ``.seg`` + ``.reco`` for every Kaldi data dir under SRC."""
    config = common_options(common)
    src = Path(src)
    base = Path(base_dir) if base_dir is not None else Path.cwd()
    splits: dict[str, list[tuple[Path, dict]]] = {}
    skipped: list[Problem] = []
    for d in _split_dirs(src):
        recos = read_wav_scp(d / "wav.scp", base)
        if (d / "rttm").is_file():
            turns = read_rttm(d / "rttm", recos)
        elif (d / "segments").is_file() and (d / "utt2spk").is_file():
            turns = read_segments(d / "segments", d / "utt2spk", recos)
        else:
            raise PrepareError(f"{d}: neither 'rttm' nor 'segments' + 'utt2spk' found; the speaker turns are needed")
        entries = []
        for reco, path in recos.items():
            if not path.is_file():
                skipped.append(Problem(str(path), "missing", f"listed in {d / 'wav.scp'} ({reco}) but does not exist"))
                continue
            segs = sorted(turns.get(reco, []))
            try:
                info = sf.info(str(path))
                dur = info.frames / info.samplerate
            except Exception:
                dur = None  # unreadable: write_splits reports and skips it
            if dur is not None:
                for s, e, spk, where in segs:
                    if e > dur + tolerance:
                        raise PrepareError(f"{where}: turn of {spk} ends at {e:.3f} s but recording {reco} ({path}) "
                                           f"lasts {dur:.3f} s; the turns do not match the audio")
            seg = " ".join(f"{s:.3f}:{min(e, dur or e):.3f}:{spk}" for s, e, spk, _ in segs)
            entries.append((path.resolve(), {"seg": seg, "reco": reco}))
        splits[d.name] = entries
    paths = [str(p.parent) for entries in splits.values() for p, _ in entries]
    if not paths:
        raise PrepareError(f"{src}: none of the recordings in wav.scp exist")
    root = Path(os.path.commonpath(paths))  # the deepest directory holding every recording
    rows = {k: [Entry(relpath_under(p, root), lab) for p, lab in v] for k, v in splits.items()}
    return finish(write_splits(root, rows, out, config, skipped=skipped))
