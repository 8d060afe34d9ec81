"""Fluent Speech Commands, Kaldi diarization and beat-annotation preparers on fake trees in the
real layouts, bad files included."""

from __future__ import annotations

import pytest

from audiossl.data.manifest import read_manifest
from audiossl.data.prepare import PrepareError, prepare
from tests.fake_corpora import write_audio, write_bad

OPTS = dict(progress=False, workers=1)
FSC_HEADER = ",path,speakerId,transcription,action,object,location\n"


def _fsc(root):
    rows = {"train": [("spkA", "u1", "Turn on the lights", "activate", "lights", "none", None),
                      ("spkA", "u2", "Lights on in the kitchen", "activate", "lights", "kitchen", None),
                      ("spkB", "u3", "Bring me my shoes", "bring", "shoes", "none", "empty"),
                      ("spkB", "u4", "Louder", "increase", "volume", "none", "missing")],
            "valid": [("spkC", "u5", "Switch the language to German", "change language", "German", "none", None)],
            "test": [("spkD", "u6", "Heat up the washroom", "increase", "heat", "washroom", "notaudio"),
                     ("spkD", "u7", "Stop the music", "deactivate", "music", "none", None)]}
    for split, items in rows.items():
        lines = []
        for k, (spk, uid, text, a, o, loc, bad) in enumerate(items):
            rel = f"wavs/speakers/{spk}/{uid}.wav"
            if bad is None:
                write_audio(root / rel)
            elif bad != "missing":
                write_bad(root / rel, bad)
            lines.append(f"{k},{rel},{spk},{text},{a},{o},{loc}\n")
        (root / "data").mkdir(parents=True, exist_ok=True)
        (root / "data" / f"{split}_data.csv").write_text(FSC_HEADER + "".join(lines))
    return root


def test_fluent_speech_commands(tmp_path):
    src = _fsc(tmp_path / "fluent_speech_commands_dataset")
    res = prepare("fluent_speech_commands", src, tmp_path / "out", **OPTS)
    assert res.counts == {"train": 2, "valid": 1, "test": 1}
    assert sorted((p.reason, p.path.split("/")[-1]) for p in res.skipped) == [
        ("empty", "u3.wav"), ("missing", "u4.wav"), ("unreadable", "u6.wav")]
    m = read_manifest(tmp_path / "out" / "train.tsv")
    assert m.labels["lbl"] == ["activate|lights|none", "activate|lights|kitchen"]
    assert m.labels["location"] == ["none", "kitchen"] and m.labels["spk"] == ["spkA", "spkA"]
    assert m.labels["wrd"][1] == "LIGHTS ON IN THE KITCHEN"
    assert read_manifest(tmp_path / "out" / "valid.tsv").labels["lbl"] == ["change language|German|none"]
    # a row with an empty slot is a metadata error: named with file and line, before any audio is read
    csv = src / "data" / "valid_data.csv"
    csv.write_text(FSC_HEADER + "0,wavs/speakers/spkC/u5.wav,spkC,hello,activate,,none\n")
    with pytest.raises(PrepareError, match=r"valid_data\.csv:2: empty object"):
        prepare("fluent_speech_commands", src, tmp_path / "o2", **OPTS)
    csv.write_text(",path,speakerId,transcription\n")
    with pytest.raises(PrepareError, match=r"valid_data\.csv:1: missing column\(s\) \['action', 'object', 'location'\]"):
        prepare("fluent_speech_commands", src, tmp_path / "o3", **OPTS)


def _kaldi(root, audio):
    d = root / "data" / "test"
    d.mkdir(parents=True)
    write_audio(audio / "rec1.wav", 2.0)
    write_audio(audio / "rec2.wav", 1.5, freq=330)
    write_bad(audio / "rec3.wav", "notaudio")
    (d / "wav.scp").write_text(f"rec1 {audio}/rec1.wav\nrec2 {audio}/rec2.wav\nrec3 {audio}/rec3.wav\nrec4 {audio}/rec4.wav\n")
    (d / "rttm").write_text("SPEAKER rec1 1 0.10 0.90 <NA> <NA> A <NA> <NA>\n"
                            "SPEAKER rec1 1 0.80 1.15 <NA> <NA> B <NA> <NA>\n"
                            "SPEAKER rec2 1 0.00 1.50 <NA> <NA> C <NA> <NA>\n"
                            "SPEAKER rec3 1 0.00 9.00 <NA> <NA> C <NA> <NA>\n")
    return root / "data"


