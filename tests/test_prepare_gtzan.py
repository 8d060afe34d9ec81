"""GTZAN preparer: filtered split lists or a seeded stratified split; the corrupt file is skipped."""

import pytest

from audiossl.data.manifest import read_manifest
from audiossl.data.prepare import PrepareError
from audiossl.data.prepare.gtzan import prepare_gtzan
from tests.fake_corpora import GTZAN_GENRES, make_gtzan

OPTS = dict(progress=False, workers=1)


def _rels(out):
    return {s: [r.relpath for r in read_manifest(out / f"{s}.tsv").rows] for s in ("train", "valid", "test")}


def test_stratified_split(tmp_path):
    g = make_gtzan(tmp_path / "src")
    out = tmp_path / "out"
    res = prepare_gtzan(g["root"], out, **OPTS)
    assert res.counts == {"train": 23, "valid": 3, "test": 3}
    rels = _rels(out)
    per_genre = {s: {g: 0 for g in GTZAN_GENRES} for s in rels}
    for s in rels:
        m = read_manifest(out / f"{s}.tsv")
        assert m.root == g["gdir"].resolve()
        assert m.labels["lbl"] == [r.split("/")[0] for r in rels[s]]
        for lab in m.labels["lbl"]:
            per_genre[s][lab] += 1
    for genre in ("blues", "classical"):  # 80/10/10 within each genre
        assert [per_genre[s][genre] for s in ("train", "valid", "test")] == [8, 1, 1]
    assert sum(per_genre[s]["jazz"] for s in rels) == 9  # the corrupt one is gone
    everything = rels["train"] + rels["valid"] + rels["test"]
    assert len(everything) == len(set(everything))  # disjoint
    assert sorted(everything) == sorted(r for r in g["rels"] if r not in g["bad"])  # nothing good lost
    assert [(p.path, p.reason) for p in res.skipped] == [(str(g["gdir"] / "jazz/jazz.00004.wav"), "unreadable")]


def test_split_depends_only_on_seed(tmp_path):
    g = make_gtzan(tmp_path / "src")
    prepare_gtzan(g["root"], tmp_path / "a", seed=0, **OPTS)
    prepare_gtzan(g["root"], tmp_path / "b", seed=0, **OPTS)
    prepare_gtzan(g["root"], tmp_path / "c", seed=1, **OPTS)
    assert _rels(tmp_path / "a") == _rels(tmp_path / "b")
    assert _rels(tmp_path / "a") != _rels(tmp_path / "c")


@pytest.mark.parametrize("dirname", ["genres", "genres_original"])
def test_layout_variants(tmp_path, dirname):
    g = make_gtzan(tmp_path / "src", dirname=dirname, per_genre=6)
    a = prepare_gtzan(g["root"], tmp_path / "a", **OPTS)
    b = prepare_gtzan(g["gdir"], tmp_path / "b", **OPTS)  # SRC = the genres dir itself
    assert a.counts == b.counts and a.counts == {"train": 11, "valid": 3, "test": 3}
    assert (tmp_path / "a" / "train.tsv").read_text() == (tmp_path / "b" / "train.tsv").read_text()


def test_filtered_lists(tmp_path):
    g = make_gtzan(tmp_path / "src", lists=True)
    res = prepare_gtzan(g["root"], tmp_path / "o", **OPTS)
    assert res.counts == {"train": 17, "valid": 6, "test": 6}  # 6/2/2 per genre, minus the corrupt jazz file
    rels = _rels(tmp_path / "o")
    assert rels["valid"] == [f"{g}/{g}.{n:05d}.wav" for g in GTZAN_GENRES for n in (6, 7)]
    assert [p.reason for p in res.skipped] == ["unreadable"]


def test_list_errors(tmp_path):
    g = make_gtzan(tmp_path / "src", lists=True, per_genre=4)
    (g["root"] / "test_filtered.txt").unlink()
    with pytest.raises(PrepareError, match="test_filtered.txt"):
        prepare_gtzan(g["root"], tmp_path / "o", **OPTS)
    with pytest.raises(PrepareError, match="no train_filtered.txt"):
        prepare_gtzan(g["root"], tmp_path / "o", split_dir=tmp_path, **OPTS)
    (g["root"] / "valid_filtered.txt").write_text("blues.00000.wav\n")
    (g["root"] / "test_filtered.txt").write_text("")
    with pytest.raises(PrepareError, match=r"valid_filtered.txt:1: expected '<genre>/<genre>.000NN.wav'"):
        prepare_gtzan(g["root"], tmp_path / "o", **OPTS)


def test_listed_file_missing(tmp_path):
    g = make_gtzan(tmp_path / "src", lists=True, per_genre=6)
    (g["gdir"] / "blues" / "blues.00000.wav").unlink()
    res = prepare_gtzan(g["root"], tmp_path / "o", **OPTS)
    assert sorted((p.path.rsplit("/", 1)[1], p.reason) for p in res.skipped) == [
        ("blues.00000.wav", "missing"),
        ("jazz.00004.wav", "unreadable"),
    ]
    assert res.counts["train"] == 6 * 3 - 2


def test_no_gtzan(tmp_path):
    (tmp_path / "x").mkdir()
    with pytest.raises(PrepareError, match="genres"):
        prepare_gtzan(tmp_path / "x", tmp_path / "o", **OPTS)
