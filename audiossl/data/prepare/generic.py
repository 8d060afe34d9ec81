"""A plain directory of audio, or a Kaldi data directory, → one manifest.

- ``prepare_dir(SRC, OUT, split="train")``: every audio file under SRC (recursive, sorted)
  → ``OUT/<split>.tsv`` with root SRC; no labels.
- ``prepare_wav_scp(SCP, OUT)``: Kaldi ``wav.scp`` (``<uttid> <path>``; piped commands are
  refused) + optional ``text`` and ``utt2spk`` beside it → ``OUT/<split>.tsv`` with ``.ids``
  (the Kaldi utt ids, so downstream ids match the Kaldi data dir), ``.wrd`` and ``.spk``.
  Relative paths are resolved against ``base_dir`` (default: the current directory, as in a
  Kaldi recipe); the manifest root is the deepest directory common to all files. Rows are in
  utt-id order (Kaldi sorting).
"""

from __future__ import annotations

import os
from pathlib import Path

from audiossl.data.prepare.common import (
    Entry,
    PrepareError,
    PrepareResult,
    common_options,
    finish,
    relpath_under,
    write_splits,
)
from audiossl.data.sources import find_audio, read_wav_scp


def prepare_dir(src: str | Path, out: str | Path, *, split: str = "train", **common) -> PrepareResult:
    """Write ``OUT/<split>.tsv`` listing every audio file under ``src``."""
    config = common_options(common)
    src = Path(src)
    if not src.is_dir():
        raise PrepareError(f"{src}: not a directory; expected a directory of audio files.")
    files = find_audio(src)
    if not files:
        raise PrepareError(f"{src}: no audio files found (looked for .wav, .flac, .ogg, .mp3, ... recursively).")
    entries = [Entry(relpath_under(p, src)) for p in files]
    return finish(write_splits(src, {split: entries}, out, config))


def _read_kaldi_map(path: Path, allow_empty_value: bool) -> dict[str, str]:
    out: dict[str, str] = {}
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            parts = line.strip().split(maxsplit=1)
            if len(parts) < 2 and not allow_empty_value:
                raise PrepareError(f"{path}:{lineno}: expected '<uttid> <value>', got {line.strip()!r}")
            if parts[0] in out:
                raise PrepareError(f"{path}:{lineno}: duplicate utt id {parts[0]!r}")
            out[parts[0]] = " ".join(parts[1].split()) if len(parts) > 1 else ""
    return out


def prepare_wav_scp(
    scp: str | Path,
    out: str | Path,
    *,
    split: str | None = None,
    text: str | Path | None = None,
    utt2spk: str | Path | None = None,
    base_dir: str | Path | None = None,
    **common,
) -> PrepareResult:
    """Write ``OUT/<split>.tsv`` + ``.ids`` (+ ``.wrd`` from ``text``, ``.spk`` from ``utt2spk``).

    ``text``/``utt2spk`` default to the files of that name beside ``scp`` when they exist.
    ``split`` defaults to the name of the directory holding ``scp`` (``data/train/wav.scp`` →
    ``train``). Every utt in the scp needs a line in ``text``/``utt2spk`` (run Kaldi's
    ``utils/fix_data_dir.sh`` otherwise).
    """
    config = common_options(common)
    scp = Path(scp)
    if not scp.is_file():
        raise PrepareError(f"{scp}: not found; expected a Kaldi wav.scp with lines '<uttid> <path>'.")
    try:
        items = read_wav_scp(scp)
    except ValueError as e:
        raise PrepareError(str(e)) from None
    if not items:
        raise PrepareError(f"{scp}: no entries; expected lines '<uttid> <path>'.")
    seen: dict[str, int] = {}
    for i, (uid, _) in enumerate(items):
        if uid in seen:
            raise PrepareError(f"{scp}: duplicate utt id {uid!r} (entries {seen[uid] + 1} and {i + 1}); ids must be unique.")
        seen[uid] = i
    base = Path(base_dir) if base_dir else Path.cwd()
    paths = {uid: (Path(loc) if os.path.isabs(loc) else base / loc).resolve() for uid, loc in items}
    split = split or scp.resolve().parent.name
    label_maps: dict[str, tuple[Path, dict[str, str]]] = {}
    for ext, given, name in (("wrd", text, "text"), ("spk", utt2spk, "utt2spk")):
        path = Path(given) if given else scp.parent / name
        if given and not path.is_file():
            raise PrepareError(f"{path}: not found; expected Kaldi '{name}' lines '<uttid> <value>'.")
        if path.is_file():
            label_maps[ext] = (path, _read_kaldi_map(path, allow_empty_value=(ext == "wrd")))
    for ext, (path, mapping) in label_maps.items():
        missing = [u for u in paths if u not in mapping]
        if missing:
            raise PrepareError(
                f"{path}: no line for {len(missing)} of the {len(paths)} utts in {scp} (first: {missing[0]!r}); "
                f"fix the data dir (Kaldi utils/fix_data_dir.sh) so every utt has one."
            )
    root = Path(os.path.commonpath([str(p.parent) for p in paths.values()]))
    entries = []
    for uid in sorted(paths):
        labels = {"ids": uid} | {ext: m[uid] for ext, (_, m) in label_maps.items()}
        entries.append(Entry(relpath_under(paths[uid], root), labels))
    return finish(write_splits(root, {split: entries}, out, config, sort=False))
