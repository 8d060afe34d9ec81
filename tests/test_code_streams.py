"""Code streams vs the student: frame rate, codebooks, classes and per-utterance length are refused
with a message naming the file, the row and both numbers (MERT#8)."""

from __future__ import annotations

import numpy as np
import pytest

from audiossl.data.frame_labels import LabelInfo, write_frame_labels
from audiossl.tokenizers.code_streams import (
    CodeStreamError, StudentSpec, check_code_stream, expected_frames, fit_length,
)

SR = 24000


def _write(path, lengths, rate=75.0, classes=1024, books=8, extra=0):
    rng = np.random.default_rng(0)
    rows = [rng.integers(0, classes, (expected_frames(n, SR, rate) + extra, books)) for n in lengths]
    write_frame_labels(path, rows, LabelInfo(rate, classes, {"kind": "test"}, books))
    return path


def test_matching_codes_pass(tmp_path):
    lengths = np.array([24000, 36001, 50000])
    check_code_stream(_write(tmp_path / "train.rvq", lengths), StudentSpec(), lengths, ["a", "b", "c"])


def test_other_frame_rate_is_refused_naming_both_rates(tmp_path):
    lengths = np.array([24000])
    path = _write(tmp_path / "train.rvq", lengths, rate=50.0)
    with pytest.raises(CodeStreamError) as e:
        check_code_stream(path, StudentSpec(frame_rate=75.0), lengths)
    msg = str(e.value)
    assert "train.rvq.json" in msg and "50 Hz" in msg and "75 Hz" in msg


def test_codebook_and_class_mismatch_are_refused(tmp_path):
    lengths = np.array([24000])
    with pytest.raises(CodeStreamError, match=r"4 codebooks per frame but the student has 8"):
        check_code_stream(_write(tmp_path / "a.rvq", lengths, books=4), StudentSpec(), lengths)
    with pytest.raises(CodeStreamError, match=r"num_classes=2048 but the student has 1024.*MERT#8"):
        check_code_stream(_write(tmp_path / "b.rvq", lengths, classes=2048), StudentSpec(), lengths)


def test_length_mismatch_names_file_row_and_both_counts(tmp_path):
    lengths = np.array([24000, 48000])
    path = _write(tmp_path / "train.rvq", lengths, extra=3)
    with pytest.raises(CodeStreamError) as e:
        check_code_stream(path, StudentSpec(), lengths, ["u1", "u2"])
    msg = str(e.value)
    assert f"{path}:2: utterance 'u2' has 153 code frames but the student makes 150 ± 1" in msg
    assert "2 of 2 utterances" in msg


def test_one_frame_off_is_accepted_and_unreadable_rows_are_skipped(tmp_path):
    lengths = np.array([24000, -1])
    path = _write(tmp_path / "train.rvq", np.array([24000, 24000]), extra=1)
    check_code_stream(path, StudentSpec(), lengths)
    # a student with its own frame count (HuBERT-style conv: floor((n - 400) / 320) + 1 = 74 here)
    conv = StudentSpec(num_frames=lambda n: (n - 400) // 320 + 1)
    check_code_stream(_write(tmp_path / "ok.rvq", np.array([24000, 24000])), conv, lengths)
    with pytest.raises(CodeStreamError, match="76 code frames but the student makes 74"):
        check_code_stream(path, conv, lengths)


def test_row_count_mismatch_is_refused(tmp_path):
    path = _write(tmp_path / "train.rvq", np.array([24000]))
    with pytest.raises(CodeStreamError, match="1 rows of codes but 2 utterances"):
        check_code_stream(path, StudentSpec(), np.array([24000, 24000]))


def test_expected_frames_is_within_one_of_ceil_and_conv_counts():
    for n in range(400, 20000, 37):
        e = expected_frames(n, SR, 75.0)
        assert abs(e - -(-n // 320)) <= 1 and abs(e - ((n - 400) // 320 + 1)) <= 1


def test_fit_length_trims_and_repeats():
    c = np.arange(10).reshape(5, 2)
    assert fit_length(c, 4).shape == (4, 2)
    assert np.array_equal(fit_length(c, 6)[-1], c[-1])
    with pytest.raises(ValueError):
        fit_length(c, 9)
