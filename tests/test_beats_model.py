"""BEATs model: shapes, padding invariance, masking, loss, unilm attention math, FLOPs, upstream round trip."""

from __future__ import annotations

import math

import pytest
import torch
from torch.nn import functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from audiossl.models.beats.model import (
    BeatsConfig,
    beats_base,
    beats_tiny,
    build_beats,
    random_patch_mask,
    relative_position_bucket,
)


def _wavs(lengths, seed=0):
    g = torch.Generator().manual_seed(seed)
    w = torch.zeros(len(lengths), max(lengths))
    for i, n in enumerate(lengths):
        w[i, :n] = 0.1 * torch.randn(n, generator=g)
    return w, torch.tensor(lengths)


def test_shapes_and_frame_counts():
    cfg = beats_tiny()
    model = build_beats(cfg).encoder.eval()
    assert model.frame_rate == 6.25 and cfg.num_codebooks == 8
    # 16000 samples → 98 fbank frames → 6 time steps of 8 patches
    assert model.num_frames(16000) == 6 and model.num_frames(2799) == 0 and model.num_frames(2800) == 1
    w, lens = _wavs([16000, 9000])
    out = model(w, lens)
    assert len(out.hidden_states) == cfg.encoder_layers + 1
    assert all(h.shape == (2, 6 * 8, cfg.encoder_embed_dim) for h in out.hidden_states)
    assert out.lengths.tolist() == [6, model.num_frames(9000)] == [6, 3]
    assert out.padding_mask.sum(1).tolist() == [0, 24]
    assert torch.equal(model.frame_lengths(lens), out.lengths)
    with pytest.raises(ValueError, match="fewer than the 2800 samples"):
        model(torch.zeros(1, 2000))
    with pytest.raises(ValueError, match="batch, samples"):
        model(torch.zeros(16000))


def test_padded_batch_equals_one_by_one():
    cfg = beats_tiny(encoder_layers=3)
    model = build_beats(cfg).encoder.eval()
    lengths = [16000, 11000, 6000]
    w, lens = _wavs(lengths, seed=1)
    with torch.no_grad():
        batched = model(w, lens)
        for i, n in enumerate(lengths):
            single = model(w[i : i + 1, :n])
            p = single.hidden_states[0].shape[1]
            assert p == int(batched.lengths[i]) * 8
            for a, b in zip(batched.hidden_states, single.hidden_states):
                torch.testing.assert_close(a[i, :p], b[0], rtol=1e-4, atol=1e-5)


def test_random_patch_mask_fraction_and_padding():
    padding = torch.arange(48)[None, :] >= torch.tensor([48, 32, 8, 0])[:, None]
    g = torch.Generator().manual_seed(0)
    mask = random_patch_mask(padding, 0.75, g)
    assert not (mask & padding).any()
    assert mask.sum(1).tolist() == [36, 24, 6, 0]  # n - round(0.25 n)
    other = random_patch_mask(padding, 0.75, torch.Generator().manual_seed(1))
    assert not torch.equal(mask, other)


def test_pretrain_loss_is_ce_on_masked_patches_with_time_major_targets():
    cfg = beats_tiny(label_smoothing=0.0, num_classes=50)
    model = build_beats(cfg).eval()
    w, lens = _wavs([16000, 12000], seed=2)
    targets = torch.randint(0, 50, (2, 7, 8))  # one step more than the model's 6: truncated
    targets[1, 4:] = -100
    g = torch.Generator().manual_seed(0)
    out = model(w, lens, targets, generator=g)
    flat = targets[:, :6].reshape(2, 48)  # patch t*8+f ↔ targets[:, t, f]
    sel = out.mask_indices & (flat >= 0)
    assert int(out.num_masked) == int(sel.sum()) and out.mask_indices.sum(1).tolist() == [36, 24]
    ce = F.cross_entropy(out.logits[sel], flat[sel])
    torch.testing.assert_close(out.loss, ce)
    torch.testing.assert_close(out.loss_masked, ce)
    assert int(out.correct_masked) == int((out.logits.argmax(-1)[sel] == flat[sel]).sum())
    smooth = build_beats(beats_tiny(label_smoothing=0.1, num_classes=50))
    smooth.load_state_dict(model.state_dict())
    out2 = smooth.eval()(w, lens, targets, mask_indices=out.mask_indices)
    torch.testing.assert_close(out2.loss, F.cross_entropy(out2.logits[sel], flat[sel], label_smoothing=0.1))
    torch.testing.assert_close(out2.loss_masked, ce)


