"""VoxCeleb1 preparer: SID splits from iden_split.txt, ASV trials mapped to manifest ids."""

import pytest

from audiossl.data.manifest import read_manifest
from audiossl.data.prepare import PrepareError
from audiossl.data.prepare.voxceleb1 import prepare_voxceleb1
from tests.fake_corpora import make_voxceleb1, write_bad

OPTS = dict(progress=False, workers=1)


@pytest.fixture
def vox(tmp_path):
    return make_voxceleb1(tmp_path / "src")


def test_sid_splits(vox, tmp_path):
    out = tmp_path / "out"
    res = prepare_voxceleb1(vox["root"], out, **OPTS)
    assert res.counts == {"sid_train": 8, "sid_valid": 4, "sid_test": 4, "asv_test": 5, "asv_train": 8}
    expected = {"sid_train": [], "sid_valid": [], "sid_test": []}
    for line in vox["iden"]:
        code, rel = line.split()
        if rel not in vox["bad"]:
            expected[{"1": "sid_train", "2": "sid_valid", "3": "sid_test"}[code]].append(rel)
    for split, rels in expected.items():
        m = read_manifest(out / f"{split}.tsv")
        assert m.root == (vox["root"] / "wav").resolve()
        assert [r.relpath for r in m.rows] == sorted(rels)
        assert m.labels["spk"] == [r.split("/")[0] for r in sorted(rels)]
    assert {p.path: p.reason for p in res.skipped} == {str(vox["root"] / "wav" / r): why for r, why in vox["bad"].items()}


def test_trials_map_to_manifest_ids(vox, tmp_path):
    out = tmp_path / "out"
    prepare_voxceleb1(vox["root"], out, **OPTS)
    test = read_manifest(out / "asv_test.tsv")
    ids = set(test.ids)
    lines = (out / "asv_trials.txt").read_text().splitlines()
    assert len(lines) == len(vox["trials"])
    for line, (lab, a, b) in zip(lines, vox["trials"]):
        got_lab, ua, ub = line.split()
        assert got_lab == lab and ua in ids and ub in ids
        assert ua == a[: -len(".wav")] and ub == b[: -len(".wav")]
    assert ids == {r[:-4] for _, a, b in vox["trials"] for r in (a, b)}
    train = read_manifest(out / "asv_train.tsv")
    assert set(train.labels["spk"]) == {"id10003", "id10004"}  # no trial speaker in ASV training
    assert len(train) == 8


def test_trial_with_bad_file_dropped(vox, tmp_path):
    write_bad(vox["root"] / "wav" / "id10002" / "bbbbbbbbbbb" / "00001.wav", "notaudio")
    res = prepare_voxceleb1(vox["root"], tmp_path / "o", **OPTS)
    assert len((tmp_path / "o" / "asv_trials.txt").read_text().splitlines()) == 2
    assert res.counts["asv_test"] == 4
    assert any(p.path.endswith("id10002/bbbbbbbbbbb/00001.wav") and p.reason == "unreadable" for p in res.skipped)


def test_explicit_and_meta_paths(vox, tmp_path):
    meta = vox["root"] / "meta"
    meta.mkdir()
    (vox["root"] / "iden_split.txt").rename(meta / "iden_split.txt")
    trials = tmp_path / "my_trials.txt"
    (vox["root"] / "veri_test2.txt").rename(trials)
    res = prepare_voxceleb1(vox["root"], tmp_path / "o", **OPTS)
    assert set(res.manifests) == {"sid_train", "sid_valid", "sid_test"}  # trials not found: SID only
    res = prepare_voxceleb1(vox["root"], tmp_path / "o2", trials=trials, **OPTS)
    assert res.counts["asv_test"] == 5 and "sid_train" in res.counts


def test_missing_metadata_errors(vox, tmp_path):
    with pytest.raises(PrepareError, match="nope.txt: not found"):
        prepare_voxceleb1(vox["root"], tmp_path / "o", iden_split=tmp_path / "nope.txt", **OPTS)
    (vox["root"] / "iden_split.txt").unlink()
    (vox["root"] / "veri_test2.txt").unlink()
    with pytest.raises(PrepareError, match="iden_split.txt nor veri_test"):
        prepare_voxceleb1(vox["root"], tmp_path / "o", **OPTS)
    with pytest.raises(PrepareError, match="wav: not found"):
        prepare_voxceleb1(tmp_path, tmp_path / "o", **OPTS)


def test_malformed_lines(vox, tmp_path):
    with open(vox["root"] / "iden_split.txt", "a") as f:
        f.write("4 id10001/aaaaaaaaaaa/00001.wav\n")
    n = len(vox["iden"]) + 1
    with pytest.raises(PrepareError, match=rf"iden_split.txt:{n}: expected"):
        prepare_voxceleb1(vox["root"], tmp_path / "o", **OPTS)
    (vox["root"] / "iden_split.txt").unlink()
    (vox["root"] / "veri_test2.txt").write_text("1 id10001/x.wav id10002/aaaaaaaaaaa/00001.wav\n")
    with pytest.raises(PrepareError, match=r"veri_test2.txt:1: expected a path"):
        prepare_voxceleb1(vox["root"], tmp_path / "o", **OPTS)
