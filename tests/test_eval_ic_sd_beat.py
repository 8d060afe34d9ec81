"""IC / SD / beat tracking: metrics against hand-computed values and the libraries' own definitions,
PIT, frame targets, label checks before training, and the opt-in demo synthesis."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from audiossl.data.frame_labels import LabelError
from audiossl.eval import beat_tracking as B
from audiossl.eval import diarization as D


# -- diarization ---------------------------------------------------------------------------------

def test_der_hand_computed():
    ref = [(0.0, 10.0, "a"), (5.0, 15.0, "b")]  # 20 s of reference speech, 5 s overlapped
    # names differ from the reference: the optimal mapping makes x=a, y=b
    assert D.der([ref], [[(0.0, 10.0, "x"), (5.0, 15.0, "y")]])["der"] == pytest.approx(0.0)
    # y only from 10 s: b's [5, 10) is missed → 5 / 20
    r = D.der([ref], [[(0.0, 10.0, "x"), (10.0, 15.0, "y")]])
    assert r["der"] == pytest.approx(25.0) and r["miss"] == pytest.approx(25.0) and r["fa"] == 0
    # one hypothesis speaker everywhere: [5,10) one of two missed (5 s), [10,15) confused (5 s) → 50 %
    r = D.der([ref], [[(0.0, 15.0, "x")]])
    assert r["der"] == pytest.approx(50.0) and r["miss"] == pytest.approx(25.0) and r["conf"] == pytest.approx(25.0)
    # false alarm after the reference ends, inside a 20 s UEM: 3 / 20
    r = D.der([ref], [[(0.0, 10.0, "x"), (5.0, 18.0, "y")]], durations=[20.0])
    assert r["fa"] == pytest.approx(15.0) and r["der"] == pytest.approx(15.0)
    # corpus-level: totals pooled over files, not averaged (5 s missed over 20 + 10 s)
    r = D.der([ref, [(0.0, 10.0, "c")]], [[(0.0, 10.0, "x"), (10.0, 15.0, "y")], [(0.0, 10.0, "z")]])
    assert r["der"] == pytest.approx(100 * 5 / 30)


def test_frames_and_segments_round_trip():
    segs = [(0.10, 0.50, "s2"), (0.30, 0.80, "s1")]
    y = D.frame_activity(segs, 100, 100.0)
    assert y.shape == (100, 2) and y[:, 0].sum() == 40 and y[:, 1].sum() == 50  # s2 first: column 0
    back = D.activity_to_segments(y, 100.0, ("s2", "s1"))
    assert back == [(0.1, 0.5, "s2"), (0.3, 0.8, "s1")]
    with pytest.raises(LabelError, match="3 speakers"):
        D.frame_activity(segs + [(0.9, 1.0, "s3")], 100, 100.0)
    with pytest.raises(LabelError, match="'1.0:oops' is not 'start:end:speaker'"):
        D.parse_segments("0.1:0.5:a 1.0:oops", "x.seg:3")


def test_pit_loss_ignores_speaker_order_and_padding():
    torch.manual_seed(0)
    logits = torch.randn(2, 7, 2)
    y = (torch.rand(2, 7, 2) > 0.5).float()
    lens = torch.tensor([7, 4])
    a = D.pit_bce(logits, y, lens)
    assert torch.allclose(a, D.pit_bce(logits, y.flip(-1), lens))  # swapped speaker columns
    y2 = y.clone()
    y2[1, 4:] = 1 - y2[1, 4:]  # padding frames do not count
    assert torch.allclose(a, D.pit_bce(logits, y2, lens))
    # equals the min over the two orders computed by hand for one utterance
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    one = min(bce(logits[0], y[0]), bce(logits[0], y[0][:, [1, 0]]))
    assert torch.allclose(D.pit_bce(logits[:1], y[:1], lens[:1]), one)


# -- beats ---------------------------------------------------------------------------------------

def test_beat_f_measure_is_mir_eval():
    import mir_eval

    ref = np.array([0.5, 1.0, 1.5, 2.0])
    assert B.beat_f_measure([ref], [ref + 0.03]) == pytest.approx(100.0)  # inside ±70 ms
    # 2 of 3 estimates hit, 2 of 4 references found: P=2/3, R=1/2 → F = 4/7
    est = np.array([0.52, 1.2, 1.98])
    assert B.beat_f_measure([ref], [est]) == pytest.approx(100 * 4 / 7)
    assert B.beat_f_measure([ref], [est]) == pytest.approx(100 * mir_eval.beat.f_measure(ref, est))
    assert B.beat_f_measure([ref, ref], [ref, np.zeros(0)]) == pytest.approx(50.0)  # no estimate → 0


def test_beat_targets_and_peak_picking():
    y = B.beat_targets(np.array([0.105, 0.5]), 60, 100.0)
    assert y[10] == 1 and y[9] == y[11] == 0.5 and y[50] == 1 and y.sum() == 4
    act = np.zeros(100)
    act[[10, 11, 50, 52]] = [0.9, 0.8, 0.7, 0.95]  # 52 beats 50 within 60/300 s
    assert B.pick_peaks(act, 100.0).tolist() == pytest.approx([0.105, 0.525])
    with pytest.raises(LabelError, match="x.beats:2: beat times must be"):
        B.parse_beats("0.5 0.4", "x.beats:2")


# -- the opt-in demo sets, and the label checks that run before training --------------------------

@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    from audiossl.data.synth import synthesize

    out = tmp_path_factory.mktemp("demo")
    synthesize(out, "tiny", 0, 1, ["intents", "conversations", "music_beats"], progress=False)
    return out


def test_synth_sets(demo):
    from audiossl.data.manifest import read_manifest
    from audiossl.data.synth.bench_tasks import INTENTS

    m = read_manifest(demo / "intents" / "train.tsv")
    assert len(m) == 2 * len(INTENTS)
    assert set(m.labels["lbl"]) == {"|".join(t) for t in INTENTS}
    assert all(l == "|".join(x) for l, *x in zip(m.labels["lbl"], m.labels["action"], m.labels["object"], m.labels["location"]))
    c = read_manifest(demo / "conversations" / "train.tsv")
    overlap = 0.0
    for row, line in zip(c.rows, c.labels["seg"]):
        segs = D.parse_segments(line)
        assert len(D.speakers_in_order(segs)) == 2 and max(e for _, e, _ in segs) <= row.num_samples / 16000
        y = D.frame_activity(segs, row.num_samples // 160, 100.0)
        overlap += (y.sum(1) == 2).mean()
        for spk in set(s for *_, s in segs):  # nobody overlaps themselves
            mine = sorted((a, b) for a, b, s in segs if s == spk)
            assert all(b1 <= a2 for (_, b1), (a2, _) in zip(mine, mine[1:]))
    assert overlap > 0
    assert (demo / "conversations" / "rttm" / "train.rttm").read_text().startswith("SPEAKER wav/train-conv0000 1 0.300")
    b = read_manifest(demo / "music" / "beats" / "train.tsv")
    for beats, bpm in zip(b.labels["beats"], b.labels["bpm"]):
        assert np.diff(B.parse_beats(beats)) == pytest.approx(60 / float(bpm), abs=2e-4)


def test_resolve_checks_labels_before_training(demo, tmp_path):
    import shutil

    from audiossl.eval.tasks import BenchError, get_task, resolve

    for task in ("ic", "sd", "beat"):
        assert set(resolve(get_task(task), demo).splits) == {"train", "dev", "test"}
    data = tmp_path / "d"
    shutil.copytree(demo, data)
    lbl = data / "intents" / "valid.lbl"
    lines = lbl.read_text().splitlines()
    lbl.write_text("\n".join(["activate|lights"] + lines[1:]) + "\n")
    with pytest.raises(BenchError, match=r"task ic: .*valid\.lbl:1 .*'activate\|lights' is not 'action\|object\|location'"):
        resolve(get_task("ic"), data)
    seg = data / "conversations" / "test.seg"
    lines = seg.read_text().splitlines()
    spk = lines[0].split()[0].split(":")[2]
    seg.write_text("\n".join([lines[0] + f" 99.0:99.5:{spk}"] + lines[1:]) + "\n")
    with pytest.raises(BenchError, match=r"test\.seg:1 .*ends at 99\.500 s but the audio lasts"):
        resolve(get_task("sd"), data)
    seg.write_text("\n".join([lines[0] + " 0.1:0.2:third"] + lines[1:]) + "\n")
    with pytest.raises(BenchError, match=r"test\.seg:1 .*3 speakers"):
        resolve(get_task("sd"), data)
    (data / "music" / "beats" / "train.beats").unlink()
    with pytest.raises(BenchError, match=r"task beat .*train\.beats"):
        resolve(get_task("beat"), data)


def test_per_item_statistics_recompute_the_corpus_metrics():
    """The bootstrap items of DER (seconds per conversation) and beat F (per clip) give back the
    corpus values; DER pools seconds over files (5 s missed of 20 + 0 of 10 → 16.7 %, not 12.5 %)."""
    ref1, ref2 = [(0.0, 10.0, "a"), (5.0, 15.0, "b")], [(0.0, 10.0, "a")]
    hyp1, hyp2 = [(0.0, 10.0, "x"), (10.0, 15.0, "y")], [(0.0, 10.0, "x")]
    c = D.der_components([ref1, ref2], [hyp1, hyp2])
    assert c["total"].tolist() == pytest.approx([20.0, 10.0]) and c["miss"].tolist() == pytest.approx([5.0, 0.0])
    err = (c["miss"] + c["fa"] + c["conf"]).sum() / c["total"].sum()
    assert 100 * err == pytest.approx(D.der([ref1, ref2], [hyp1, hyp2])["der"]) == pytest.approx(100 / 6)
    refs = [np.array([1.0, 2.0, 3.0, 4.0]), np.array([0.5, 1.0, 1.5])]
    ests = [np.array([1.0, 2.0, 3.0, 4.0]), np.array([0.5])]
    f = B.beat_f_per_clip(refs, ests)
    assert f.tolist() == pytest.approx([1.0, 0.5])  # clip 2: P = 1, R = 1/3 → F = 0.5
    assert B.beat_f_measure(refs, ests) == pytest.approx(75.0)