def test_pretrain_backward_reaches_encoder_and_predictor():
    model = build_beats(beats_tiny(num_classes=30)).train()
    w, lens = _wavs([12000, 16000], seed=3)
    out = model(w, lens, torch.randint(0, 30, (2, 6, 8)))
    out.loss.backward()
    for name in ("encoder.patch_embedding.weight", "encoder.encoder.layers.0.self_attn.relative_attention_bias.weight",
                 "encoder.encoder.layers.1.self_attn.grep_a", "predictor.mask_token", "predictor.head.weight"):
        grad = dict(model.named_parameters())[name].grad
        assert grad is not None and grad.abs().sum() > 0, name


def test_relative_position_buckets():
    rel = torch.arange(-2000, 2001)
    b = relative_position_bucket(rel, 320, 800)
    assert b.min() == 0 and b.max() == 319
    assert torch.equal(b[2000 + torch.arange(1, 80)], 160 + torch.arange(1, 80))  # exact for 1 .. 79 ahead
    assert torch.equal(b[2000 - torch.arange(80)], torch.arange(80))  # and behind
    assert b[2000 + 800] == 319 and b[2000 + 1999] == 319 and b[2000 - 1999] == 159
    assert (b[2000 + 80 :].diff() >= 0).all()  # log buckets grow with distance
    # the log formula: 80 + floor(log(d / 80) / log(800 / 80) * 80)
    assert b[2000 + 300] == 160 + 80 + int(math.log(300 / 80) / math.log(10) * 80)


def _unilm_attention(attn, x, pos_bias, padding):
    """The unilm/WavLM attention written the reference's way: T×B×C, bmm, alpha = 32 trick, gate."""
    t, bsz, d = x.shape[1], x.shape[0], x.shape[2]
    h, hd = attn.num_heads, attn.head_dim
    xt = x.transpose(0, 1)
    alpha, scaling = 32, hd**-0.5
    q = attn.q_proj(xt) * scaling / alpha
    k, v = attn.k_proj(xt), attn.v_proj(xt)
    q, k, v = (z.contiguous().view(t, bsz * h, hd).transpose(0, 1) for z in (q, k, v))
    w = torch.bmm(q, k.transpose(1, 2))
    w = (w - w.max(dim=-1, keepdim=True)[0]) * alpha
    w = w.view(bsz, h, t, t).masked_fill(padding[:, None, None, :], float("-inf")).view(bsz * h, t, t)
    query_layer = q.view(bsz, h, t, hd) * alpha / scaling
    gate_a, gate_b = torch.sigmoid(attn.grep_linear(query_layer).view(bsz, h, t, 2, 4).sum(-1)).chunk(2, dim=-1)
    gate = gate_a * (gate_b * attn.grep_a - 1.0) + 2.0
    bias = gate.view(bsz * h, t, 1) * pos_bias.unsqueeze(0).repeat(bsz, 1, 1, 1).view(bsz * h, t, t)
    y = torch.bmm(F.softmax(w + bias, dim=-1), v)
    return attn.out_proj(y.transpose(0, 1).contiguous().view(t, bsz, d)).transpose(0, 1)


def test_attention_matches_unilm_formulation():
    torch.manual_seed(0)
    model = build_beats(beats_tiny()).encoder.eval()
    attn = model.encoder.layers[1].self_attn
    nn_init = torch.nn.init
    nn_init.normal_(attn.grep_linear.weight, std=0.5)
    nn_init.normal_(attn.grep_a, mean=1.0, std=0.5)
    x = torch.randn(2, 40, 96)
    padding = torch.arange(40)[None, :] >= torch.tensor([40, 25])[:, None]
    from audiossl.models.rel_pos import dense_position_bias, key_mask_from_padding

    table = model.encoder.layers[0].self_attn.relative_attention_bias
    with torch.no_grad():
        nn_init.normal_(table.weight, std=1.0)
        pos_bias = dense_position_bias(table, 40, model.cfg.num_buckets, model.cfg.max_distance)
        ours = attn(x, key_mask_from_padding(padding), pos_bias)
        ref = _unilm_attention(attn, x, pos_bias, padding)
    torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-5)


def test_config_round_trip_and_refusals():
    cfg = beats_tiny(num_classes=77)
    assert BeatsConfig.from_dict(cfg.to_dict()) == cfg and BeatsConfig.family == "beats"
    with pytest.raises(ValueError, match="unknown BeatsConfig fields"):
        BeatsConfig.from_dict({**cfg.to_dict(), "bogus": 1})
    with pytest.raises(ValueError, match="num_codebooks must be 128 mel bins / input_patch_size 16 = 8"):
        beats_tiny(num_codebooks=4)
    with pytest.raises(ValueError, match="deep_norm needs post-LN"):
        beats_tiny(layer_norm_first=True)
    base = beats_base()
    assert (base.encoder_layers, base.encoder_embed_dim, base.num_buckets, base.max_distance) == (12, 768, 320, 800)
    assert (base.mask_prob, base.num_classes, base.predictor_layers) == (0.75, 1024, 3)


