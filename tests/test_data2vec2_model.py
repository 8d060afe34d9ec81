"""data2vec 2.0 mechanics: block masking, copies, the student's kept frames, the EMA teacher (no gradient,
update maths, decay schedule), padding, the loss, and the analytic FLOP count."""

from __future__ import annotations

import math

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from audiossl.models.data2vec2 import build_data2vec2, data2vec2_base, data2vec2_tiny
from audiossl.models.data2vec2.ema import ema_decay_at
from audiossl.models.data2vec2.masking import compute_block_mask, masked_share, num_removed


def _runs(row: torch.Tensor) -> list[int]:
    """Lengths of the runs of True in a 1-D bool tensor."""
    runs, n = [], 0
    for v in row.tolist() + [False]:
        if v:
            n += 1
        elif n:
            runs.append(n)
            n = 0
    return runs


@pytest.mark.parametrize("inverse", [False, True])
def test_block_mask_share_blocks_and_equal_counts(inverse):
    g = torch.Generator().manual_seed(0)
    rows, t = 64, 500
    bm = compute_block_mask(torch.full((rows,), t), t, 0.5, 5, inverse=inverse, generator=g)
    share = masked_share(0.5, 5, inverse)
    assert share == pytest.approx(0.59 if inverse else 0.41, abs=0.01)
    m = num_removed(t, share)
    assert bm.masked.sum(1).tolist() == [m] * rows and torch.equal(bm.masked, bm.removed)
    assert bm.masked.float().mean().item() == pytest.approx(share, abs=0.002)
    # blocks, not scattered frames: i.i.d. masking at this share would give mean runs of 1 / (1 - share) < 2.5
    runs = [r for row in (bm.masked if not inverse else ~bm.masked) for r in _runs(row)]
    assert sum(runs) / len(runs) > 4.0
    assert bm.ids_keep.shape == (rows, t - m)
    # the kept frames in time order, then the removed ones, restore the sequence
    order = torch.cat([bm.ids_keep, bm.removed.nonzero()[:, 1].view(rows, m)], 1)
    assert torch.equal(order.gather(1, bm.ids_restore), torch.arange(t).expand(rows, t))
    assert (bm.ids_keep.diff(dim=1) > 0).all()


def test_padded_rows_mask_only_real_frames_and_remove_the_same_count():
    g = torch.Generator().manual_seed(1)
    lengths = torch.tensor([200, 150, 61, 200, 9])
    t = 200
    bm = compute_block_mask(lengths, t, 0.5, 5, generator=g)
    valid = torch.arange(t)[None] < lengths[:, None]
    share = masked_share(0.5, 5, False)
    m = num_removed(t, share)
    assert not (bm.masked & ~valid).any()
    assert bm.removed.sum(1).tolist() == [m] * 5 and (bm.masked <= bm.removed).all()
    assert bm.masked.sum(1).tolist() == [round(share * n) for n in lengths.tolist()]
    # what is removed beyond the masked frames is padding
    assert not (bm.removed & ~bm.masked & valid).any()


def _model(**kw):
    torch.manual_seed(0)
    return build_data2vec2(data2vec2_tiny(**kw))


def test_copies_get_different_masks_and_the_student_sees_only_kept_frames():
    model = _model(clone_batch=4).train()
    seen: dict[str, tuple] = {}

    def spy(name):
        def hook(module, args, output):
            seen[name] = tuple(args[0].shape)
        return hook

    model.encoder.context.layers[0].self_attn.register_forward_hook(spy("student"))
    model.teacher.layers[0].self_attn.register_forward_hook(spy("teacher"))
    wavs = torch.randn(2, 16000)
    out = model(wavs, None)
    t = model.encoder.num_frames(16000)
    k = t - num_removed(t, masked_share(0.5, 5, False))
    assert seen["teacher"] == (2, t, 128) and seen["student"] == (8, k, 128)
    assert out.predictions.shape == (8, t, 128) and out.targets.shape == (2, t, 128)
    masks = out.mask.masked.view(2, 4, t)
    for b in range(2):
        for i in range(4):
            for j in range(i):
                assert not torch.equal(masks[b, i], masks[b, j])


