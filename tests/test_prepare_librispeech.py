"""LibriSpeech preparer on a fake tree with the real layout (and bad files mixed in)."""

import pytest
import soundfile as sf

from audiossl.data.manifest import read_manifest
from audiossl.data.prepare import PrepareError
from audiossl.data.prepare.librispeech import letters, prepare_librispeech, read_lexicon
from tests.fake_corpora import make_librispeech

OPTS = dict(progress=False, workers=1)


@pytest.fixture
def libri(tmp_path):
    return make_librispeech(tmp_path / "src")


def test_splits_labels_and_skipped(libri, tmp_path):
    out = tmp_path / "out"
    res = prepare_librispeech(libri["root"].parent, out, **OPTS)
    assert res.counts == {"dev-clean-2": 6, "train-clean-5": 6}
    for split in ("train-clean-5", "dev-clean-2"):
        m = read_manifest(out / f"{split}.tsv")
        assert m.root == libri["root"].resolve()
        assert [r.relpath for r in m.rows] == libri["good"][split]  # every good file kept, sorted
        assert set(m.labels) == {"wrd", "ltr", "spk"}
        for row, wrd, ltr, spk in zip(m.rows, m.labels["wrd"], m.labels["ltr"], m.labels["spk"]):
            assert row.num_samples == sf.info(str(m.root / row.relpath)).frames
            assert spk == row.relpath.split("/")[1]
            assert ltr == letters(wrd)
        assert m.labels["wrd"][:3] == ["HELLO WORLD", "THE QUICK BROWN FOX", "IT'S A TEST"]
    reasons = {p.path: p.reason for p in res.skipped}
    assert reasons == {str(libri["root"] / rel): why for rel, why in libri["bad"].items()}
    listed = (out / "skipped.txt").read_text().splitlines()
    assert len(listed) == 3 and all(line.split("\t")[1] in {"empty", "unreadable", "too_short"} for line in listed)
    assert "skipped 3 files" in res.summary()


def test_letters_format():
    assert letters("HELLO WORLD") == "H E L L O | W O R L D |"
    assert letters("  A  B ") == "A | B |"


def test_src_forms_give_same_manifest(libri, tmp_path):
    a = prepare_librispeech(libri["root"], tmp_path / "a", **OPTS)
    b = prepare_librispeech(libri["root"] / "dev-clean-2", tmp_path / "b", **OPTS)
    assert list(b.counts) == ["dev-clean-2"]
    assert (tmp_path / "a" / "dev-clean-2.tsv").read_text() == (tmp_path / "b" / "dev-clean-2.tsv").read_text()
    assert a.counts["train-clean-5"] == 6


def test_split_selection(libri, tmp_path):
    res = prepare_librispeech(libri["root"], tmp_path / "o", splits=["dev-clean-2"], **OPTS)
    assert list(res.manifests) == ["dev-clean-2"]
    with pytest.raises(PrepareError, match="train-clean-100.*not found"):
        prepare_librispeech(libri["root"], tmp_path / "o", splits=["train-clean-100"], **OPTS)


def test_missing_transcript_file_is_clear_error(libri, tmp_path):
    trans = libri["root"] / "dev-clean-2" / "201" / "3000" / "201-3000.trans.txt"
    trans.unlink()
    with pytest.raises(PrepareError) as e:
        prepare_librispeech(libri["root"], tmp_path / "o", **OPTS)
    assert str(trans) in str(e.value) and "transcript" in str(e.value)


def test_untranscribed_audio_and_missing_audio_reported(libri, tmp_path):
    chap = libri["root"] / "dev-clean-2" / "101" / "2000"
    (chap / "101-2000-0002.flac").unlink()
    (chap / "101-2000-0009.flac").write_bytes((chap / "101-2000-0000.flac").read_bytes())
    res = prepare_librispeech(libri["root"], tmp_path / "o", splits=["dev-clean-2"], **OPTS)
    reasons = {p.path.rsplit("/", 1)[1]: p.reason for p in res.skipped}
    assert reasons == {"101-2000-0002.flac": "missing", "101-2000-0009.flac": "no_transcript"}
    assert res.counts["dev-clean-2"] == 5


def test_no_librispeech_layout(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(PrepareError, match="trans.txt"):
        prepare_librispeech(tmp_path / "empty", tmp_path / "o", **OPTS)


@pytest.fixture
def lexicon(tmp_path):
    path = tmp_path / "lexicon.txt"
    path.write_text(
        ";;; comment\nHELLO HH AH0 L OW1\nhello(2) HH EH0 L OW1\nWORLD W ER1 L D\nTHE DH AH0\n"
        "QUICK K W IH1 K\nBROWN B R AW1 N\nFOX F AA1 K S\nIT'S IH1 T S\nA AH0\nTEST T EH1 S T\n"
    )
    return path


def test_lexicon_phones(libri, lexicon, tmp_path):
    res = prepare_librispeech(libri["root"], tmp_path / "o", splits=["dev-clean-2"], lexicon=lexicon, **OPTS)
    phn = (tmp_path / "o" / "dev-clean-2.phn").read_text().splitlines()
    assert len(phn) == res.counts["dev-clean-2"] == 6
    assert phn[0] == "HH AH0 L OW1 W ER1 L D"
    prepare_librispeech(libri["root"], tmp_path / "s", splits=["dev-clean-2"], lexicon=lexicon, strip_stress=True, **OPTS)
    assert (tmp_path / "s" / "dev-clean-2.phn").read_text().splitlines()[0] == "HH AH L OW W ER L D"


def test_lexicon_variants_and_bad_lines(tmp_path, lexicon):
    assert read_lexicon(lexicon)["HELLO"] == ["HH", "AH0", "L", "OW1"]  # first pronunciation wins
    bad = tmp_path / "bad.txt"
    bad.write_text("HELLO HH AH0\nWORLD\n")
    with pytest.raises(PrepareError, match=r"bad.txt:2"):
        read_lexicon(bad)


def test_oov_error_and_skip(libri, lexicon, tmp_path):
    text = lexicon.read_text().replace("FOX F AA1 K S\n", "").replace("TEST T EH1 S T\n", "")
    lexicon.write_text(text)
    with pytest.raises(PrepareError) as e:
        prepare_librispeech(libri["root"], tmp_path / "o", splits=["dev-clean-2"], lexicon=lexicon, **OPTS)
    msg = str(e.value)
    assert "2 words" in msg and "FOX" in msg and "TEST" in msg and "--skip-oov" in msg
    assert not (tmp_path / "o" / "dev-clean-2.tsv").exists()
    res = prepare_librispeech(libri["root"], tmp_path / "o", splits=["dev-clean-2"], lexicon=lexicon, skip_oov=True, **OPTS)
    assert res.counts["dev-clean-2"] == 2  # only the two "HELLO WORLD" utterances remain
    oov = [p for p in res.skipped if p.reason == "oov"]
    assert len(oov) == 4 and any("FOX" in p.detail for p in oov)
    m = read_manifest(tmp_path / "o" / "dev-clean-2.tsv")
    assert m.labels["wrd"] == ["HELLO WORLD", "HELLO WORLD"] and len(m.labels["phn"]) == 2


def test_deterministic(libri, tmp_path):
    prepare_librispeech(libri["root"], tmp_path / "a", **OPTS)
    prepare_librispeech(libri["root"], tmp_path / "b", workers=2, **{k: v for k, v in OPTS.items() if k != "workers"})
    for f in sorted((tmp_path / "a").iterdir()):
        if f.name != "skipped.txt":
            assert f.read_text() == (tmp_path / "b" / f.name).read_text()
