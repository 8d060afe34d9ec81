"""NSynth preparer: instrument family + pitch labels from examples.json."""

import json

import pytest

from audiossl.data.manifest import read_manifest
from audiossl.data.prepare import PrepareError
from audiossl.data.prepare.nsynth import prepare_nsynth
from tests.fake_corpora import make_nsynth, write_audio

OPTS = dict(progress=False, workers=1)


@pytest.fixture
def ns(tmp_path):
    return make_nsynth(tmp_path / "src")


def test_splits_and_labels(ns, tmp_path):
    out = tmp_path / "out"
    res = prepare_nsynth(ns["root"], out, **OPTS)
    assert res.counts == {"train": 3, "valid": 3, "test": 3}
    for split in ("train", "valid", "test"):
        m = read_manifest(out / f"{split}.tsv")
        assert m.root == ns["root"].resolve()
        assert set(m.labels) == {"lbl", "pitch", "source"}
        for uid, lbl, pitch, source in zip(m.ids, m.labels["lbl"], m.labels["pitch"], m.labels["source"]):
            note = ns["notes"][split][uid.rsplit("/", 1)[1]]
            assert (lbl, int(pitch), source) == (note["instrument_family_str"], note["pitch"], note["instrument_source_str"])
        assert m.ids == sorted(m.ids)
    assert {p.path: p.reason for p in res.skipped} == {str(ns["root"] / r): why for r, why in ns["bad"].items()}


def test_listed_without_audio_and_audio_without_entry(ns, tmp_path):
    audio = ns["root"] / "nsynth-valid" / "audio"
    (audio / "guitar_acoustic_000-061-100.wav").unlink()
    write_audio(audio / "flute_acoustic_099-070-100.wav")  # not in examples.json: left out
    res = prepare_nsynth(ns["root"], tmp_path / "o", splits=["valid"], **OPTS)
    assert res.counts == {"valid": 2}
    assert [(p.path.rsplit("/", 1)[1], p.reason) for p in res.skipped] == [("guitar_acoustic_000-061-100.wav", "missing")]
    assert not any("flute" in line for line in (tmp_path / "o" / "valid.tsv").read_text().splitlines())


def test_metadata_errors(ns, tmp_path):
    meta = ns["root"] / "nsynth-test" / "examples.json"
    data = json.loads(meta.read_text())
    first = sorted(data)[0]
    del data[first]["pitch"]
    meta.write_text(json.dumps(data))
    with pytest.raises(PrepareError, match=rf"note '{first}' lacks \['pitch'\]"):
        prepare_nsynth(ns["root"], tmp_path / "o", **OPTS)
    meta.write_text('{\n"a": {\n')
    with pytest.raises(PrepareError, match=r"examples.json:3: not valid JSON"):
        prepare_nsynth(ns["root"], tmp_path / "o", **OPTS)
    meta.unlink()
    with pytest.raises(PrepareError, match=r"nsynth-test/examples.json: not found"):
        prepare_nsynth(ns["root"], tmp_path / "o", **OPTS)


def test_split_dirs(ns, tmp_path):
    with pytest.raises(PrepareError, match="no nsynth-train"):
        prepare_nsynth(tmp_path / "o", tmp_path / "o2", **OPTS)
    (ns["root"] / "nsynth-valid" / "examples.json").rename(tmp_path / "x.json")
    with pytest.raises(PrepareError, match="nsynth-valid/examples.json"):
        prepare_nsynth(ns["root"], tmp_path / "o", **OPTS)
    res = prepare_nsynth(ns["root"], tmp_path / "o", splits=["train", "test"], **OPTS)
    assert list(res.counts) == ["train", "test"]
