"""Featurizer, heads, batching by frames, and the CTC greedy decoding of the runner."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from audiossl.eval.featurizer import Featurizer
from audiossl.eval.heads import AMSoftmax, HeadConfig, build_head, masked_mean


def test_featurizer_starts_as_layer_average_and_learns():
    f = Featurizer(4)
    x = torch.randn(2, 7, 4, 16)  # [batch, frame, layer, dim]
    assert torch.allclose(f(x), x.mean(2), atol=1e-6)
    assert f.layer_weights() == pytest.approx([0.25] * 4)
    f(x)[..., 0].sum().backward()
    assert f.weights.grad is not None and f.weights.grad.abs().sum() > 0
    pooled = torch.randn(3, 4, 16)  # [batch, layer, dim]
    assert f(pooled).shape == (3, 16)


def test_featurizer_sums_in_the_stack_dtype_under_autocast():
    """bf16 autocast would copy the whole [batch, frame, layer, dim] stack to bf16 first; the sum runs in
    fp32 and only its [batch, frame, dim] result is rounded to bf16 (the dtype autocast gives the head);
    gradients still reach the weights."""
    f = Featurizer(3)
    with torch.no_grad():
        f.weights.copy_(torch.tensor([0.3, -1.0, 0.5]))
    x = torch.randn(2, 7, 3, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = f(x)
    ref = f(x)
    assert ref.dtype == torch.float32 and y.dtype == torch.bfloat16
    assert torch.equal(y, ref.to(torch.bfloat16))  # one rounding, of the fp32 sum
    y.sum().backward()
    assert f.weights.grad is not None and f.weights.grad.abs().sum() > 0


def test_featurizer_fixed_layer():
    f = Featurizer(13, layer=9)
    x = torch.randn(2, 5, 1, 8)  # the cache holds only layer 9
    assert torch.equal(f(x), x[:, :, 0]) and f.layer_weights()[9] == 1.0 and sum(f.layer_weights()) == 1.0
    assert list(f.parameters()) == []
    with pytest.raises(ValueError, match="--layer 13 is out of range"):
        Featurizer(13, layer=13)
    with pytest.raises(ValueError, match="expected 13 stacked layers"):
        Featurizer(13)(torch.randn(2, 5, 3, 8))


@pytest.mark.parametrize("kind", ["linear", "bilstm", "pool_linear", "pool_mlp"])
def test_heads_shapes_and_padding(kind):
    torch.manual_seed(0)
    head = build_head(HeadConfig(kind, hidden=16), 8, 5).eval()
    a, b = torch.randn(6, 8), torch.randn(9, 8)
    x = torch.nn.utils.rnn.pad_sequence([a, b], batch_first=True)  # [2, 9, 8]
    lens = torch.tensor([6, 9])
    y = head(x, lens)
    if kind.startswith("pool"):
        assert y.shape == (2, 5)
        # padding does not change the first (shorter) item's output
        assert torch.allclose(y[0], head(a[None], torch.tensor([6]))[0], atol=1e-5)
    else:
        assert y.shape == (2, 9, 5)
        assert torch.allclose(y[0, :6], head(a[None], torch.tensor([6]))[0], atol=1e-5)


def test_bilstm_head_equals_packed_bidirectional_lstm():
    """Two unidirectional LSTMs with per-item reversal = ``nn.LSTM(bidirectional)`` on a packed batch,
    with garbage in the padding, outputs and gradients (2 layers, so layer 2 reads both directions)."""
    torch.manual_seed(0)
    cfg = HeadConfig("bilstm", hidden=12, num_layers=2, dropout=0.0)
    head = build_head(cfg, 8, 5)
    ref = torch.nn.LSTM(8, 12, num_layers=2, bidirectional=True, batch_first=True)
    proj = torch.nn.Linear(24, 5)
    with torch.no_grad():
        for i in range(2):
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                getattr(head.forward_lstms[i], f"{name}_l0").copy_(getattr(ref, f"{name}_l{i}"))
                getattr(head.backward_lstms[i], f"{name}_l0").copy_(getattr(ref, f"{name}_l{i}_reverse"))
        proj.load_state_dict(head.proj.state_dict())
    lens = torch.tensor([9, 4, 7])
    x = torch.randn(3, 9, 8)
    for b, n in enumerate(lens.tolist()):
        x[b, n:] = 1e3  # padding must never reach a valid frame
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    y = head(x1, lens)
    packed = torch.nn.utils.rnn.pack_padded_sequence(x2, lens, batch_first=True, enforce_sorted=False)
    r, _ = torch.nn.utils.rnn.pad_packed_sequence(ref(packed)[0], batch_first=True, total_length=9)
    r = proj(r)
    valid = (torch.arange(9)[None, :] < lens[:, None])[..., None]
    assert torch.allclose(y * valid, r * valid, atol=1e-5)
    (y * valid).square().sum().backward()
    (r * valid).square().sum().backward()
    assert torch.allclose(x1.grad, x2.grad, atol=1e-5)
    assert torch.allclose(head.backward_lstms[1].weight_hh_l0.grad, ref.weight_hh_l1_reverse.grad, atol=1e-5)


def test_xvector_embeddings_and_amsoftmax():
    torch.manual_seed(0)
    head = build_head(HeadConfig("xvector", hidden=16, embed_dim=12), 8, 4)
    x, lens = torch.randn(3, 20, 8), torch.tensor([20, 15, 11])
    x[1, 15:] = 1e3  # garbage in the padding must not matter
    emb = head(x, lens)
    assert emb.shape == (3, 12)
    loss = head.amsoftmax(emb, torch.tensor([0, 1, 3]))
    loss.backward()
    assert torch.isfinite(loss) and head.xvector.embed.weight.grad is not None
    head.eval()
    assert torch.allclose(head(x[1:2, :15], lens[1:2]), head(x, lens)[1:2], atol=1e-4)  # masked stats pooling


def test_amsoftmax_margin_raises_loss():
    am = AMSoftmax(4, 3, margin=0.2, scale=30.0)
    emb, y = torch.randn(5, 4), torch.tensor([0, 1, 2, 0, 1])
    plain = torch.nn.functional.cross_entropy(30.0 * am.logits(emb), y)
    assert am(emb, y) > plain


def test_masked_mean():
    x = torch.tensor([[[1.0], [3.0], [100.0]]])
    assert masked_mean(x, torch.tensor([2])).item() == 2.0


class _Store:
    def __init__(self, lens):
        self.lens = lens
        self.meta = {"extra": {"hidden_dim": 1}}

    def __getitem__(self, key):
        return np.zeros((self.lens[key], 1), np.float16)


def test_batches_by_total_frames():
    from audiossl.eval.batching import make_batches
    from audiossl.eval.splits import SplitData

    lens = [10, 300, 20, 250, 15, 30, 280, 5]
    ids = [str(i) for i in range(len(lens))]
    split = SplitData(_Store(dict(zip(ids, lens))), ids, [""] * len(ids))
    for shuffle in (False, True):
        batches = make_batches(split, 600, shuffle, random.Random(0))
        assert sorted(i for b in batches for i in b) == list(range(len(lens)))
        assert all(len(b) * max(lens[i] for i in b) <= 600 or len(b) == 1 for b in batches)
    assert len(make_batches(split, 600, False, random.Random(0))) < len(lens)  # short clips share batches
    from audiossl.upstream.engine import duration_batches  # the bench cache's batching

    b = [[int(uid) for uid, _, _ in x] for x in duration_batches([(str(i), "", n) for i, n in enumerate(lens)], 600, single=False)]
    assert sorted(i for x in b for i in x) == list(range(len(lens)))
    assert all(len(x) * max(lens[i] for i in x) <= 600 for x in b)


def test_batch_budget_is_the_same_seconds_at_every_frame_rate():
    from dataclasses import replace

    from audiossl.eval.batching import frame_budget
    from audiossl.eval.splits import SplitData
    from audiossl.eval.tasks import get_task

    def split(rate):
        store = _Store({"a": 10})
        store.meta = {"frame_rate": rate}
        return SplitData(store, ["a"], [""])

    asr = replace(get_task("asr"), batch_frames=1000)
    assert frame_budget(asr, split(50.0)) == 1000
    assert frame_budget(asr, split(100.0)) == 2000  # FBANK: same 20 s of audio per batch
    assert frame_budget(asr, split(6.25)) == 125  # BEATs
    ks = get_task("ks")  # pooled: clips, whatever the rate
    assert frame_budget(ks, split(0.0)) == ks.batch_frames == frame_budget(ks, split(100.0))


def test_ctc_greedy_decoding():
    from audiossl.eval.runner import CTCObjective, RunConfig
    from audiossl.eval.splits import SplitData
    from audiossl.eval.tasks import get_task

    split = SplitData(_Store({"u": 4}), ["u"], ["a b c"])
    obj = CTCObjective(get_task("pr"), split, RunConfig())
    assert obj.vocab == ["a", "b", "c"] and obj.out_dim == 4
    # frames: a a <blank> a b b c | padding — greedy path collapses repeats, drops blanks
    path = torch.tensor([[1, 1, 0, 1, 2, 2, 3, 3, 3]])
    logits = torch.nn.functional.one_hot(path, 4).float()
    hyp = obj.predict(lambda x, lengths: x, logits, torch.tensor([7]), torch.tensor([7]))
    assert hyp == [["a", "a", "b", "c"]]
    assert obj.score(split, hyp) == {"per": pytest.approx(100 / 3)}


def test_ctc_tiles_the_frames_of_a_slow_upstream():
    """BEATs gives 6.25 frames/s, fewer than the tokens of an utterance: CTC sees each frame 8 times."""
    from audiossl.eval.runner import CTCObjective, RunConfig
    from audiossl.eval.splits import SplitData
    from audiossl.eval.tasks import ctc_tile, get_task

    pr = get_task("pr")
    assert [ctc_tile(pr, r) for r in (6.25, 25.0, 50.0, 75.0, 100.0)] == [8, 2, 1, 1, 1]
    assert ctc_tile(get_task("ks"), 6.25) == 1  # not a CTC task

    store = _Store({"u": 3, "v": 2})
    store.meta = {**store.meta, "frame_rate": 6.25}
    split = SplitData(store, ["u", "v"], ["a b c d e f g", "a b"])
    obj = CTCObjective(pr, split, RunConfig())
    assert obj.tile == 8
    x = torch.arange(6.0).reshape(2, 3, 1)  # [B, T, dim]; item v has 2 valid frames + 1 padding
    seen = {}

    def head(x, lengths):
        seen["x"], seen["lengths"] = x, lengths
        return torch.zeros(x.shape[0], x.shape[1], obj.out_dim, requires_grad=True)

    targets = obj.collate([obj.target(split, 0, 3), obj.target(split, 1, 2)])
    loss = obj.loss(head, x, torch.tensor([3, 2]), torch.tensor([3, 2]), targets)
    assert torch.isfinite(loss)  # 7 tokens from 3 frames: only possible after tiling (24 frames)
    assert seen["lengths"].tolist() == [24, 16]
    assert seen["x"][1, :16, 0].tolist() == [3.0] * 8 + [4.0] * 8  # valid frames first, each 8 times
    hyp = obj.predict(lambda x, lengths: torch.nn.functional.one_hot(torch.tensor([[1] * 8 + [0] * 8 + [2] * 8] * 2), obj.out_dim).float(),
                      x, torch.tensor([3, 2]), torch.tensor([3, 2]))
    assert hyp == [["a", "b"], ["a"]]  # greedy decoding reads the 24 / 16 tiled frames
