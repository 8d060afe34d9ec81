"""A full disk in the middle of a write (fault injection: ``fsync`` / ``torch.save`` raise ENOSPC)
leaves the previous good file and a resumable run (issue #9, item 3)."""

from __future__ import annotations

import errno
import os

import numpy as np
import pytest
import torch

from tests.test_pretrain_hubert import _losses, _train, corpus  # noqa: F401  (corpus is a fixture)


def _enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_checkpoint_and_labels_survive_a_full_disk(tmp_path, monkeypatch):
    from audiossl.data.frame_labels import LabelInfo, read_frame_labels, write_frame_labels
    from audiossl.models.checkpoint import load_model, save_checkpoint
    from audiossl.models.hubert.model import build_hubert, hubert_tiny

    torch.manual_seed(0)
    good = build_hubert(hubert_tiny()).eval()
    ckpt = save_checkpoint(good, tmp_path / "ckpt", extra={"step": 1})
    labels = write_frame_labels(tmp_path / "train.km", [np.array([1, 2, 3])], LabelInfo(50.0, 4))
    before = sorted(p.name for p in tmp_path.rglob("*"))

    torch.manual_seed(1)
    newer = build_hubert(hubert_tiny()).eval()
    monkeypatch.setattr(os, "fsync", _enospc)
    with pytest.raises(OSError, match="No space left"):
        save_checkpoint(newer, ckpt, extra={"step": 2})
    with pytest.raises(OSError, match="No space left"):
        write_frame_labels(labels, [np.array([0, 0])], LabelInfo(50.0, 4))
    monkeypatch.undo()

    assert sorted(p.name for p in tmp_path.rglob("*")) == before  # no temporary files left behind
    loaded = load_model(ckpt, pretrain=True)
    for k, v in good.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k
    rows, info = read_frame_labels(labels)
    assert [r.tolist() for r in rows] == [[1, 2, 3]] and info.num_classes == 4


def test_full_disk_during_a_training_checkpoint_resumes_from_the_previous_one(corpus, tmp_path, monkeypatch):  # noqa: F811
    reference = tmp_path / "reference"
    _train(corpus, reference)
    run = tmp_path / "run"
    real_save = torch.save

    def save(obj, f, *args, **kwargs):
        if "step_4" in str(f):
            _enospc()
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save)
    with pytest.raises(Exception) as e:
        _train(corpus, run)
    assert "No space left" in repr(e.value) or "No space left" in repr(e.value.__cause__)
    monkeypatch.undo()
    assert (run / "checkpoints" / "step_2").is_dir()
    resumed = _train(corpus, run)
    assert resumed.step_nr == 4 and resumed.checkpoint_dir is not None
    want, got = _losses(reference), _losses(run)
    for step in want:
        assert got[step] == pytest.approx(want[step], rel=1e-6), step
