"""The embedded demo corpus (`audiossl synth`): layout contract, labels, determinism."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audiossl.data.manifest import read_manifest
from audiossl.data.synth import corpus, music, speech
from audiossl.data.synth.espeak import ESpeak, ESpeakError, VoiceSettings

SPLITS = ("train", "valid", "test")
SPEECH_LIKE = {"speech": SPLITS, "speakers_unseen": ("test",), "prosody": SPLITS}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("synth") / "tiny"
    summary = corpus.synthesize(out, "tiny", seed=0, workers=2, progress=False)
    return out, summary


def _files(task_dir: Path) -> dict[str, bytes]:
    """Every file under a task dir; manifests without their root line (it names OUT)."""
    out = {}
    for p in sorted(task_dir.rglob("*")):
        if p.is_file():
            data = p.read_bytes()
            if p.suffix == ".tsv":
                data = data.split(b"\n", 1)[1]
            out[str(p.relative_to(task_dir))] = data
    return out


def test_layout_and_summary(tiny):
    out, summary = tiny
    on_disk = json.loads((out / "corpus.json").read_text())
    assert on_disk["size"] == "tiny" and on_disk["seed"] == 0 and on_disk["version"] == corpus.VERSION
    assert on_disk["sample_rates"] == {"speech": 16000, "music": 24000}
    assert summary["skipped"] == 0
    for task in corpus.TASKS:  # the default set; EXTRA_TASKS are opt-in (tests/test_eval_ic_sd_beat.py)
        sub = corpus.TASK_DIRS[task]
        splits = ("test",) if task == "speakers_unseen" else SPLITS
        for split in splits:
            m = read_manifest(out / sub / f"{split}.tsv", check_files=True)
            assert len(m) > 0, f"{task}/{split} is empty"
            assert m.root == (out / sub).resolve()
            assert on_disk["counts"][task][split] == len(m)
            assert on_disk["durations_s"][task][split] > 0
    assert (out / "phones.txt").read_text().split() == speech.PHONES


def test_speech_labels_and_alignment(tiny):
    out, _ = tiny
    inventory = set((out / "phones.txt").read_text().split())
    for task, splits in SPEECH_LIKE.items():
        for split in splits:
            m = read_manifest(out / corpus.TASK_DIRS[task] / f"{split}.tsv", check_files=True)
            assert {"phn", "ali", "spk", "wrd"} <= set(m.labels)
            for i, row in enumerate(m.rows):
                info = sf.info(str(m.path(i)))
                assert info.samplerate == 16000 and info.channels == 1 and info.subtype == "PCM_16"
                assert info.frames == row.num_samples
                ali = m.labels["ali"][i].split()
                assert len(ali) == math.ceil(row.num_samples / 160), m.path(i)
                assert set(ali) <= inventory
                phn = m.labels["phn"][i].split()
                assert phn and set(phn) <= inventory and speech.SIL not in phn
                # the alignment visits the phones of .phn in order (runs collapsed, silences dropped)
                runs = [a for j, a in enumerate(ali) if a != speech.SIL and (j == 0 or ali[j - 1] != a)]
                assert len(runs) >= 0.8 * len(phn)
                assert ali[0] == speech.SIL or ali[0] == phn[0]
                assert ali[-1] == speech.SIL  # eSpeak's end pause
    m = read_manifest(out / "speech/train.tsv")
    for wrd, ltr in zip(m.labels["wrd"], m.labels["ltr"]):
        assert wrd == wrd.upper()
        assert ltr == " ".join(" ".join(w) + " |" for w in wrd.split())


def test_speakers_seen_and_unseen(tiny):
    out, _ = tiny
    spk = {s: set(read_manifest(out / f"speech/{s}.tsv").labels["spk"]) for s in SPLITS}
    assert spk["train"] == spk["valid"] == spk["test"] and len(spk["train"]) == corpus.SIZES["tiny"].speakers
    ids = {s: set(read_manifest(out / f"speech/{s}.tsv").ids) for s in SPLITS}
    assert not (ids["train"] & ids["valid"]) and not (ids["train"] & ids["test"])
    asv = read_manifest(out / "speakers_unseen/test.tsv")
    assert set(asv.labels["spk"]).isdisjoint(spk["train"])
    trials = [line.split() for line in (out / "speakers_unseen/trials.txt").read_text().splitlines()]
    spk_of = dict(zip(asv.ids, asv.labels["spk"]))
    assert trials
    for target, a, b in trials:
        assert a in spk_of and b in spk_of and a != b
        assert (target == "1") == (spk_of[a] == spk_of[b])
    share = sum(t == "1" for t, _, _ in trials) / len(trials)
    assert 0.35 <= share <= 0.65


def test_keywords(tiny):
    out, _ = tiny
    from audiossl.data.synth import text

    m = read_manifest(out / "keywords/train.tsv", check_files=True)
    assert set(m.labels["lbl"]) == set(text.KEYWORDS) | {text.UNKNOWN, text.SILENCE}
    rms = {}
    for i, lbl in enumerate(m.labels["lbl"]):
        x, sr = sf.read(str(m.path(i)))
        assert sr == 16000 and len(x) == 16000 == m.rows[i].num_samples
        rms.setdefault(lbl == text.SILENCE, []).append(float(np.sqrt(np.mean(x**2))))
    assert max(rms[True]) < 0.011 < np.median(rms[False])


def test_prosody_same_sentences_across_styles(tiny):
    out, _ = tiny
    m = read_manifest(out / "prosody/train.tsv")
    styles = list(speech.PROSODY_STYLES)
    n = len(styles)
    assert m.labels["lbl"] == styles * (len(m) // n)
    for k in range(0, len(m), n):
        assert len(set(m.labels["wrd"][k: k + n])) == 1 and len(set(m.labels["spk"][k: k + n])) == 1
        durs = dict(zip(m.labels["lbl"][k: k + n], (r.num_samples for r in m.rows[k: k + n])))
        assert durs["excited"] < durs["neutral"] < durs["sad"]  # styles really change the rate


def test_music_labels(tiny):
    out, _ = tiny
    for split in SPLITS:
        notes = read_manifest(out / f"music/notes/{split}.tsv", check_files=True)
        assert set(notes.labels["lbl"]) == set(music.FAMILIES)
        for i, (fam, pitch) in enumerate(zip(notes.labels["lbl"], notes.labels["pitch"])):
            lo, hi = music.FAMILIES[fam][1]
            assert lo <= int(pitch) <= hi
            info = sf.info(str(notes.path(i)))
            assert info.samplerate == 24000 and info.frames == notes.rows[i].num_samples
        keys = read_manifest(out / f"music/keys/{split}.tsv", check_files=True)
        assert set(keys.labels["lbl"]) == set(music.key_names())
    x, _ = sf.read(str(notes.path(0)))
    assert 0.3 < np.abs(x).max() <= 0.51  # audible, peak-normalised, not clipped


def test_same_seed_same_bytes_any_workers(tiny, tmp_path):
    out, _ = tiny
    again = corpus.synthesize(tmp_path / "again", "tiny", seed=0, workers=1,
                              tasks=["speech", "music_notes"], progress=False)
    assert again["tasks"] == ["speech", "music_notes"]
    for sub in ("speech", "music/notes"):
        a, b = _files(out / sub), _files(tmp_path / "again" / sub)
        assert a.keys() == b.keys()
        assert [k for k in a if a[k] != b[k]] == []


def test_other_seed_differs(tiny, tmp_path):
    out, _ = tiny
    corpus.synthesize(tmp_path / "s1", "tiny", seed=1, workers=2, tasks=["speech"], progress=False)
    a, b = _files(out / "speech"), _files(tmp_path / "s1" / "speech")
    assert a["train.wrd"] != b["train.wrd"]
    shared = [k for k in a if k.endswith(".wav") and k in b]
    assert shared and all(a[k] != b[k] for k in shared)


def test_refuses_non_empty_and_overwrites(tmp_path, capsys):
    from audiossl.cli.main import main

    out = tmp_path / "c"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    (out / "speech").mkdir()
    (out / "speech" / "stale.wav").write_bytes(b"x")
    assert main(["synth", str(out), "--size", "tiny", "--tasks", "music_notes"]) == 2
    assert "not empty" in capsys.readouterr().out
    assert main(["synth", str(out), "--size", "tiny", "--tasks", "music_notes", "--overwrite", "--workers", "1"]) == 0
    assert (out / "keep.txt").read_text() == "mine"  # only the corpus' own entries are replaced
    assert not (out / "speech").exists()
    assert json.loads((out / "corpus.json").read_text())["counts"] == {"music_notes": {"train": 20, "valid": 10, "test": 10}}
    assert "music_notes" in capsys.readouterr().out


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="unknown size"):
        corpus.synthesize(tmp_path / "x", "huge")
    with pytest.raises(ValueError, match="unknown task 'speach'"):
        corpus.synthesize(tmp_path / "x", "tiny", tasks=["speach"])
    with pytest.raises(ESpeakError, match="not found"):
        ESpeak().synthesize("hello", VoiceSettings("xx-nolang+m1"))


def test_espeak_independent_of_history():
    tts = ESpeak()
    first = tts.synthesize("the quick brown fox", VoiceSettings("en-us+f2"), seed=3)
    tts.synthesize("something else entirely", VoiceSettings("en+m3", rate=300, pitch=80), seed=9)
    again = tts.synthesize("the quick brown fox", VoiceSettings("en-us+f2"), seed=3)
    assert first.sample_rate == 22050 and len(first.samples) > 22050 // 2
    assert np.array_equal(first.samples, again.samples) and first.phonemes == again.phonemes
    onsets = [s for _, s in first.phonemes]
    assert onsets == sorted(onsets) and onsets[-1] <= len(first.samples)


def test_music_render_independent_of_history():
    a, _ = music.render_note("flute", 72, seed=1)
    music.render_progression(5, "minor", seed=2)
    b, labels = music.render_note("flute", 72, seed=1)
    assert np.array_equal(a, b) and labels["pitch"] == 72 and len(a) == int(1.5 * music.MUSIC_RATE)


def test_valid_and_test_notes_are_played_by_instruments_unheard_in_training():
    """NSynth's split rule: a pitch or instrument probe must not score by recalling a train clip of the same
    program at the same pitch."""
    jobs = corpus.plan_notes(corpus.SIZES["small"], seed=0)
    for family, (programs, _) in music.FAMILIES.items():
        train = {p for j in jobs if j.split == "train" and j.params["family"] == family for p in j.params["programs"]}
        held = {p for j in jobs if j.split != "train" and j.params["family"] == family for p in j.params["programs"]}
        assert train and held and not train & held and train | held == set(programs), family
    job = next(j for j in jobs if j.split == "test")
    _, labels = music.render_note(job.params["family"], job.params["pitch"], job.seed, programs=job.params["programs"])
    assert labels["program"] == music.FAMILIES[job.params["family"]][0][-1]


def test_fold_phone_and_frame_alignment():
    assert speech.fold_phone("'aI") == "aI" and speech.fold_phone(",I2") == "I"
    assert speech.fold_phone("_:") == speech.SIL and speech.fold_phone(";") is None
    assert speech.fold_phone("Q9q") == speech.SPN
    segs = [("sil", 0, 100), ("h", 100, 500), ("@", 500, 1000), ("sil", 1000, 1001)]
    ali = speech.frame_alignment(segs, 1001)
    assert len(ali) == 7  # ceil(1001 / 160)
    # frame centres 80, 240, 400, 560, 720, 880, 1000 (last clamped to the final sample)
    assert ali == ["sil", "h", "h", "@", "@", "@", "sil"]
