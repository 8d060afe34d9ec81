"""LibriSpeech / mini_librispeech → ``<split>.tsv`` + ``.wrd`` ``.ltr`` ``.spk`` (+ ``.phn``).

Layout: ``SRC/<split>/<spk>/<chap>/<spk>-<chap>-NNNN.flac`` with one
``<spk>-<chap>.trans.txt`` per chapter (lines ``<uttid> <UPPERCASE TEXT>``). SRC may be the
``LibriSpeech/`` directory (split dirs: train-clean-100, dev-clean, ...; mini: train-clean-5,
dev-clean-2), a directory holding ``LibriSpeech/``, or a single split directory. Split names
are kept (``train-clean-100.tsv``). The manifest root is the directory holding the split dirs.
"""

from __future__ import annotations

import re
from pathlib import Path

from audiossl.audio.validate import Problem
from audiossl.data.prepare.common import (
    Entry,
    PrepareError,
    PrepareResult,
    common_options,
    finish,
    require_file,
    write_splits,
)

_STRESS = re.compile(r"\d+$")
_CMU_VARIANT = re.compile(r"\(\d+\)$")


def letters(text: str) -> str:
    """fairseq letter targets: ``"HELLO WORLD"`` → ``"H E L L O | W O R L D |"``."""
    return " ".join(" ".join(text.split()).replace(" ", "|")) + " |"


def read_lexicon(path: str | Path, strip_stress: bool = False) -> dict[str, list[str]]:
    """``WORD PH1 PH2 ...`` per line (librispeech-lexicon.txt / CMUdict). The first
    pronunciation of a word wins; ``WORD(2)`` variants and ``;;;`` comments are ignored; words
    are upper-cased. ``strip_stress`` turns ``AH0`` into ``AH``."""
    path = require_file(Path(path), "a lexicon with lines 'WORD PH1 PH2 ...'")
    lex: dict[str, list[str]] = {}
    with open(path, encoding="utf-8", errors="replace") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip() or line.startswith(";;;"):
                continue
            parts = line.split()
            if len(parts) < 2:
                raise PrepareError(f"{path}:{lineno}: expected 'WORD PH1 PH2 ...', got {line.strip()!r}")
            word = parts[0].upper()
            if _CMU_VARIANT.search(word):
                continue
            phones = parts[1:]
            if strip_stress:
                phones = [_STRESS.sub("", p) for p in phones]
            lex.setdefault(word, phones)
    if not lex:
        raise PrepareError(f"{path}: no entries; expected lines 'WORD PH1 PH2 ...'")
    return lex


def find_split_dirs(src: Path) -> tuple[Path, list[Path]]:
    """``(root, split dirs)``: root holds the split dirs (relpaths start with the split name)."""
    src = Path(src).resolve()  # split names come from directory names: "." must become one
    if not src.is_dir():
        raise PrepareError(f"{src}: not a directory; expected a LibriSpeech directory or one of its split dirs.")
    if next(src.glob("*/*/*.trans.txt"), None) is not None:
        return src.parent, [src]
    for base in (src, src / "LibriSpeech"):
        splits = sorted(d for d in base.iterdir() if d.is_dir() and next(d.glob("*/*/*.trans.txt"), None)) if base.is_dir() else []
        if splits:
            return base, splits
    raise PrepareError(
        f"{src}: no LibriSpeech split found; expected <split>/<spk>/<chap>/<spk>-<chap>.trans.txt "
        f"(e.g. {src}/train-clean-100/103/1240/103-1240.trans.txt) or SRC pointing at one split dir."
    )


