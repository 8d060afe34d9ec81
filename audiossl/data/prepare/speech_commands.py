"""Speech Commands v0.01/v0.02 → SUPERB keyword spotting (12 classes): train/valid/test
``.tsv`` + ``.lbl``.

Layout: ``SRC/<word>/<hash>_nohash_<n>.wav``, ``SRC/_background_noise_/*.wav``,
``SRC/validation_list.txt`` and ``SRC/testing_list.txt`` (paths relative to SRC). Classes: the
ten words yes,no,up,down,left,right,on,off,stop,go, ``_unknown_`` (every other word) and
``_silence_``. ``_silence_`` clips are cut from the background-noise files at fixed 1 s
offsets, written to ``OUT/_silence_/`` and shared out to train/valid/test by position within
each noise file (first 80 % train, next 10 % valid, last 10 % test), so no stretch of noise
lands in two splits. A ``SRC/_silence_`` directory (as in the v0.01 test set) is used as is.
Generated clips live outside the corpus, so their manifest rows hold absolute paths.

SRC may also be the SUPERB test set itself (``speech_commands_test_set_v0.01``: class dirs
incl. ``_unknown_`` and ``_silence_``, no lists): every file goes to ``test``. With
``test_set=DIR`` the train/valid splits come from SRC and ``test`` from DIR (the SUPERB setup).
"""

from __future__ import annotations

from pathlib import Path

import soundfile as sf

from audiossl.audio.io import AudioError, load_audio, save_audio
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

WORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
UNKNOWN, SILENCE, NOISE = "_unknown_", "_silence_", "_background_noise_"
CLASSES = WORDS + (UNKNOWN, SILENCE)


def label_of(class_dir: str) -> str:
    """SUPERB class of a word directory: the ten words keep their name, others → ``_unknown_``."""
    if class_dir in WORDS or class_dir == SILENCE:
        return class_dir
    return UNKNOWN


def _read_list(path: Path, src: Path) -> set[str]:
    rels = set()
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            rel = line.strip()
            if not rel:
                continue
            if rel.count("/") != 1:
                raise PrepareError(f"{path}:{lineno}: expected '<word>/<file>.wav' relative to {src}, got {rel!r}")
            rels.add(rel)
    return rels


def _class_files(src: Path) -> list[str]:
    """Relpaths ``<dir>/<file>.wav`` of every class directory (not the background noise)."""
    return sorted(
        relpath_under(p, src) for p in src.glob("*/*.wav") if p.parent.name != NOISE and p.is_file()
    )


def cut_silence(
    noise_dir: Path,
    out_dir: Path,
    ratios: tuple[float, float, float] = (0.8, 0.1, 0.1),
    clip_seconds: float = 1.0,
    sample_rate: int = 16000,
) -> tuple[dict[str, list[str]], list[Problem]]:
    """Cut ``clip_seconds`` clips at fixed offsets from each noise file (sorted) into
    ``out_dir/<noise stem>_<k>.wav``. Returns (split → absolute clip paths, unreadable noise files)."""
    by_split: dict[str, list[str]] = {"train": [], "valid": [], "test": []}
    problems: list[Problem] = []
    for noise in sorted(noise_dir.glob("*.wav")):
        try:
            wav, sr = load_audio(noise, sample_rate)
        except AudioError as e:
            problems.append(Problem(e.path, e.reason, e.detail))
            continue
        step = int(round(clip_seconds * sr))
        n = wav.shape[0] // step
        if n == 0:
            problems.append(Problem(str(noise), "too_short", f"shorter than one {clip_seconds}s silence clip"))
            continue
        n_train = int(ratios[0] * n + 0.5)
        n_valid = int(ratios[1] * n + 0.5)
        for k in range(n):
            clip = out_dir / f"{noise.stem}_{k:03d}.wav"
            if not clip.is_file() or sf.info(str(clip)).frames != step:
                save_audio(clip, wav[k * step : (k + 1) * step], sr)
            split = "train" if k < n_train else "valid" if k < n_train + n_valid else "test"
            by_split[split].append(str(clip.resolve()))
    return by_split, problems


def prepare_speech_commands(
    src: str | Path,
    out: str | Path,
    *,
    test_set: str | Path | None = None,
    silence_ratios: tuple[float, float, float] = (0.8, 0.1, 0.1),
    **common,
) -> PrepareResult:
    """Write ``OUT/{train,valid,test}.tsv`` + ``.lbl`` (one of :data:`CLASSES`) and the
    generated ``OUT/_silence_/*.wav`` clips."""
    config = common_options(common)
    src = Path(src).resolve()
    out = Path(out)
    if not src.is_dir():
        raise PrepareError(f"{src}: not a directory; expected the Speech Commands directory (<word>/*.wav).")
    val_list, test_list = src / "validation_list.txt", src / "testing_list.txt"
    files = _class_files(src)
    if not files:
        raise PrepareError(f"{src}: no '<word>/*.wav' files; expected the Speech Commands layout.")
    splits: dict[str, list[Entry]] = {"train": [], "valid": [], "test": []}
    skipped: list[Problem] = []
    has_lists = val_list.is_file() or test_list.is_file()
    if not has_lists:
        if not (src / UNKNOWN).is_dir():
            raise PrepareError(
                f"{src}: neither {val_list.name} nor {test_list.name} found; expected both lists "
                f"(Speech Commands v0.01/v0.02) or the SUPERB test set layout with an {UNKNOWN}/ dir."
            )
        if test_set is not None:
            raise PrepareError(f"{src}: is a test set (no lists); pass the training corpus as SRC with --test-set.")
        splits = {"test": [Entry(r, {"lbl": label_of(r.split("/")[0])}) for r in files]}
        return finish(write_splits(src, splits, out, config))
    for path in (val_list, test_list):
        if not path.is_file():
            raise PrepareError(f"{path}: not found; expected the list of '<word>/<file>.wav' paths of that split.")
    valid, test = _read_list(val_list, src), _read_list(test_list, src)
    present = set(files)
    for name, listed in ((val_list, valid), (test_list, test)):
        for rel in sorted(listed - present):
            skipped.append(Problem(str(src / rel), "missing", f"listed in {name} but the audio file does not exist"))
    for rel in files:
        split = "valid" if rel in valid else "test" if rel in test else "train"
        splits[split].append(Entry(rel, {"lbl": label_of(rel.split("/")[0])}))
    if not (src / SILENCE).is_dir():
        if not (src / NOISE).is_dir():
            raise PrepareError(f"{src / NOISE}: not found; expected the background-noise wavs to cut {SILENCE} clips from.")
        clips, problems = cut_silence(src / NOISE, out / SILENCE, silence_ratios)
        skipped.extend(problems)
        for split, paths in clips.items():
            splits[split].extend(Entry(p, {"lbl": SILENCE}) for p in paths)
    if test_set is not None:
        tdir = Path(test_set).resolve()
        if not (tdir / UNKNOWN).is_dir() or not (tdir / SILENCE).is_dir():
            raise PrepareError(f"{tdir}: expected the SUPERB test set layout (<word>/, {UNKNOWN}/, {SILENCE}/ with .wav files).")
        # The test rows live under another root: store them as absolute paths.
        splits["test"] = [Entry(str(tdir / r), {"lbl": label_of(r.split("/")[0])}) for r in _class_files(tdir)]
    return finish(write_splits(src, splits, out, config, skipped=skipped))