def test_diarization_kaldi_dir(tmp_path):
    src = _kaldi(tmp_path / "recipe", tmp_path / "audio")
    res = prepare("diarization", src, tmp_path / "out", **OPTS)
    assert res.counts == {"test": 2}
    assert sorted((p.reason, p.path.split("/")[-1]) for p in res.skipped) == [("missing", "rec4.wav"), ("unreadable", "rec3.wav")]
    m = read_manifest(tmp_path / "out" / "test.tsv")
    assert m.root == (tmp_path / "audio").resolve() and m.labels["reco"] == ["rec1", "rec2"]
    assert m.labels["seg"] == ["0.100:1.000:A 0.800:1.950:B", "0.000:1.500:C"]
    # segments + utt2spk instead of an RTTM give the same turns
    d = src / "test"
    (d / "rttm").unlink()
    (d / "segments").write_text("u1 rec1 0.10 1.00\nu2 rec1 0.80 1.95\nu3 rec2 0.00 1.50\n")
    (d / "utt2spk").write_text("u1 A\nu2 B\nu3 C\n")
    prepare("diarization", d, tmp_path / "o2", **OPTS)
    assert read_manifest(tmp_path / "o2" / "test.tsv").labels["seg"] == m.labels["seg"]


@pytest.mark.parametrize("line, msg", [
    ("SPEAKER rec1 1 1.50 1.00 <NA> <NA> A <NA> <NA>", r"rttm:2: turn of A ends at 2\.500 s but recording rec1 .* lasts 2\.000 s"),
    ("SPEAKER recX 1 0.00 1.00 <NA> <NA> A <NA> <NA>", r"rttm:2: recording id 'recX' is not in wav\.scp"),
    ("SPEAKER rec1 1 zero 1.00 <NA> <NA> A <NA> <NA>", r"rttm:2: onset 'zero' / duration '1.00' are not numbers"),
])
def test_diarization_rttm_that_does_not_match_the_audio(tmp_path, line, msg):
    src = _kaldi(tmp_path / "recipe", tmp_path / "audio")
    rttm = src / "test" / "rttm"
    rttm.write_text("SPEAKER rec1 1 0.10 0.90 <NA> <NA> A <NA> <NA>\n" + line + "\n")
    with pytest.raises(PrepareError, match=msg):
        prepare("diarization", src, tmp_path / "out", **OPTS)


def test_beats_ballroom_and_gtzan_names(tmp_path):
    src, ann = tmp_path / "BallroomData", tmp_path / "BallroomAnnotations"
    ann.mkdir()
    for genre in ("ChaChaCha", "Waltz"):
        for k in range(4):
            write_audio(src / genre / f"{genre}-{k}.wav", 3.0)
            (ann / f"{genre}-{k}.beats").write_text("0.50 1\n1.00 2\n1.50 3\n2.00 1\n")
    write_audio(src / "Waltz" / "unannotated.wav", 3.0)
    write_bad(src / "Waltz" / "broken.wav", "empty")
    (ann / "broken.beats").write_text("0.5 1\n")
    (ann / "orphan.beats").write_text("0.5 1\n")
    write_audio(src / "genres" / "blues" / "blues.00007.wav", 3.0)  # GTZAN-beats naming
    (ann / "gtzan_blues_00007.beats").write_text("0.4\n0.9\n")
    res = prepare("beats", src, tmp_path / "out", annotations=ann, **OPTS)
    assert sum(res.counts.values()) == 9 and all(res.counts[s] >= 1 for s in ("train", "valid", "test"))
    assert sorted((p.reason, p.path.split("/")[-1]) for p in res.skipped) == [
        ("empty", "broken.wav"), ("missing", "orphan.beats"), ("no_annotation", "unannotated.wav")]
    rows = {}
    for s in ("train", "valid", "test"):
        m = read_manifest(tmp_path / "out" / f"{s}.tsv")
        rows.update({r.relpath: (b, d) for r, b, d in zip(m.rows, m.labels["beats"], m.labels["downbeats"])})
    assert rows["Waltz/Waltz-1.wav"] == ("0.5000 1.0000 1.5000 2.0000", "0.5000 2.0000")
    assert rows["genres/blues/blues.00007.wav"] == ("0.4000 0.9000", "")
    (ann / "Waltz-2.beats").write_text("0.5 1\n9.0 2\n")
    with pytest.raises(PrepareError, match=r"Waltz-2\.beats: a beat at 9\.000 s but .*Waltz-2\.wav lasts 3\.000 s"):
        prepare("beats", src, tmp_path / "o2", annotations=ann, **OPTS)
    (ann / "Waltz-2.beats").write_text("0.5 1\nabc\n")
    with pytest.raises(PrepareError, match=r"Waltz-2\.beats:2: expected '<time in seconds>"):
        prepare("beats", src, tmp_path / "o3", annotations=ann, **OPTS)
