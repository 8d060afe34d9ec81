"""Speech Commands preparer: SUPERB 12 classes, list-based splits, generated _silence_ clips."""

import shutil

import pytest
import soundfile as sf

from audiossl.data.manifest import read_manifest
from audiossl.data.prepare import PrepareError
from audiossl.data.prepare.speech_commands import CLASSES, label_of, prepare_speech_commands
from tests.fake_corpora import make_speech_commands, write_audio

OPTS = dict(progress=False, workers=1)


@pytest.fixture
def sc(tmp_path):
    return make_speech_commands(tmp_path / "src", noise_seconds=(10.0, 5.3))


def _split(out, split):
    m = read_manifest(out / f"{split}.tsv")
    return m, dict(zip([str(p) for p in m.paths()], m.labels["lbl"]))


def test_superb_classes_and_splits(sc, tmp_path):
    out = tmp_path / "out"
    res = prepare_speech_commands(sc["root"], out, **OPTS)
    root = sc["root"].resolve()
    for split in ("train", "valid", "test"):
        m, labels = _split(out, split)
        assert m.root == root
        words = {p: lab for p, lab in labels.items() if lab != "_silence_"}
        assert sorted(words) == sorted(str(root / r) for r in sc["splits"][split] if r not in sc["bad"])
        for p, lab in words.items():
            word = p.split("/")[-2]
            assert lab == (word if word in CLASSES[:10] else "_unknown_")
        assert set(labels.values()) == set(CLASSES), split  # all 12 classes in every split
    # 10 s noise → 10 clips (8/1/1); 5.3 s → 5 clips (4/1/0 by rounding): train 12, valid 2, test 1
    silence = {s: [p for p, lab in _split(out, s)[1].items() if lab == "_silence_"] for s in ("train", "valid", "test")}
    assert [len(silence[s]) for s in ("train", "valid", "test")] == [12, 2, 1]
    assert silence["test"] == [str((out / "_silence_" / "noise0_009.wav").resolve())]
    for p in silence["train"]:
        assert sf.info(p).frames == 16000 and sf.info(p).samplerate == 16000
    assert len(set(silence["train"]) | set(silence["valid"]) | set(silence["test"])) == 15  # no clip in two splits
    reasons = {p.path: p.reason for p in res.skipped}
    expected = {str(root / r): why for r, why in sc["bad"].items()}
    expected[str(root / "_background_noise_" / "zz_empty.wav")] = "empty"
    assert reasons == expected


def test_label_mapping():
    assert label_of("yes") == "yes" and label_of("bed") == "_unknown_"
    assert label_of("_unknown_") == "_unknown_" and label_of("_silence_") == "_silence_"


def test_rerun_is_identical(sc, tmp_path):
    prepare_speech_commands(sc["root"], tmp_path / "o", **OPTS)
    first = {f.name: f.read_text() for f in (tmp_path / "o").glob("*.*")}
    stamp = (tmp_path / "o" / "_silence_" / "noise0_000.wav").stat().st_mtime_ns
    prepare_speech_commands(sc["root"], tmp_path / "o", **OPTS)
    assert first == {f.name: f.read_text() for f in (tmp_path / "o").glob("*.*")}
    assert (tmp_path / "o" / "_silence_" / "noise0_000.wav").stat().st_mtime_ns == stamp  # clips reused


def test_missing_list_is_clear_error(sc, tmp_path):
    (sc["root"] / "testing_list.txt").unlink()
    with pytest.raises(PrepareError, match="testing_list.txt: not found"):
        prepare_speech_commands(sc["root"], tmp_path / "o", **OPTS)


def test_listed_but_missing_file_reported(sc, tmp_path):
    with open(sc["root"] / "testing_list.txt", "a") as f:
        f.write("go/ffffffff_nohash_9.wav\n")
    res = prepare_speech_commands(sc["root"], tmp_path / "o", **OPTS)
    assert any(p.reason == "missing" and p.path.endswith("go/ffffffff_nohash_9.wav") for p in res.skipped)


def test_existing_silence_dir_used(sc, tmp_path):
    shutil.rmtree(sc["root"] / "_background_noise_")
    for k in range(3):
        write_audio(sc["root"] / "_silence_" / f"silence_{k}.wav", 1.0, noise=True, freq=k + 5)
    (sc["root"] / "testing_list.txt").write_text(
        (sc["root"] / "testing_list.txt").read_text() + "_silence_/silence_2.wav\n"
    )
    prepare_speech_commands(sc["root"], tmp_path / "o", **OPTS)
    assert not (tmp_path / "o" / "_silence_").exists()
    assert list(_split(tmp_path / "o", "test")[1].values()).count("_silence_") == 1
    assert list(_split(tmp_path / "o", "train")[1].values()).count("_silence_") == 2


def _make_test_set(root):
    for d, n in (("yes", 2), ("_unknown_", 2), ("_silence_", 2)):
        for k in range(n):
            write_audio(root / d / f"{d.strip('_')}{k}_nohash_0.wav", 1.0, freq=300 + k)


def test_superb_test_set_as_src_and_as_option(sc, tmp_path):
    tdir = tmp_path / "speech_commands_test_set_v0.01"
    _make_test_set(tdir)
    res = prepare_speech_commands(tdir, tmp_path / "t", **OPTS)
    assert res.counts == {"test": 6}
    assert sorted(_split(tmp_path / "t", "test")[1].values()) == ["_silence_"] * 2 + ["_unknown_"] * 2 + ["yes"] * 2
    res = prepare_speech_commands(sc["root"], tmp_path / "o", test_set=tdir, **OPTS)
    m, labels = _split(tmp_path / "o", "test")
    assert res.counts["test"] == 6 and all(p.startswith(str(tdir.resolve())) for p in labels)
    assert [r.relpath.startswith("/") for r in m.rows] == [True] * 6


def test_not_speech_commands(tmp_path):
    write_audio(tmp_path / "src" / "a" / "x.wav")
    with pytest.raises(PrepareError, match="validation_list.txt"):
        prepare_speech_commands(tmp_path / "src", tmp_path / "o", **OPTS)
