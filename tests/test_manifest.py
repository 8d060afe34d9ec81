import pytest

from audiossl.data.manifest import Manifest, ManifestError, Row, read_manifest, write_manifest
from audiossl.data.sources import collect_audio_paths, read_wav_scp


def _m(n=3):
    return Manifest("/data/root", [Row(f"spk/u{i}.wav", 1000 + i) for i in range(n)])


def test_roundtrip_with_labels(tmp_path):
    m = _m()
    m.add_labels("wrd", ["A B", "C", "D E F"])
    m.add_labels("spk", ["s1", "s1", "s2"])
    tsv = write_manifest(m, tmp_path / "train.tsv")
    lines = tsv.read_text().splitlines()
    assert lines[0] == "/data/root" and lines[1] == "spk/u0.wav\t1000"
    r = read_manifest(tsv)
    assert r.rows == m.rows and r.labels == m.labels and r.ids == ["spk/u0", "spk/u1", "spk/u2"]
    assert read_manifest(tsv, labels=["wrd"]).labels.keys() == {"wrd"}


def test_row_count_mismatch_refused_on_write():
    m = _m()
    with pytest.raises(ManifestError, match=r"2 label lines .* has 3 rows"):
        m.add_labels("wrd", ["A", "B"])


def test_row_count_mismatch_refused_on_read(tmp_path):
    m = _m()
    m.add_labels("ltr", ["A |", "B |", "C |"])
    tsv = write_manifest(m, tmp_path / "dev.tsv")
    (tmp_path / "dev.ltr").write_text("A |\nB |\n")
    with pytest.raises(ManifestError) as e:
        read_manifest(tsv)
    msg = str(e.value)
    assert str(tmp_path / "dev.ltr") in msg and "2 label lines" in msg and "3 rows" in msg


def test_bad_lines_and_duplicates(tmp_path):
    (tmp_path / "a.tsv").write_text("/root\nx.wav\tnotanint\n")
    with pytest.raises(ManifestError, match=r"a.tsv:2: num_samples"):
        read_manifest(tmp_path / "a.tsv")
    (tmp_path / "b.tsv").write_text("/root\nx.wav 12\n")
    with pytest.raises(ManifestError, match=r"b.tsv:2: expected"):
        read_manifest(tmp_path / "b.tsv")
    (tmp_path / "c.tsv").write_text("/root\nx.wav\t12\ny.wav\t3\nx.wav\t12\n")
    with pytest.raises(ManifestError, match=r"duplicate utterance id 'x' on rows 2 and 4"):
        read_manifest(tmp_path / "c.tsv")
    with pytest.raises(ManifestError, match="not found"):
        read_manifest(tmp_path / "nope.tsv")
    (tmp_path / "d.tsv").write_text("")
    with pytest.raises(ManifestError, match="empty"):
        read_manifest(tmp_path / "d.tsv")


def test_missing_audio_files_named(tmp_path):
    tsv = write_manifest(Manifest(tmp_path, [Row("gone.wav", 10)]), tmp_path / "t.tsv")
    with pytest.raises(ManifestError, match="gone.wav does not exist"):
        read_manifest(tsv, check_files=True)


def test_select_keeps_labels_aligned():
    m = _m()
    m.add_labels("spk", ["a", "b", "c"])
    s = m.select([2, 0])
    assert [r.relpath for r in s.rows] == ["spk/u2.wav", "spk/u0.wav"] and s.labels["spk"] == ["c", "a"]


def test_wav_scp(tmp_path):
    scp = tmp_path / "wav.scp"
    scp.write_text("utt1 /a/b.wav\nutt2 /a/c.flac\n")
    assert read_wav_scp(scp) == [("utt1", "/a/b.wav"), ("utt2", "/a/c.flac")]
    assert collect_audio_paths(scp) == ["/a/b.wav", "/a/c.flac"]
    scp.write_text("utt1 sox x.wav -t wav - |\n")
    with pytest.raises(ValueError, match="piped command"):
        read_wav_scp(scp)
