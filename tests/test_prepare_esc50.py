"""ESC-50 preparer: five folds from meta/esc50.csv with category labels."""

import pytest

from audiossl.data.manifest import read_manifest
from audiossl.data.prepare import PrepareError
from audiossl.data.prepare.esc50 import prepare_esc50
from tests.fake_corpora import ESC_CATS, make_esc50

OPTS = dict(progress=False, workers=1)


@pytest.fixture
def esc(tmp_path):
    return make_esc50(tmp_path / "src")


def test_folds_and_labels(esc, tmp_path):
    out = tmp_path / "out"
    res = prepare_esc50(esc["root"], out, **OPTS)
    assert res.counts == {f"fold{k}": 3 for k in range(1, 6)}
    for k in range(1, 6):
        m = read_manifest(out / f"fold{k}.tsv")
        assert m.root == esc["root"].resolve()
        assert all(r.relpath.startswith(f"audio/{k}-") for r in m.rows)
        assert all(r.num_samples == 4000 for r in m.rows)
        for r, lbl, target in zip(m.rows, m.labels["lbl"], m.labels["target"]):
            assert r.relpath.endswith(f"-{target}.wav") and ESC_CATS[int(target)] == lbl
    assert {p.path: p.reason for p in res.skipped} == {str(esc["root"] / r): why for r, why in esc["bad"].items()}
    assert "skipped 3 files" in res.summary()


def test_esc10_subset(esc, tmp_path):
    res = prepare_esc50(esc["root"], tmp_path / "o", esc10=True, **OPTS)
    assert res.counts == {f"fold{k}": 1 for k in range(1, 6)}
    assert set(read_manifest(tmp_path / "o" / "fold3.tsv").labels["lbl"]) == {"dog"}
    assert [p.reason for p in res.skipped] == ["missing"]  # the listed-but-absent ESC-10 clip


def test_missing_csv(esc, tmp_path):
    (esc["root"] / "meta" / "esc50.csv").unlink()
    with pytest.raises(PrepareError) as e:
        prepare_esc50(esc["root"], tmp_path / "o", **OPTS)
    assert "esc50.csv: not found" in str(e.value) and "filename,fold,target,category" in str(e.value)


def test_bad_csv(esc, tmp_path):
    csv_path = esc["root"] / "meta" / "esc50.csv"
    lines = csv_path.read_text().splitlines()
    csv_path.write_text("\n".join([lines[0].replace(",category", ",cat")] + lines[1:]) + "\n")
    with pytest.raises(PrepareError, match=r"esc50.csv:1: missing column\(s\) \['category'\]"):
        prepare_esc50(esc["root"], tmp_path / "o", **OPTS)
    lines[3] = lines[3].replace(",1,", ",7,", 1)
    csv_path.write_text("\n".join(lines) + "\n")
    with pytest.raises(PrepareError, match=r"esc50.csv:4: fold '7' is not 1-5"):
        prepare_esc50(esc["root"], tmp_path / "o", **OPTS)
