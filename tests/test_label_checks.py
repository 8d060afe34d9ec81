"""Refusals before step 1: each names the file, the utterance and both numbers."""

from __future__ import annotations

import numpy as np
import pytest

from audiossl.data.frame_labels import LabelError, LabelInfo
from audiossl.data.manifest import Manifest, Row
from audiossl.data.label_checks import LabelCheckContext, label_tolerance, run_label_checks


def num_frames(n: int) -> int:
    return max(0, (n - 400) // 320 + 1)


def ctx(tmp_path, *, counts=None, rate=100.0, classes=100, model_classes=100, expected_rate=None, lengths=(16000, 32000, 8000), maxlab=5):
    tsv = tmp_path / "train.tsv"
    m = Manifest(tmp_path, [Row(f"spk/utt{i}.wav", n) for i, n in enumerate(lengths)], source=tsv)
    if counts is None:
        counts = [int(num_frames(n) * rate / 50) for n in lengths]
    labels = [np.full(c, maxlab, dtype=np.int64) for c in counts]
    return LabelCheckContext(
        tmp_path / "train.km", m, labels, LabelInfo(rate, classes), np.array(lengths), num_frames, 50.0, model_classes, expected_rate
    )


def test_good_labels_pass_at_100hz_and_50hz(tmp_path):
    run_label_checks(ctx(tmp_path))
    run_label_checks(ctx(tmp_path, rate=50.0, expected_rate=50.0))
    # within tolerance: 100 Hz labels may be off by one model frame (2 labels)
    assert label_tolerance(100.0, 50.0) == 2.0 and label_tolerance(50.0, 50.0) == 1.0
    run_label_checks(ctx(tmp_path, counts=[98 + 2, 198 - 2, 48 + 1]))


def test_count_mismatch_names_file_row_id_and_both_numbers(tmp_path):
    # 16000 samples → 49 frames → 98 labels at 100 Hz; 50 Hz labels for row 2 (99 instead of 198)
    c = ctx(tmp_path, counts=[98, 99, 48])
    with pytest.raises(LabelError) as e:
        run_label_checks(c)
    msg = str(e.value)
    assert "1 of 3 utterances" in msg
    assert "train.km:2" in msg and "'spk/utt1'" in msg and "manifest row 3" in msg
    assert "has 99 labels, expected 198 ± 2" in msg and "32000 samples → 99 model frames at 50 Hz" in msg


def test_count_just_outside_tolerance_is_refused(tmp_path):
    with pytest.raises(LabelError, match="has 95 labels, expected 98 ± 2"):
        run_label_checks(ctx(tmp_path, counts=[95, 198, 48]))


def test_label_rate_differs_from_config(tmp_path):
    with pytest.raises(LabelError, match=r"train\.km\.json: labels are at 100 Hz but the run config expects label_rate=50 Hz"):
        run_label_checks(ctx(tmp_path, expected_rate=50.0))


def test_row_count_mismatch(tmp_path):
    c = ctx(tmp_path)
    c.labels = c.labels[:2]
    with pytest.raises(LabelError, match=r"train\.km: 2 label rows but manifest .*train\.tsv has 3 rows"):
        run_label_checks(c)


def test_num_classes_zero_or_empty_dictionary(tmp_path):
    c = ctx(tmp_path)
    c.info = LabelInfo(100.0, 0)
    with pytest.raises(LabelError, match="num_classes is 0; the label dictionary is empty"):
        run_label_checks(c)
    (tmp_path / "dict.km.txt").write_text("")
    with pytest.raises(LabelError, match=r"dict\.km\.txt: dictionary is empty but .*declares 100 classes"):
        run_label_checks(ctx(tmp_path))
    (tmp_path / "dict.km.txt").write_text("".join(f"{i} 1\n" for i in range(50)))
    with pytest.raises(LabelError, match=r"dict\.km\.txt: 50 entries but .*num_classes=100"):
        run_label_checks(ctx(tmp_path))
    (tmp_path / "dict.km.txt").write_text("".join(f"{i} 1\n" for i in range(100)))
    run_label_checks(ctx(tmp_path))


def test_more_label_classes_than_model(tmp_path):
    with pytest.raises(LabelError, match=r"labels have num_classes=500 but the model has num_classes=100; set model.num_classes=500"):
        run_label_checks(ctx(tmp_path, classes=500, model_classes=100))
    # declared classes fit but a label value does not (a file edited by hand; row named)
    with pytest.raises(LabelError, match=r"train\.km:1: utterance 'spk/utt0' has label 80 but the model has num_classes=64"):
        run_label_checks(ctx(tmp_path, classes=64, model_classes=64, maxlab=80))


def test_unreadable_rows_are_not_counted(tmp_path):
    c = ctx(tmp_path, counts=[98, 3, 48])
    c.lengths = np.array([16000, -1, 8000])
    run_label_checks(c)


def _sidecar_labels(tmp_path, rate=100.0, classes=100):
    from audiossl.data.frame_labels import write_frame_labels

    return write_frame_labels(tmp_path / "train.km", [np.zeros(98, dtype=np.int64)], LabelInfo(rate, classes))


def test_settle_from_labels_fills_rate_and_classes_the_config_leaves_open(tmp_path):
    from audiossl.pretrain.config import load_config
    from audiossl.data.label_checks import settle_from_labels

    path = _sidecar_labels(tmp_path)
    cfg = load_config(None, ["model.size=base"])
    settle_from_labels(cfg, path)
    assert cfg.data.label_rate == 100.0 and cfg.model.overrides["num_classes"] == 100
    # Pinned values stay (the checks then judge them); MERT-like families keep label_rate unset.
    cfg = load_config(None, ["data.label_rate=50", "model.num_classes=500"])
    settle_from_labels(cfg, path)
    assert cfg.data.label_rate == 50 and cfg.model.overrides["num_classes"] == 500
    cfg = load_config(None)
    settle_from_labels(cfg, path, labels_at_frame_rate=True)
    assert cfg.data.label_rate is None and cfg.model.overrides["num_classes"] == 100
    settle_from_labels(cfg, None)  # models trained on audio alone: nothing to settle
    with pytest.raises(LabelError, match=r"no train\.km\.json beside it"):
        (tmp_path / "train.km.json").unlink()
        settle_from_labels(load_config(None), path)