def test_flops_match_flop_counter():
    from audiossl.models.beats.flops import encoder_flops, fbank_flops, pretrain_forward_flops

    cfg = beats_tiny(conv_pos=31, num_classes=50)
    model = build_beats(cfg).eval()
    w = 0.1 * torch.randn(1, 24000)
    counter = FlopCounterMode(display=False)
    with sdpa_kernel(SDPBackend.MATH), counter, torch.no_grad():
        model.encoder(w)
    assert counter.get_total_flops() == encoder_flops(cfg, 72) + fbank_flops(24000)
    counter = FlopCounterMode(display=False)
    with sdpa_kernel(SDPBackend.MATH), counter, torch.no_grad():
        model(w, None, torch.randint(0, 50, (1, 9, 8)))
    # unpadded input: the compacted encoder sequence is exactly round(0.25 * 72) = 18 patches (no filler)
    measured = counter.get_total_flops()
    assert measured == pretrain_forward_flops(cfg, 24000, num_encoded=18) + fbank_flops(24000)
    assert abs(pretrain_forward_flops(cfg, 24000) + fbank_flops(24000) - measured) / measured < 0.03


def test_base_flops_per_second():
    from audiossl.models.beats.family import train_flops_per_second
    from audiossl.models.beats.flops import pretrain_forward_flops, train_flops

    cfg = beats_base()
    per_s = train_flops_per_second(cfg, 160_000)
    # encoder over 25 % of 10 s of patches + 3-layer predictor over all of them: ~14 GFLOP per audio-second
    assert 12e9 < per_s < 16e9
    assert train_flops(cfg, 160_000) > 3 * pretrain_forward_flops(cfg, 160_000)
    assert pretrain_forward_flops(cfg, 2000) == 0


def test_checkpoint_to_upstream_round_trip(tmp_path):
    from audiossl.upstream.load import load_upstream
    from audiossl.models.beats.family import load_pretrain_checkpoint
    from audiossl.models.checkpoint import save_checkpoint

    model = build_beats(beats_tiny(num_classes=40)).eval()
    save_checkpoint(model, tmp_path / "ck", extra={"step": 3})
    back = load_pretrain_checkpoint(tmp_path / "ck")
    assert back.state_dict().keys() == model.state_dict().keys()
    assert all(torch.equal(v, back.state_dict()[k]) for k, v in model.state_dict().items())
    up = load_upstream(str(tmp_path / "ck"))
    assert up.frame_rate == 6.25 and up.num_layers == 3 and up.hidden_dim == 96
    w, lens = _wavs([16000, 8000], seed=4)
    out = up(w, lens)
    assert out.lengths.tolist() == [6, 3] and up.frame_lengths(lens).tolist() == [6, 3]
    with torch.no_grad():
        ref = model.encoder(w, lens).hidden_states
    for h, r in zip(out.hidden_states, ref):
        assert h.shape == (2, 6, 96)
        torch.testing.assert_close(h, r.view(2, 6, 8, 96).mean(2))
    short = up(torch.zeros(1, 1000))
    assert short.hidden_states[0].shape == (1, 0, 96) and short.lengths.tolist() == [0]


def test_layer_wise_gradient_decay_scales_lower_layers():
    w, lens = _wavs([12000], seed=6)
    grads = {}
    for ratio in (1.0, 0.5):
        torch.manual_seed(0)
        model = build_beats(beats_tiny(layer_wise_gradient_decay_ratio=ratio, dropout=0.0)).encoder.eval()
        model.encoder.layers[-1].fc2.weight.grad = None
        model(w, lens).hidden_states[-1].pow(2).sum().backward()
        grads[ratio] = (model.patch_embedding.weight.grad.clone(), model.encoder.layers[-1].fc2.weight.grad.clone())
    # forward unchanged; the gradient is halved at each of the 2 layer inputs below the last layer's FFN
    torch.testing.assert_close(grads[0.5][0], grads[1.0][0] * 0.25)
    torch.testing.assert_close(grads[0.5][1], grads[1.0][1])


@pytest.mark.parametrize("mask_prob", [0.0, 0.1, 0.3, 0.5, 0.65, 0.75, 0.8, 0.9])
def test_host_kept_patch_count_equals_the_device_float32_round(mask_prob):
    """The unpadded step's kept-patch count (plain Python, so ``torch.compile`` needs no ``.item()``)
    equals :func:`random_patch_mask`'s float32 ``round((1 - p) * n)``, ties to even included."""
    from audiossl.models.beats.model import _kept_patches

    n = torch.arange(0, 6000)
    device = torch.round(n.float() * (1.0 - mask_prob)).long().tolist()
    assert [_kept_patches(i, mask_prob) for i in range(6000)] == device