def test_teacher_gets_no_gradient_and_is_a_copy_of_the_student_at_start():
    model = _model()
    student = dict(model.encoder.context.named_parameters())
    teacher = dict(model.teacher.named_buffers())
    assert set(student) <= set(teacher) and not list(model.teacher.parameters())
    assert all(torch.equal(teacher[k], v) for k, v in student.items())
    assert not any(k.startswith("teacher.") for k, _ in model.named_parameters())
    assert any(k.startswith("teacher.layers.0.") for k in model.state_dict())
    model.train()
    assert not model.teacher.training
    out = model(torch.randn(2, 12000), torch.tensor([12000, 8000]))
    out.loss.backward()
    assert all(b.grad is None and not b.requires_grad for b in model.teacher.buffers())
    assert model.encoder.frontend.layers[0].conv.weight.grad is not None
    assert model.encoder.context.layers[-1].ffn.fc2.weight.grad is not None
    assert model.decoder.proj.weight.grad is not None
    assert torch.equal(dict(model.teacher.named_buffers())["layers.0.ffn.fc1.weight"], teacher["layers.0.ffn.fc1.weight"])


def test_ema_update_matches_a_hand_computed_step():
    model = _model()
    with torch.no_grad():
        for p in model.encoder.context.parameters():
            p.add_(torch.randn_like(p))
    before = {k: v.clone() for k, v in model.teacher.named_buffers()}
    student = {k: p.detach().clone() for k, p in model.encoder.context.named_parameters()}
    model.before_train_step(1)  # no update has happened yet: nothing to absorb
    assert all(torch.equal(v, before[k]) for k, v in model.teacher.named_buffers())
    model.before_train_step(3)  # absorbs update 2
    d = ema_decay_at(2, 0.999, 0.99999, 1000)
    assert model.num_updates.item() == 2 and model.ema_decay.item() == pytest.approx(d)
    after = dict(model.teacher.named_buffers())
    for k, s in student.items():
        want = (before[k].double() * d + s.double() * (1 - d)).float()
        torch.testing.assert_close(after[k], want, rtol=0, atol=1e-6, msg=k)
    assert torch.equal(after["alibi_slopes"], before["alibi_slopes"])  # a constant, not EMA'd
    snap = {k: v.clone() for k, v in after.items()}
    model.before_train_step(3)  # the same step again (e.g. an fp16-overflow rerun): no second move
    assert all(torch.equal(v, snap[k]) for k, v in model.teacher.named_buffers())


def test_decay_schedule_is_linear_from_start_to_end():
    base = data2vec2_base()
    assert (base.ema_decay, base.ema_end_decay, base.ema_anneal_end_step) == (0.999, 0.99999, 75000)
    at = lambda n: ema_decay_at(n, base.ema_decay, base.ema_end_decay, base.ema_anneal_end_step)  # noqa: E731
    assert at(0) == pytest.approx(0.999) and at(75000) == 0.99999 and at(10**6) == 0.99999
    assert at(37500) == pytest.approx((0.999 + 0.99999) / 2)
    assert at(15000) == pytest.approx(0.999 + 0.2 * (0.99999 - 0.999))
    assert ema_decay_at(5, 0.9, 0.9, 10) == 0.9


def test_targets_and_predictions_of_an_item_do_not_depend_on_the_padding():
    model = _model(clone_batch=1).eval()
    wavs = torch.randn(2, 16000)
    lengths = torch.tensor([16000, 9000])
    with torch.no_grad():
        x, frames, pad = model.encoder.local_features(wavs, lengths)
        y = model.make_targets(x, pad)
        x1, _, _ = model.encoder.local_features(wavs[1:, :9000], None)
        y1 = model.make_targets(x1, None)
    n = frames[1].item()
    torch.testing.assert_close(y[1, :n], y1[0], atol=1e-5, rtol=0)


