import json
import math

import numpy as np
import pytest

from audiossl.cli.main import main as cli
from audiossl.data.frame_labels import LabelInfo, write_frame_labels
from audiossl.tokenizers.quality import AlignmentError, align_to_hyp, label_quality, quality_from_counts, resample_labels


def _mi_by_hand(counts):
    n = sum(map(sum, counts))
    px = [sum(r) / n for r in counts]
    py = [sum(col) / n for col in zip(*counts)]
    mi = 0.0
    for i, r in enumerate(counts):
        for j, c in enumerate(r):
            if c:
                mi += c / n * math.log2((c / n) / (px[i] * py[j]))
    hx = -sum(p * math.log2(p) for p in px if p)
    return mi, hx


def test_hand_computed_table():
    counts = [[4, 1, 0], [0, 2, 3]]  # phones x units
    q = quality_from_counts(np.array(counts), num_units=4)
    mi, hx = _mi_by_hand(counts)
    assert q.pnmi == pytest.approx(mi / hx)
    assert q.phone_entropy_bits == pytest.approx(1.0)  # 5 / 5 frames
    assert q.phone_purity == pytest.approx((4 + 2 + 3) / 10)  # per unit, its best phone
    assert q.cluster_purity == pytest.approx((4 + 3) / 10)  # per phone, its best unit
    assert q.codebook_usage == pytest.approx(3 / 4) and q.units_used == 3
    hu = -sum(p * math.log2(p) for p in (0.4, 0.3, 0.3))
    assert q.unit_entropy_bits == pytest.approx(hu)
    assert q.unit_perplexity == pytest.approx(2**hu)
    assert q.num_frames == 10 and q.num_phones == 2


def test_identical_labelling_gives_pnmi_one():
    rng = np.random.default_rng(0)
    syms = np.array(["sil", "a", "b", "k", "s"])
    ref = [list(syms[rng.integers(0, 5, n)]) for n in (30, 50, 41)]
    to_id = {s: i for i, s in enumerate(syms)}
    hyp = [np.array([to_id[s] for s in r]) for r in ref]
    q = label_quality(hyp, ref, hyp_rate=100, ref_rate=100, num_units=5)
    assert q.pnmi == pytest.approx(1.0)
    assert q.phone_purity == pytest.approx(1.0) and q.cluster_purity == pytest.approx(1.0)
    # a finer unit set that splits each phone keeps PNMI at 1 and phone purity at 1
    split = [np.array([2 * to_id[s] + (i % 2) for i, s in enumerate(r)]) for r in ref]
    q2 = label_quality(split, ref, hyp_rate=100, ref_rate=100, num_units=10)
    assert q2.pnmi == pytest.approx(1.0) and q2.phone_purity == pytest.approx(1.0)
    assert q2.cluster_purity < 0.7


def test_independent_labelling_gives_pnmi_near_zero():
    rng = np.random.default_rng(1)
    ref = [[str(s) for s in rng.integers(0, 10, 2000)] for _ in range(20)]
    hyp = [rng.integers(0, 50, 2000) for _ in range(20)]
    q = label_quality(hyp, ref, hyp_rate=50, ref_rate=50, num_units=50)
    assert q.pnmi < 0.01
    assert q.codebook_usage == 1.0
    assert q.unit_perplexity == pytest.approx(50, rel=0.01)


def test_alignment_with_different_rates():
    # reference at 100 Hz, units at 50 Hz: unit i covers ref frames 2i, 2i+1
    ref = [["sil"] * 20 + ["a"] * 40 + ["b"] * 40]  # 1.0 s
    hyp = [np.array([0] * 10 + [1] * 20 + [2] * 20)]
    q = label_quality(hyp, ref, hyp_rate=50, ref_rate=100)
    assert q.pnmi == pytest.approx(1.0) and q.num_frames == 50
    # HuBERT's conv stack gives 49 frames for 1 s: allowed, nothing dropped
    q = label_quality([hyp[0][:49]], ref, hyp_rate=50, ref_rate=100)
    assert q.pnmi == pytest.approx(1.0) and q.num_frames == 49 and q.dropped_frames == 0
    # two extra frames at the end are cut
    q = label_quality([np.concatenate([hyp[0], [2, 2]])], ref, hyp_rate=50, ref_rate=100)
    assert q.num_frames == 50 and q.dropped_frames == 2
    # Kaldi MFCC at 100 Hz: 178 frames vs a 181-frame alignment is within the default tolerance (3)
    assert align_to_hyp(178, 181, 100.0, 100.0)[1] == 0
    assert align_to_hyp(177, 181, 100.0, 100.0) == (None, -4)
    assert align_to_hyp(177, 181, 100.0, 100.0, tolerance=4)[0] is not None
    # non-integer ratio: 75 Hz units read ref frame floor(i * 100 / 75)
    idx, cut = align_to_hyp(75, 100, 75.0, 100.0)
    assert cut == 0 and idx.tolist()[:5] == [0, 1, 2, 4, 5] and idx[-1] == 98
    # units faster than the reference repeat reference frames
    idx, _ = align_to_hyp(8, 4, 100.0, 50.0)
    assert idx.tolist() == [0, 0, 1, 1, 2, 2, 3, 3]


def test_mismatched_lengths_error_names_row_and_numbers():
    ref = [["a"] * 100, ["b"] * 100]
    hyp = [np.zeros(50, dtype=np.int64), np.zeros(60, dtype=np.int64)]
    with pytest.raises(AlignmentError) as e:
        label_quality(hyp, ref, hyp_rate=50, ref_rate=100, hyp_name="x.km", ref_name="x.ali")
    msg = str(e.value)
    assert "x.km row 2" in msg and "60 frames" in msg and "100 frames" in msg and "x.ali" in msg
    with pytest.raises(AlignmentError, match="1 rows but .* has 2"):
        label_quality(hyp[:1], ref, hyp_rate=50, ref_rate=100)


