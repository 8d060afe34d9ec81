"""VoxCeleb1 → speaker identification (``sid_{train,valid,test}`` + ``.spk``) and verification
(``asv_test.tsv`` + ``asv_trials.txt``; ``asv_train.tsv`` + ``.spk`` from the other speakers).

Layout: ``SRC/wav/<idXXXXX>/<ytid>/<nnnnn>.wav`` (the manifest root is ``SRC/wav``, relpaths
``id10001/1zcIwhmdeo4/00001.wav``), ``iden_split.txt`` lines ``<1|2|3> <id/ytid/nnnnn.wav>``
(1 train, 2 dev, 3 test) and ``veri_test.txt`` / ``veri_test2.txt`` lines
``<0|1> <path1> <path2>``. The metadata files are looked for in SRC and ``SRC/meta``.
``asv_trials.txt`` lines are ``<0|1> <uttid1> <uttid2>`` with the manifest ids (relpath without
``.wav``); trials touching a skipped file are dropped and counted.
"""

from __future__ import annotations

import logging
from pathlib import Path, PurePosixPath

from audiossl.audio.validate import Problem
from audiossl.data.prepare.common import (
    Entry,
    PrepareError,
    PrepareResult,
    common_options,
    finish,
    relpath_under,
    require_file,
    write_splits,
)
from audiossl.utils.fileio import atomic_write_text

log = logging.getLogger("audiossl.prepare")

IDEN_SPLITS = {"1": "sid_train", "2": "sid_valid", "3": "sid_test"}


def _find(src: Path, names: tuple[str, ...]) -> Path | None:
    for base in (src, src / "meta"):
        for n in names:
            if (base / n).is_file():
                return base / n
    return None


def _check_rel(rel: str, path: Path, lineno: int) -> str:
    if len(PurePosixPath(rel).parts) != 3 or not rel.endswith(".wav"):
        raise PrepareError(f"{path}:{lineno}: expected a path '<idXXXXX>/<ytid>/<nnnnn>.wav', got {rel!r}")
    return rel


def read_iden_split(path: Path) -> list[tuple[str, str]]:
    """``(split name, relpath)`` per line of ``iden_split.txt``."""
    items = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            parts = line.split()
            if len(parts) != 2 or parts[0] not in IDEN_SPLITS:
                raise PrepareError(f"{path}:{lineno}: expected '<1|2|3> <id/ytid/nnnnn.wav>', got {line.strip()!r}")
            items.append((IDEN_SPLITS[parts[0]], _check_rel(parts[1], path, lineno)))
    return items


def read_trials(path: Path) -> list[tuple[str, str, str]]:
    """``(label, relpath1, relpath2)`` per line of ``veri_test.txt``."""
    trials = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            parts = line.split()
            if len(parts) != 3 or parts[0] not in ("0", "1"):
                raise PrepareError(f"{path}:{lineno}: expected '<0|1> <path1> <path2>', got {line.strip()!r}")
            trials.append((parts[0], _check_rel(parts[1], path, lineno), _check_rel(parts[2], path, lineno)))
    return trials


def _uid(rel: str) -> str:
    return str(PurePosixPath(rel).with_suffix(""))


def prepare_voxceleb1(
    src: str | Path,
    out: str | Path,
    *,
    iden_split: str | Path | None = None,
    trials: str | Path | None = None,
    **common,
) -> PrepareResult:
    """Write the SID splits (when ``iden_split.txt`` is found or given) and the ASV files (when
    ``veri_test.txt``/``veri_test2.txt`` is found or given); at least one must exist."""
    config = common_options(common)
    src = Path(src)
    wav_root = src / "wav"
    if not wav_root.is_dir():
        raise PrepareError(f"{wav_root}: not found; expected VoxCeleb1 audio as {wav_root}/<idXXXXX>/<ytid>/<nnnnn>.wav.")
    iden = require_file(Path(iden_split), "the identification split list (lines '<1|2|3> <id/ytid/nnnnn.wav>')") if iden_split else _find(src, ("iden_split.txt",))
    veri = require_file(Path(trials), "verification trials (lines '<0|1> <path1> <path2>')") if trials else _find(src, ("veri_test.txt", "veri_test2.txt"))
    if iden is None and veri is None:
        raise PrepareError(
            f"{src}: neither iden_split.txt nor veri_test.txt/veri_test2.txt found (looked in {src} and "
            f"{src / 'meta'}); download them from the VoxCeleb1 page or pass --iden-split / --trials."
        )
    present = {relpath_under(p, wav_root) for p in wav_root.glob("*/*/*.wav")}
    skipped: list[Problem] = []
    splits: dict[str, list[Entry]] = {}

    def usable(rel: str, listfile: Path) -> bool:
        if rel in present:
            return True
        skipped.append(Problem(str(wav_root / rel), "missing", f"listed in {listfile} but the audio file does not exist"))
        return False

    if iden is not None:
        splits.update({name: [] for name in IDEN_SPLITS.values()})
        for split, rel in read_iden_split(iden):
            if usable(rel, iden):
                splits[split].append(Entry(rel, {"spk": rel.split("/")[0]}))
    trial_list: list[tuple[str, str, str]] = []
    if veri is not None:
        trial_list = read_trials(veri)
        test_files = sorted({r for _, a, b in trial_list for r in (a, b)})
        test_spk = {r.split("/")[0] for r in test_files}
        splits["asv_test"] = [Entry(r) for r in test_files if usable(r, veri)]
        splits["asv_train"] = [Entry(r, {"spk": r.split("/")[0]}) for r in sorted(present) if r.split("/")[0] not in test_spk]
    result = write_splits(wav_root, splits, out, config, skipped=skipped)
    if veri is not None:
        tsv = result.manifests["asv_test"]
        with open(tsv, encoding="utf-8") as f:
            kept = {line.split("\t")[0] for line in f.read().splitlines()[1:] if line}
        lines = [f"{lab} {_uid(a)} {_uid(b)}" for lab, a, b in trial_list if a in kept and b in kept]
        dropped = len(trial_list) - len(lines)
        if dropped:
            log.warning("dropped %d of %d trials that use a skipped file", dropped, len(trial_list))
        trials_out = Path(out) / "asv_trials.txt"
        atomic_write_text(trials_out, "".join(line + "\n" for line in lines))
        result.extra_files.append(trials_out)
    return finish(result)