def test_loss_is_the_scaled_l2_over_masked_frames():
    model = _model().eval()
    out = model(torch.randn(2, 12000), torch.tensor([12000, 7000]))
    sel = out.mask.masked
    y = out.targets.repeat_interleave(2, 0)
    want = ((out.predictions - y) ** 2).sum(-1)[sel].sum() / math.sqrt(128) / sel.sum()
    torch.testing.assert_close(out.loss, want, rtol=1e-6, atol=0)
    assert out.num_masked == sel.sum() and 0.3 < out.extra_losses["masked_frac"].item() < 0.5
    assert set(out.extra_losses) == {"target_var", "pred_var", "ema_decay", "masked_frac"}


@pytest.mark.parametrize("use_alibi", [True, False])
def test_flops_match_flop_counter_on_a_tiny_forward(use_alibi):
    from audiossl.models.data2vec2.flops import forward_flops

    cfg = data2vec2_tiny(use_alibi=use_alibi, clone_batch=3, pos_conv_kernel=4)
    model = build_data2vec2(cfg).eval()
    counter = FlopCounterMode(display=False)
    with sdpa_kernel(SDPBackend.MATH), counter, torch.no_grad():
        model(torch.randn(1, 24000), None)
    analytic = sum(forward_flops(cfg, 24000).values())
    measured = counter.get_total_flops()
    assert abs(analytic - measured) / measured < 0.01, (analytic, measured)


def test_base_flops_per_audio_second():
    from audiossl.models.data2vec2.flops import data2vec2_train_flops_per_second, forward_flops, train_flops

    cfg = data2vec2_base()
    per_s = data2vec2_train_flops_per_second(cfg)  # 10 s crops
    f = forward_flops(cfg, 160000)
    assert train_flops(cfg, 160000) == 3 * (f["frontend"] + f["student"] + f["decoder"]) + f["teacher"]
    assert 150e9 < per_s < 175e9  # 162.4 GFLOP per audio-second: ~3.6 × HuBERT Base (8 copies on 59% of the frames)
    assert data2vec2_train_flops_per_second(data2vec2_base(clone_batch=1)) < per_s / 3


def test_alibi_slopes_and_kept_frames_keep_their_true_distances():
    from audiossl.models.data2vec2.alibi import alibi_bias, alibi_slopes, attention_bias

    assert alibi_slopes(8) == [2.0 ** -(i + 1) for i in range(8)]
    assert alibi_slopes(12)[:8] == alibi_slopes(8)
    assert alibi_slopes(12)[8:] == pytest.approx([2 ** -0.5, 2 ** -1.5, 2 ** -2.5, 2 ** -3.5])
    slopes, scale = torch.tensor(alibi_slopes(4)), torch.tensor([1.0, 0.5, -1.0, 2.0])
    full = alibi_bias(torch.arange(10)[None], slopes, scale)  # [1, H, 10, 10]
    assert full[0, 0, 2, 7] == -0.25 * 5 and full[0, 3, 7, 2] == -2.0 * slopes[3] * 5
    assert (full[0, 2] == 0).all()  # a negative scale is clamped to 0
    keep = torch.tensor([[0, 3, 4, 9]])
    # the bias of the kept frames is the full bias gathered at their positions (fairseq masked_alibi)
    assert torch.equal(alibi_bias(keep, slopes, scale)[0], full[0][:, keep[0]][:, :, keep[0]])
    pad = torch.tensor([[False, False, True, True]])
    m = attention_bias(alibi_bias(keep, slopes, scale), pad, torch.float32)
    assert torch.isinf(m[0, :, :, 2:]).all() and torch.isfinite(m[0, :, :, :2]).all()
    assert attention_bias(None, None, torch.float32) is None