def test_quality_cli_table_and_json(tmp_path, capsys):
    ref = [["sil"] * 10 + ["a"] * 20, ["b"] * 16 + ["sil"] * 6]
    (tmp_path / "dev.ali").write_text("".join(" ".join(r) + "\n" for r in ref))
    hyp = [np.array([0] * 5 + [1] * 10), np.array([2] * 8 + [0] * 3)]
    write_frame_labels(tmp_path / "dev.km", hyp, LabelInfo(frame_rate=50.0, num_classes=8, tokenizer={"kind": "kmeans"}))
    out = tmp_path / "q.json"
    assert cli(["kmeans", "quality", str(tmp_path / "dev.km"), "--ref", str(tmp_path / "dev.ali"), "--ref-rate", "100",
                "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "PNMI" in printed and "codebook usage" in printed and "3/8 units" in printed
    data = json.loads(out.read_text())
    assert data["pnmi"] == pytest.approx(1.0) and data["num_frames"] == 26 and data["codebook_usage"] == 3 / 8

    assert cli(["kmeans", "quality", str(tmp_path / "dev.km"), "--ref", str(tmp_path / "dev.ali"), "--ref-rate", "50"]) == 1
    err = capsys.readouterr().err
    assert "row 1" in err and "15 frames" in err and "30 frames" in err


def test_quality_cli_scores_each_codebook_of_multi_codebook_labels(tmp_path, capsys):
    ref = [["sil"] * 10 + ["a"] * 20, ["b"] * 16 + ["sil"] * 6]
    (tmp_path / "dev.ali").write_text("".join(" ".join(r) + "\n" for r in ref))
    perfect = [np.array([0] * 5 + [1] * 10), np.array([2] * 8 + [0] * 3)]
    noise = [np.zeros(15, dtype=np.int64), np.zeros(11, dtype=np.int64)]  # one unit: PNMI 0
    hyp = [np.stack([p, n], axis=1) for p, n in zip(perfect, noise)]
    labels = tmp_path / "dev.bt"
    write_frame_labels(labels, hyp, LabelInfo(frame_rate=50.0, num_classes=8, num_codebooks=2))
    out = tmp_path / "q.json"
    assert cli(["kmeans", "quality", str(labels), "--ref", str(tmp_path / "dev.ali"), "--json", str(out)]) == 0
    assert "mean PNMI over 2 codebooks: 0.5000 (best 1.0000)" in capsys.readouterr().out
    data = json.loads(out.read_text())
    assert data["pnmi"] == pytest.approx(0.5) and data["pnmi_best"] == pytest.approx(1.0) and len(data["codebooks"]) == 2
    assert cli(["kmeans", "quality", str(labels), "--ref", str(tmp_path / "dev.ali"), "--band", "1"]) == 0
    assert cli(["kmeans", "quality", str(labels), "--ref", str(tmp_path / "dev.ali"), "--band", "2"]) == 1
    assert "has 2 codebook(s)" in capsys.readouterr().err


def test_resample_labels_nearest_frame_by_start_time():
    h = np.array([3, 4, 5, 6, 7, 8, 9])
    assert resample_labels(h, 100, 50).tolist() == [3, 5, 7, 9]  # ceil(7 / 2) frames, even frames
    assert resample_labels(h, 100, 100).tolist() == h.tolist()
    assert resample_labels(h[:4], 50, 100).tolist() == [3, 3, 4, 4, 5, 5, 6, 6]
    assert resample_labels(np.arange(8), 100, 75).tolist() == [0, 1, 2, 4, 5, 6]
    multi = np.arange(12).reshape(6, 2)  # [frames, codebooks]: whole frames are taken
    assert resample_labels(multi, 100, 50).tolist() == [[0, 1], [4, 5], [8, 9]]
    assert resample_labels(np.empty(0, np.int64), 100, 50).shape == (0,)
    with pytest.raises(ValueError, match="positive"):
        resample_labels(h, 0, 50)


def test_quality_cli_rate_scores_100hz_labels_at_50hz(tmp_path, capsys):
    # 100 Hz units that flip on odd frames: at 100 Hz they carry less phone information than the
    # even frames alone, which are the phone identity -> PNMI 1 at 50 Hz.
    ref = [["a"] * 20 + ["b"] * 20, ["b"] * 10 + ["c"] * 30]
    (tmp_path / "dev.ali").write_text("".join(" ".join(r) + "\n" for r in ref))
    ids = {"a": 0, "b": 1, "c": 2}
    hyp = [np.array([ids[s] if i % 2 == 0 else 3 + i % 4 for i, s in enumerate(r)]) for r in ref]
    write_frame_labels(tmp_path / "dev.km", hyp, LabelInfo(frame_rate=100.0, num_classes=8, tokenizer={"kind": "kmeans"}))
    base = ["kmeans", "quality", str(tmp_path / "dev.km"), "--ref", str(tmp_path / "dev.ali"), "--ref-rate", "100"]
    assert cli(base + ["--json", str(tmp_path / "q100.json")]) == 0
    assert cli(base + ["--rate", "50", "--json", str(tmp_path / "q50.json")]) == 0
    q100, q50 = (json.loads((tmp_path / f"q{r}.json").read_text()) for r in (100, 50))
    assert q100["pnmi"] < 0.9 and q100["frame_rate"] == 100.0 and q100["resampling"] is None
    assert q50["pnmi"] == pytest.approx(1.0) and q50["num_frames"] == 40 and q50["frame_rate"] == 50.0
    assert q50["label_rate"] == 100.0 and q50["resampling"].startswith("nearest")