def _split_entries(root: Path, split_dir: Path, skipped: list[Problem]) -> list[tuple[str, str, str]]:
    """``(relpath, uttid, text)`` for every transcribed utterance of one split."""
    items = []
    chapters = sorted({p.parent for p in split_dir.glob("*/*/*.flac")} | {p.parent for p in split_dir.glob("*/*/*.trans.txt")})
    for chap in chapters:
        spk, ch = chap.parent.name, chap.name
        trans = require_file(chap / f"{spk}-{ch}.trans.txt", f"the transcript of chapter {spk}/{ch} (lines '<uttid> <TEXT>')")
        texts: dict[str, str] = {}
        with open(trans, encoding="utf-8") as f:
            for lineno, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                parts = line.strip().split(maxsplit=1)
                uid = parts[0]
                if not uid.startswith(f"{spk}-{ch}-"):
                    raise PrepareError(f"{trans}:{lineno}: utterance id {uid!r} does not start with '{spk}-{ch}-'")
                texts[uid] = " ".join(parts[1].split()) if len(parts) > 1 else ""
        for flac in sorted(chap.glob("*.flac")):
            if flac.stem not in texts:
                skipped.append(Problem(str(flac), "no_transcript", f"no line for {flac.stem} in {trans}"))
        for uid, text in texts.items():
            rel = f"{split_dir.name}/{spk}/{ch}/{uid}.flac"
            if not (root / rel).is_file():
                skipped.append(Problem(str(root / rel), "missing", f"listed in {trans} but the audio file does not exist"))
                continue
            if not text:
                skipped.append(Problem(str(root / rel), "no_transcript", f"empty transcript line in {trans}"))
                continue
            items.append((rel, uid, text))
    return items


def prepare_librispeech(
    src: str | Path,
    out: str | Path,
    *,
    splits: list[str] | None = None,
    lexicon: str | Path | None = None,
    strip_stress: bool = False,
    skip_oov: bool = False,
    **common,
) -> PrepareResult:
    """Write ``OUT/<split>.tsv`` + ``.wrd`` (words), ``.ltr`` (fairseq letters), ``.spk``, and
    ``.phn`` (phones) when ``lexicon`` is given.

    ``splits``: only these split names (default: every split found). Words missing from the
    lexicon raise :class:`PrepareError` listing the first OOVs and their count, unless
    ``skip_oov`` (those utterances are skipped with reason ``oov``).
    """
    config = common_options(common)
    root, split_dirs = find_split_dirs(Path(src))
    if splits:
        names = {d.name for d in split_dirs}
        unknown = [s for s in splits if s not in names]
        if unknown:
            raise PrepareError(f"{root}: split(s) {unknown} not found; available: {sorted(names)}")
        split_dirs = [d for d in split_dirs if d.name in splits]
    lex = read_lexicon(lexicon, strip_stress) if lexicon else None
    skipped: list[Problem] = []
    per_split: dict[str, list[Entry]] = {}
    oov: dict[str, int] = {}
    oov_utts = 0
    for d in split_dirs:
        entries = []
        for rel, uid, text in _split_entries(root, d, skipped):
            labels = {"wrd": text, "ltr": letters(text), "spk": uid.split("-")[0]}
            if lex is not None:
                missing = [w for w in text.split() if w not in lex]
                if missing:
                    oov_utts += 1
                    for w in missing:
                        oov[w] = oov.get(w, 0) + 1
                    if skip_oov:
                        skipped.append(Problem(str(root / rel), "oov", f"words not in lexicon: {' '.join(missing[:5])}"))
                    continue
                labels["phn"] = " ".join(p for w in text.split() for p in lex[w])
            entries.append(Entry(rel, labels))
        per_split[d.name] = entries
    if oov and not skip_oov:
        first = sorted(oov, key=lambda w: (-oov[w], w))[:10]
        raise PrepareError(
            f"{lexicon}: {len(oov)} words of the transcripts are not in the lexicon "
            f"(most frequent: {', '.join(first)}); add them (e.g. with a G2P model) or pass "
            f"--skip-oov to skip the {oov_utts} utterances that contain them."
        )
    return finish(write_splits(root, per_split, out, config, skipped=skipped))
