"""Padding-free batches (issue 19): ``data.batching: crop_to_shortest`` crops every item of a batch
to its shortest on the frame grid with labels cut alike, and a training step on such a batch calls
attention with no mask at all: no float mask, no block mask, no ``[B, H, T, T]`` tensor in model code."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode, _disable_current_modes

from audiossl.audio.io import load_audio, save_audio
from audiossl.data.manifest import Manifest, Row
from audiossl.data.lengths import probe_lengths
from audiossl.pretrain.data import BucketBatchSampler, Collater, PretrainDataReader, PretrainDataset, align_labels
from audiossl.pretrain.unit import step_lengths

SR, HOP = 16000, 320


def num_frames(n: int) -> int:
    return max(0, (n - 400) // HOP + 1)


def _corpus(tmp_path, lens):
    rows, labels = [], []
    rng = np.random.default_rng(0)
    for i, n in enumerate(lens):
        save_audio(tmp_path / f"u{i}.wav", (0.1 * rng.standard_normal(n)).astype(np.float32), SR)
        rows.append(Row(f"u{i}.wav", n))
        labels.append(1000 * i + np.arange(2 * num_frames(n)))  # 100 Hz, every label distinct
    return Manifest(tmp_path, rows), labels


def test_crop_to_shortest_keeps_labels_aligned(tmp_path):
    lens = [16000, 9000, 12000, 30000, 8000, 20000]
    m, labels = _corpus(tmp_path, lens)
    lengths, _ = probe_lengths(m, SR, progress=False)
    ds = PretrainDataset(m, labels, lengths, sample_rate=SR, label_rate=100.0, frame_rate=50.0, num_frames=num_frames,
                         max_sample_size=24000, seed=7)
    sampler = BucketBatchSampler(ds.crop_lengths(), 80000, seed=7, crop_to_shortest=True)
    reader = PretrainDataReader(ds, sampler)
    collate = Collater(num_frames, SR)
    for epoch in range(2):
        for keys in sampler.batches(epoch):
            shortest = int(ds.crop_lengths()[keys].min())
            batch = collate([ds[(i, epoch, shortest)] for i in keys])
            assert batch.unpadded and batch.padding_efficiency == 1.0 and batch.wavs.shape[1] == shortest
            assert step_lengths(batch) is None
            for row, i in enumerate(keys):
                full, _ = load_audio(tmp_path / f"u{i}.wav", SR)
                start = ds.crop_start(i, epoch, lens[i], shortest)
                assert start % HOP == 0 and start + shortest <= lens[i]
                assert torch.allclose(batch.wavs[row], full[start : start + shortest])
                want = align_labels(labels[i], 100.0, 50.0, num_frames(shortest), start // HOP)
                assert batch.targets[row].tolist() == want.tolist()
                # label of model frame j is the label at 10 ms step 2 (start/320 + j): same audio
                assert batch.targets[row, 0] == 1000 * i + 2 * (start // HOP)
    steps = list(reader)
    assert all(b.unpadded for step in steps for b in step)


def test_padding_efficiency_both_modes():
    rng = np.random.default_rng(0)
    secs = np.clip(rng.gamma(6.0, 2.0, size=5000), 1.0, 20.0)  # LibriSpeech-like
    lengths = np.minimum((secs * SR).astype(np.int64), 250_000)
    bucket = BucketBatchSampler(lengths, 1_400_000, seed=3)
    crop = BucketBatchSampler(lengths, 1_400_000, seed=3, crop_to_shortest=True)
    assert bucket.batches(0) == crop.batches(0)
    assert crop.padding_efficiency(0) == 1.0 and bucket.kept_fraction(0) == 1.0
    assert 0.95 < bucket.padding_efficiency(0) < 1.0 and 0.95 < crop.kept_fraction(0) < 1.0


# --- every attention call of one training step, per family ------------------------------------------


class _Recorder(TorchDispatchMode):
    """Output shapes of every op run in model code (not inside an attention kernel call)."""

    def __init__(self):
        super().__init__()
        self.shapes, self.inside = [], 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if not self.inside:
            for t in out if isinstance(out, (tuple, list)) else (out,):
                if isinstance(t, torch.Tensor):
                    self.shapes.append(tuple(t.shape))
        return out


def _intercept(monkeypatch, rec):
    from audiossl.models import rel_pos

    calls = []
    sdpa = torch.nn.functional.scaled_dot_product_attention

    def sdpa_spy(q, k, v, attn_mask=None, *args, **kwargs):
        calls.append(("sdpa", tuple(q.shape), attn_mask))
        rec.inside += 1
        try:
            return sdpa(q, k, v, attn_mask, *args, **kwargs)
        finally:
            rec.inside -= 1

    def flex_fn(*a, **k):
        from torch.nn.attention.flex_attention import flex_attention

        def flex_spy(q, k, v, score_mod=None, block_mask=None, **kw):
            calls.append(("flex", tuple(q.shape), block_mask))
            rec.inside += 1
            try:
                with _disable_current_modes():  # the recorder sees model code, not the kernel's insides
                    return flex_attention(q, k, v, score_mod=score_mod, block_mask=block_mask, **kw)
            finally:
                rec.inside -= 1

        return flex_spy

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", sdpa_spy)
    monkeypatch.setattr(rel_pos, "flex_attention_fn", flex_fn)
    return calls


def _family(name):
    if name == "hubert":
        from audiossl.models.hubert.model import build_hubert, hubert_tiny

        return build_hubert(hubert_tiny(attention_dropout=0.0)), 16000, lambda t: torch.randint(0, 100, (3, t))
    if name == "mert":
        from audiossl.models.mert.model import build_mert, mert_tiny

        model = build_mert(mert_tiny(attention_relax=32.0, layer_norm_first=True, attention_dropout=0.0))
        return model, 24000, lambda t: torch.randint(0, 1024, (3, t, 8))
    if name == "wavlm":
        from audiossl.models.wavlm.model import build_wavlm, wavlm_tiny

        model = build_wavlm(wavlm_tiny(attention_impl="flex", attention_dropout=0.0, mix_prob=1.0))
        return model, 16000, lambda t: torch.randint(0, 100, (3, t))
    if name == "data2vec2":  # audio alone: the Collater gets empty targets, as the trainer gives it
        from audiossl.models.data2vec2 import build_data2vec2, data2vec2_tiny

        model = build_data2vec2(data2vec2_tiny(attention_impl="flex", attention_dropout=0.0))
        return model, 16000, lambda t: torch.zeros(3, 0, dtype=torch.long)
    if name == "beats_tokenizer":  # the teacher runs inside the step: an in-memory tiny HuBERT
        from audiossl.models.hubert.model import HubertModel, hubert_tiny
        from audiossl.tokenizers.beats.model import BeatsTokenizer, beats_tokenizer_tiny
        from audiossl.upstream.encoder import EncoderUpstream

        model = BeatsTokenizer(beats_tokenizer_tiny(teacher="in-memory", teacher_dim=128, attention_dropout=0.0))
        model._teacher.append(EncoderUpstream(HubertModel(hubert_tiny(attention_dropout=0.0))))
        return model, 16000, lambda t: torch.zeros(3, 0, dtype=torch.long)
    from audiossl.models.beats.model import beats_tiny, build_beats

    return build_beats(beats_tiny(attention_impl="flex")), 16000, lambda t: torch.randint(0, 1024, (3, t, 8))


@pytest.mark.parametrize("family", ["hubert", "mert", "beats", "wavlm", "data2vec2", "beats_tokenizer"])
def test_padding_free_step_calls_attention_without_mask(monkeypatch, family):
    import warnings

    warnings.filterwarnings("ignore", message=".*flex_attention.*")
    torch.manual_seed(0)
    model, sr, make_targets = _family(family)
    model.train()
    n = int(1.5 * sr)  # T differs from head_dim (64), so a [B, H, T, d] q is not mistaken for [B, H, T, T]
    wavs = [torch.randn(n) for _ in range(3)]
    t = model.encoder.num_frames(n)
    batch = Collater(model.encoder.num_frames, sr)(list(zip(wavs, make_targets(t))))
    assert batch.unpadded and step_lengths(batch) is None
    rec = _Recorder()
    calls = _intercept(monkeypatch, rec)
    with rec:
        seeded = {} if family == "beats_tokenizer" else {"generator": torch.Generator().manual_seed(0)}
        out = model(batch.wavs, step_lengths(batch), batch.targets, **seeded)
    out.loss.backward()
    assert calls, "no attention call seen"
    kinds = {c[0] for c in calls}
    assert kinds == ({"flex"} if family in ("beats", "wavlm", "data2vec2") else {"sdpa"})
    for kind, qshape, mask in calls:
        assert mask is None, f"{kind} got a mask in a padding-free step"
    seq = {c[1][-2] for c in calls}
    square = [s for s in rec.shapes if len(s) == 4 and s[-1] == s[-2] and s[-1] in seq]
    assert not square, f"[B, H, T, T]-shaped tensors in model code: {square[:5]}"
    assert torch.isfinite(out.loss)
