"""Pretraining data: label alignment, crops, duration bucketing, resumable reader."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from audiossl.audio.io import save_audio
from audiossl.data.manifest import Manifest, Row, write_manifest
from audiossl.pretrain.data import (
    IGNORE_INDEX,
    BucketBatchSampler,
    Collater,
    PretrainDataReader,
    PretrainDataset,
    align_labels,
)
from audiossl.data.lengths import probe_lengths

SR = 16000
HOP = 320  # 50 Hz model frames


def num_frames(n: int) -> int:
    # wav2vec2-style conv stack: receptive field 400, stride 320
    return max(0, (n - 400) // HOP + 1)


def test_align_100hz_labels_to_50hz_frames():
    labels = np.arange(10)  # 100 Hz: label k covers [10k, 10k+10) ms
    out = align_labels(labels, 100.0, 50.0, 5)
    # model frame i (20 ms) takes labels[floor(i * 100 / 50)] = labels[2i]
    assert out.tolist() == [0, 2, 4, 6, 8]
    # with an offset of 3 model frames: labels[6], labels[8], then clipped to the last label
    assert align_labels(labels, 100.0, 50.0, 3, offset=3).tolist() == [6, 8, 9]


def test_align_same_rate_and_lower_rate():
    labels = np.array([5, 6, 7, 8])
    assert align_labels(labels, 50.0, 50.0, 4).tolist() == [5, 6, 7, 8]
    # 25 Hz labels: each covers two model frames
    assert align_labels(labels, 25.0, 50.0, 6).tolist() == [5, 5, 6, 6, 7, 7]
    # non-integer ratio (e.g. 75 Hz codec labels): floor(i * 1.5)
    assert align_labels(np.arange(8), 75.0, 50.0, 4).tolist() == [0, 1, 3, 4]


def test_bucketing_padding_efficiency_realistic_lengths():
    # LibriSpeech-like: 1-20 s utterances (gamma around 12 s), cropped to 15.6 s.
    rng = np.random.default_rng(0)
    secs = np.clip(rng.gamma(6.0, 2.0, size=5000), 1.0, 20.0)
    lengths = np.minimum((secs * SR).astype(np.int64), 250_000)
    sampler = BucketBatchSampler(lengths, 1_400_000, seed=3)
    eff = sampler.padding_efficiency(0)
    assert eff >= 0.95, eff
    batches = sampler.batches(0)
    # every row is used exactly once and no batch exceeds max_tokens including padding
    flat = sorted(i for b in batches for i in b)
    assert flat == list(range(len(lengths)))
    assert max(len(b) * lengths[b].max() for b in batches) <= 1_400_000
    # shuffling without bucketing would waste much more: the sampler is doing real work
    naive = [list(range(i, min(i + 50, len(lengths)))) for i in range(0, len(lengths), 50)]
    naive_eff = sum(lengths[b].sum() for b in naive) / sum(lengths[b].max() * len(b) for b in naive)
    assert naive_eff < 0.8 < eff


def test_bucketing_epochs_ranks_and_min_length():
    lengths = np.array([100, 5, 200, 150, 120, 90, 300, 80, 60, 70], dtype=np.int64)
    s = BucketBatchSampler(lengths, 400, seed=1, min_length=50)
    all0 = s.batches(0)
    assert 1 not in {i for b in all0 for i in b}  # shorter than min_length
    assert all0 == BucketBatchSampler(lengths, 400, seed=1, min_length=50).batches(0)  # deterministic
    assert s.batches(1) != all0  # a new order every epoch
    r0 = BucketBatchSampler(lengths, 400, seed=1, min_length=50, rank=0, world_size=2).batches(0)
    r1 = BucketBatchSampler(lengths, 400, seed=1, min_length=50, rank=1, world_size=2).batches(0)
    assert len(r0) == len(r1) and not ({i for b in r0 for i in b} & {i for b in r1 for i in b})
    with pytest.raises(ValueError, match="max_tokens=250 is smaller than the longest"):
        BucketBatchSampler(lengths, 250)


def _corpus(tmp_path, lens, label_rate=100.0):
    rows, labels = [], []
    rng = np.random.default_rng(0)
    for i, n in enumerate(lens):
        save_audio(tmp_path / f"u{i}.wav", (0.1 * rng.standard_normal(n)).astype(np.float32), SR)
        rows.append(Row(f"u{i}.wav", n))
        labels.append(np.arange(int(num_frames(n) * label_rate / 50)) % 7)
    m = Manifest(tmp_path, rows)
    write_manifest(m, tmp_path / "train.tsv")
    return m, labels


def test_dataset_crops_on_frame_grid_with_matching_labels(tmp_path):
    m, labels = _corpus(tmp_path, [16000, 4000])
    lengths, problems = probe_lengths(m, SR, progress=False)
    assert lengths.tolist() == [16000, 4000] and not problems
    ds = PretrainDataset(m, labels, lengths, sample_rate=SR, label_rate=100.0, frame_rate=50.0, num_frames=num_frames, max_sample_size=6400, seed=5)
    for epoch in range(4):
        wav, tgt = ds[(0, epoch)]
        start = ds.crop_start(0, epoch, 16000)
        assert start % HOP == 0 and len(wav) == 6400
        expected = align_labels(labels[0], 100.0, 50.0, num_frames(6400), start // HOP)
        assert tgt.tolist() == expected.tolist()
    # same key → same crop (independent of worker); short rows are not cropped
    assert torch.equal(ds[(0, 2)][0], ds[(0, 2)][0])
    assert len(ds[(1, 0)][0]) == 4000


def test_collater_pads_and_reports_efficiency():
    c = Collater(num_frames, SR)
    items = [(torch.ones(4000), torch.arange(num_frames(4000))), None, (torch.ones(3200), torch.arange(num_frames(3200)))]
    b = c(items)
    assert b.wavs.shape == (2, 4000) and b.lengths.tolist() == [4000, 3200]
    assert b.targets.shape == (2, num_frames(4000)) and (b.targets[1, num_frames(3200):] == IGNORE_INDEX).all()
    assert b.num_skipped == 1 and b.padding_efficiency == pytest.approx(7200 / 8000)


def test_reader_resumes_at_exact_batch(tmp_path):
    m, labels = _corpus(tmp_path, [3000, 3200, 4000, 4200, 5000, 5200, 6000, 6100])
    lengths, _ = probe_lengths(m, SR, progress=False)

    def reader():
        ds = PretrainDataset(m, labels, lengths, sample_rate=SR, label_rate=100.0, frame_rate=50.0, num_frames=num_frames, max_sample_size=4800, seed=2)
        return PretrainDataReader(ds, BucketBatchSampler(ds.crop_lengths(), 10000, seed=2))

    def epoch_of(r):
        out = []
        while True:
            try:
                out.append(next(r)[0])
            except StopIteration:
                r.reset()
                return out

    a = reader()
    first = epoch_of(a)
    second = epoch_of(a)
    assert len(first) >= 3
    b = reader()
    next(b)
    state = b.state_dict()
    c = reader()
    c.load_state_dict(state)
    rest = epoch_of(c)
    assert len(rest) == len(first) - 1
    for x, y in zip(rest, first[1:]):
        assert torch.equal(x.wavs, y.wavs) and torch.equal(x.targets, y.targets)
    # next epoch: new batch order / crops, same as an uninterrupted reader
    for x, y in zip(epoch_of(c), second):
        assert torch.equal(x.wavs, y.wavs)
    # worker processes deliver the same batches (crops are keyed by (seed, epoch, index))
    w = reader()
    w.num_workers = 2
    for x, y in zip(epoch_of(w), first):
        assert torch.equal(x.wavs, y.wavs) and torch.equal(x.targets, y.targets)


def test_bad_audio_is_reported_and_skipped(tmp_path):
    m, labels = _corpus(tmp_path, [4000, 4000])
    (tmp_path / "u1.wav").write_bytes(b"not a wav file")
    lengths, problems = probe_lengths(m, SR, progress=False)
    assert lengths[1] == -1 and len(problems) == 1 and problems[0].path.endswith("u1.wav")
    assert problems[0].reason == "unreadable"
