"""Tiny FAKE corpora with the real directory layouts, for the preparer tests.

Audio is generated here (short sines / noise, a few files per corpus) and each tree has bad
files mixed in: an empty file, a text file renamed ``.wav``, and a too-short clip (0.02 s,
under the default 0.1 s minimum), so skip reporting is exercised. Each ``make_*`` returns a
dict describing what it wrote (good/bad paths, expected labels) for the assertions.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import soundfile as sf

SR = 16000


def write_audio(path: Path, seconds: float = 0.25, sr: int = SR, freq: float = 440.0, noise: bool = False) -> Path:
    """A sine (or white noise) clip; format from the suffix (.wav / .flac)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    n = int(round(seconds * sr))
    if noise:
        x = 0.1 * np.random.default_rng(int(freq)).standard_normal(n)
    else:
        x = 0.3 * np.sin(2 * np.pi * freq * np.arange(n) / sr)
    sf.write(str(path), x.astype(np.float32), sr)
    return path


def write_bad(path: Path, kind: str) -> Path:
    """``empty`` (0 bytes), ``notaudio`` (text renamed to audio) or ``short`` (0.02 s)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "notaudio":
        path.write_text("<html>this is not audio, a download error page</html>\n" * 10)
    elif kind == "short":
        write_audio(path, 0.02)
    else:
        raise ValueError(kind)
    return path


REASON = {"empty": "empty", "notaudio": "unreadable", "short": "too_short"}


def make_librispeech(root: Path, splits=("train-clean-5", "dev-clean-2")) -> dict:
    """``root/LibriSpeech/<split>/<spk>/<chap>/*.flac`` + trans.txt; 2 speakers x 1 chapter x
    3 utts per split; in the first split one utt is empty, one not audio, one too short."""
    base = root / "LibriSpeech"
    texts = ["HELLO WORLD", "THE QUICK BROWN FOX", "IT'S A TEST"]
    info = {"root": base, "good": {}, "bad": {}}
    for si, split in enumerate(splits):
        good = []
        for spk, chap in ((f"{100 + si}", "2000"), (f"{200 + si}", "3000")):
            d = base / split / spk / chap
            lines = []
            for k, text in enumerate(texts):
                uid = f"{spk}-{chap}-{k:04d}"
                lines.append(f"{uid} {text}")
                write_audio(d / f"{uid}.flac", 0.2 + 0.05 * k, freq=300 + 50 * k)
                good.append(f"{split}/{spk}/{chap}/{uid}.flac")
            if si == 0 and spk.startswith("1"):
                for k, kind in enumerate(("empty", "notaudio", "short"), start=len(texts)):
                    uid = f"{spk}-{chap}-{k:04d}"
                    lines.append(f"{uid} BAD FILE")
                    write_bad(d / f"{uid}.flac", kind)
                    info["bad"][f"{split}/{spk}/{chap}/{uid}.flac"] = REASON[kind]
            (d / f"{spk}-{chap}.trans.txt").write_text("\n".join(lines) + "\n")
        info["good"][split] = sorted(good)
    return info


WORDS = ["yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go"]


def make_speech_commands(root: Path, noise_seconds=(10.0, 5.0)) -> dict:
    """Every one of the 10 words + 2 other words ("bed", "cat"), 3 clips each; one clip per
    word in the validation list, one in the testing list; background noise files of the given
    lengths plus one empty noise file; bad clips under "yes"."""
    info = {"root": root, "splits": {"train": [], "valid": [], "test": []}, "bad": {}}
    val, test = [], []
    for wi, word in enumerate(WORDS + ["bed", "cat"]):
        for n in range(3):
            rel = f"{word}/{wi:04x}beef_nohash_{n}.wav"
            write_audio(root / rel, 0.3, freq=200 + 20 * wi + n)
            split = ("train", "valid", "test")[n]
            info["splits"][split].append(rel)
            (val if split == "valid" else test if split == "test" else []).append(rel)
    for kind in ("empty", "notaudio", "short"):
        rel = f"yes/{kind}_nohash_0.wav"
        write_bad(root / rel, kind)
        info["bad"][rel] = REASON[kind]
    (root / "validation_list.txt").write_text("\n".join(val) + "\n")
    (root / "testing_list.txt").write_text("\n".join(test) + "\n")
    for i, sec in enumerate(noise_seconds):
        write_audio(root / "_background_noise_" / f"noise{i}.wav", sec, noise=True, freq=i + 1)
    write_bad(root / "_background_noise_" / "zz_empty.wav", "empty")
    (root / "_background_noise_" / "README.md").write_text("not audio\n")
    return info


def make_voxceleb1(root: Path) -> dict:
    """4 speakers (id10001, id10002 in trials; id10003, id10004 not), 2 videos x 2 utts each."""
    rels = []
    for s, spk in enumerate(["id10001", "id10002", "id10003", "id10004"]):
        for v, yt in enumerate(["aaaaaaaaaaa", "bbbbbbbbbbb"]):
            for n in (1, 2):
                rel = f"{spk}/{yt}/{n:05d}.wav"
                write_audio(root / "wav" / rel, 0.25, freq=200 + 40 * s + 10 * v + n)
                rels.append(rel)
    bad = {"id10003/aaaaaaaaaaa/00003.wav": "empty", "id10004/aaaaaaaaaaa/00003.wav": "notaudio"}
    for rel, kind in bad.items():
        write_bad(root / "wav" / rel, kind)
    lines = []
    for rel in rels + list(bad):
        n = int(rel.split("/")[2][:5])
        code = "1" if rel.split("/")[1].startswith("a") else ("2" if n == 1 else "3")
        lines.append(f"{code} {rel}")
    (root / "iden_split.txt").write_text("\n".join(lines) + "\n")
    trials = [
        ("1", "id10001/aaaaaaaaaaa/00001.wav", "id10001/bbbbbbbbbbb/00002.wav"),
        ("0", "id10001/aaaaaaaaaaa/00001.wav", "id10002/aaaaaaaaaaa/00001.wav"),
        ("1", "id10002/bbbbbbbbbbb/00001.wav", "id10002/aaaaaaaaaaa/00002.wav"),
    ]
    (root / "veri_test2.txt").write_text("".join(f"{a} {b} {c}\n" for a, b, c in trials))
    return {"root": root, "rels": rels, "bad": {r: REASON[k] for r, k in bad.items()}, "iden": lines, "trials": trials}


ESC_CATS = {0: "dog", 1: "rooster", 10: "rain"}


def make_esc50(root: Path) -> dict:
    """5 folds x 3 categories, one clip each; fold 1 also lists a missing clip and holds an
    empty clip and a non-audio clip."""
    rows = []
    for fold in range(1, 6):
        for target, cat in ESC_CATS.items():
            name = f"{fold}-{100 + target}-A-{target}.wav"
            write_audio(root / "audio" / name, 0.25, freq=300 + 30 * target + fold)
            rows.append([name, fold, target, cat, "True" if target == 0 else "False", 100 + target, "A"])
    for name, kind in (("1-900-A-0.wav", "empty"), ("1-901-A-1.wav", "notaudio")):
        write_bad(root / "audio" / name, kind)
        rows.append([name, 1, int(name[-5]), ESC_CATS[int(name[-5])], "False", 900, "A"])
    rows.append(["1-902-A-0.wav", 1, 0, "dog", "True", 902, "A"])  # listed, no file
    (root / "meta").mkdir(parents=True, exist_ok=True)
    with open(root / "meta" / "esc50.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["filename", "fold", "target", "category", "esc10", "src_file", "take"])
        w.writerows(rows)
    return {"root": root, "bad": {"audio/1-900-A-0.wav": "empty", "audio/1-901-A-1.wav": "unreadable", "audio/1-902-A-0.wav": "missing"}}


GTZAN_GENRES = ["blues", "classical", "jazz"]


def make_gtzan(root: Path, dirname: str = "genres", per_genre: int = 10, lists: bool = False) -> dict:
    """``root/<dirname>/<genre>/<genre>.000NN.wav``; jazz.00004.wav is a corrupt file (as the
    real jazz.00054.wav). With ``lists``: filtered split lists 6/2/2 per genre in root."""
    gdir = root / dirname
    rels = []
    for gi, g in enumerate(GTZAN_GENRES):
        for n in range(per_genre):
            rel = f"{g}/{g}.{n:05d}.wav"
            if rel == "jazz/jazz.00004.wav":
                write_bad(gdir / rel, "notaudio")
            else:
                write_audio(gdir / rel, 0.2, freq=200 + 50 * gi + n)
            rels.append(rel)
    if lists:
        split_of = lambda n: "train" if n < 6 else "valid" if n < 8 else "test"  # noqa: E731
        for s in ("train", "valid", "test"):
            (root / f"{s}_filtered.txt").write_text(
                "".join(f"{r}\n" for r in rels if split_of(int(r.split(".")[1])) == s)
            )
    return {"root": root, "gdir": gdir, "rels": rels, "bad": {"jazz/jazz.00004.wav": "unreadable"}}


def make_nsynth(root: Path) -> dict:
    """nsynth-{train,valid,test} with 3 notes each; train also has a non-audio note."""
    info = {"root": root, "notes": {}, "bad": {}}
    fams = [("guitar", "acoustic"), ("keyboard", "electronic"), ("bass", "synthetic")]
    for si, split in enumerate(("train", "valid", "test")):
        examples = {}
        for k, (fam, source) in enumerate(fams):
            pitch = 60 + 3 * k + si
            note = f"{fam}_{source}_{k:03d}-{pitch:03d}-100"
            write_audio(root / f"nsynth-{split}" / "audio" / f"{note}.wav", 0.25, freq=440 * 2 ** ((pitch - 69) / 12))
            examples[note] = {"instrument_family_str": fam, "pitch": pitch, "velocity": 100, "instrument_source_str": source, "note_str": note}
        if split == "train":
            note = "organ_electronic_009-050-100"
            write_bad(root / "nsynth-train" / "audio" / f"{note}.wav", "notaudio")
            examples[note] = {"instrument_family_str": "organ", "pitch": 50, "velocity": 100, "instrument_source_str": "electronic"}
            info["bad"][f"nsynth-train/audio/{note}.wav"] = "unreadable"
        (root / f"nsynth-{split}" / "examples.json").write_text(json.dumps(examples))
        info["notes"][split] = examples
    return info


def synth_speech(out: Path, seed: int = 0) -> Path:
    """The demo synthesiser's tiny speech set (eSpeak; 6 speakers, 24/6/6 utterances of 1-3 s) in
    ``out/speech``; returns that directory."""
    from audiossl.data.synth.corpus import synthesize

    synthesize(out, size="tiny", seed=seed, workers=1, tasks=["speech"], progress=False)
    return out / "speech"


LIBRISPEECH_SPLITS = {"train": "train-clean-100", "valid": "dev-clean", "test": "test-clean"}


def librispeech_from_synth(speech: Path, root: Path, splits: dict[str, str] = LIBRISPEECH_SPLITS) -> Path:
    """Lay synthesised speech (:func:`synth_speech`) out as LibriSpeech does:
    ``root/LibriSpeech/<split>/<spk>/<chap>/<spk>-<chap>-NNNN.flac`` + ``<spk>-<chap>.trans.txt``
    (numeric speaker ids, one chapter per speaker and split). Returns ``root/LibriSpeech``."""
    from audiossl.data.manifest import read_manifest

    base = root / "LibriSpeech"
    for split, name in splits.items():
        m = read_manifest(speech / f"{split}.tsv", labels=["wrd", "spk"])
        chapters: dict[Path, list[str]] = {}
        for row, text, spk in zip(m.rows, m.labels["wrd"], m.labels["spk"]):
            sid = str(100 + int(spk.removeprefix("spk")))
            chap = str(1000 + list(splits).index(split))
            d = base / name / sid / chap
            lines = chapters.setdefault(d, [])
            uid = f"{sid}-{chap}-{len(lines):04d}"
            d.mkdir(parents=True, exist_ok=True)
            audio, sr = sf.read(str(m.root / row.relpath), dtype="float32")
            sf.write(str(d / f"{uid}.flac"), audio, sr)
            lines.append(f"{uid} {text}")
        for d, lines in chapters.items():
            (d / f"{d.parent.name}-{d.name}.trans.txt").write_text("\n".join(lines) + "\n")
    return base
