"""MERT student: config, builders, frames, padding, relaxed attention, loss terms, FLOPs, no graph breaks."""

from __future__ import annotations

import math

import pytest
import torch
from torch.nn import functional as F

from audiossl.models.mert.model import (
    CONFIGS,
    MertConfig,
    MertModel,
    RelaxedSelfAttention,
    build_mert,
    mert_95m,
    mert_330m,
    mert_tiny,
)

NO_DROP = dict(dropout=0.0, attention_dropout=0.0, dropout_input=0.0, encoder_layerdrop=0.0)


def tiny(**kw):
    """Tiny MERT with a 4-octave, 24-per-octave CQT (test speed; the 336-bin teacher is tested in test_cqt_torch)."""
    return mert_tiny(num_classes=32, cqt_bins=96, cqt_bins_per_octave=24, **kw)


def test_config_round_trip_and_refusals():
    cfg = mert_330m()
    assert MertConfig.family == "mert" and "family" not in cfg.to_dict()
    again = MertConfig.from_dict(cfg.to_dict())
    assert again == cfg and again.conv_layers == cfg.conv_layers
    with pytest.raises(ValueError, match=r"unknown MertConfig fields \['num_codbooks'\]"):
        MertConfig.from_dict({"num_codbooks": 8})
    with pytest.raises(ValueError, match="divisible"):
        MertConfig(embed_dim=100, num_heads=12)
    assert set(CONFIGS) == {"tiny", "95m", "330m"}


def test_builders_sizes_and_frame_rate():
    for build, params, layers, dim, pre_ln, relax in ((mert_95m, 94.4e6, 12, 768, False, False), (mert_330m, 315.4e6, 24, 1024, True, True)):
        cfg = build()
        assert (cfg.num_codebooks, cfg.num_classes, cfg.mask_prob, cfg.mask_length, cfg.cqt_weight) == (8, 1024, 0.8, 5, 1.0)
        with torch.device("meta"):
            enc = MertModel(cfg)
        n = sum(p.numel() for p in enc.parameters())
        assert abs(n - params) / params < 0.01, n
        assert len(enc.encoder.layers) == layers and enc.cfg.embed_dim == dim and enc.cfg.layer_norm_first == pre_ln
        assert isinstance(enc.encoder.layers[0].self_attn, RelaxedSelfAttention) == relax
        assert enc.frame_rate == 75.0 and enc.num_frames(120000) == 374  # 5 s crop
    assert MertModel(tiny()).frame_rate == 75.0


def test_builders_follow_the_reference_configs():
    """MERT_RVQ-VAE_CQT_{95M,330M}.yaml + the released config.json: group-norm front end without conv
    bias for both, final_dim 64 / 128, noise segments 12000-24000 / 12000-36000 samples, CQT 336 x 48 from 32.7 Hz."""
    for build, final_dim, seg, grad_mult in ((mert_95m, 64, (0.5, 1.0), 0.1), (mert_330m, 128, (0.5, 1.5), 1.0)):
        cfg = build()
        assert (cfg.extractor_mode, cfg.conv_bias, cfg.normalize) == ("group_norm", False, False)
        assert (cfg.final_dim, cfg.logit_temp, cfg.ce_reduction, cfg.noise_mix_seconds) == (final_dim, 0.1, "sum", seg)
        assert (cfg.noise_mix_prob, cfg.noise_mix_max_segments, cfg.noise_mix_volume, cfg.noise_mix_snr_db) == (0.5, 3, 1.0, None)
        assert (cfg.cqt_bins, cfg.cqt_bins_per_octave, cfg.cqt_fmin, cfg.cqt_target) == (336, 48, 32.7, "magnitude")
        assert (cfg.feature_pen_weight, cfg.cqt_weight, cfg.ce_weight, cfg.feature_grad_mult) == (10.0, 1.0, 1.0, grad_mult)
        assert (cfg.mask_prob, cfg.mask_length, cfg.min_masks) == (0.8, 5, 2)


def test_hidden_states_padding_and_short_input():
    torch.manual_seed(0)
    enc = MertModel(tiny(**NO_DROP)).eval()
    wavs = torch.randn(3, 24000)
    lengths = torch.tensor([24000, 16000, 8000])
    with torch.no_grad():
        out = enc(wavs, lengths)
        assert len(out.hidden_states) == 3 and out.hidden_states[-1].shape == (3, 74, 128)
        assert out.lengths.tolist() == [enc.num_frames(int(n)) for n in lengths]
        for i, n in enumerate(lengths.tolist()):
            alone = enc(wavs[i : i + 1, :n]).hidden_states
            t = enc.num_frames(n)
            assert all(torch.allclose(a[i, :t], b[0], atol=1e-4) for a, b in zip(out.hidden_states, alone))
    with pytest.raises(ValueError, match="fewer than the 400-sample receptive field"):
        enc(torch.randn(1, 300))


@pytest.mark.parametrize("padded", [False, True])
def test_relaxed_attention_equals_plain_softmax(padded):
    torch.manual_seed(0)
    plain = MertModel(tiny(**NO_DROP)).eval()
    relaxed = MertModel(tiny(attention_relax=32.0, **NO_DROP)).eval()
    relaxed.load_state_dict(plain.state_dict())  # same parameter names
    wavs = 10 * torch.randn(2, 16000)
    lengths = torch.tensor([16000, 11000]) if padded else None
    with torch.no_grad():
        a, b = plain(wavs, lengths).hidden_states, relaxed(wavs, lengths).hidden_states
    assert max(float((x - y).abs().max()) for x, y in zip(a, b)) < 1e-4
    # it is really a different code path: scores are formed at 1/alpha scale
    attn = relaxed.encoder.layers[0].self_attn
    assert isinstance(attn, RelaxedSelfAttention) and attn.relax == 32.0


def _step(model, wavs, targets, mask):
    return model(wavs, None, targets, mask_indices=mask)


def test_loss_terms_by_hand():
    torch.manual_seed(0)
    model = build_mert(tiny(**NO_DROP)).eval()
    wavs = torch.randn(2, 12000)
    t = model.encoder.num_frames(12000)
    targets = torch.randint(0, 32, (2, t, 8))
    targets[0, 3, 2] = -100  # no label for one (frame, codebook)
    mask = torch.zeros(2, t, dtype=torch.bool)
    mask[:, 2:12] = True
    out = _step(model, wavs, targets, mask)
    assert out.logits.shape == (2, t, 8, 32) and out.cqt_pred.shape == out.cqt_target.shape == (2, t, 96)
    sel = mask[..., None] & (targets >= 0)
    assert int(out.num_masked) == 2 * 10 * 8 - 1  # all heads together
    ce = F.cross_entropy(out.logits.permute(0, 3, 1, 2), targets.clamp(min=0), reduction="none")
    per_book = torch.stack([ce[..., c][sel[..., c]].mean() for c in range(8)])
    assert torch.allclose(out.loss_masked, per_book.sum(), atol=1e-5)  # MERT: codebook CE terms summed
    assert int(out.correct_masked) == int(((out.logits.argmax(-1) == targets) & sel).sum())
    mse = (out.cqt_pred - out.cqt_target).pow(2).mean(-1)[mask].mean()
    assert torch.allclose(out.loss_cqt, mse, atol=1e-5) and out.extra_losses == {"loss_cqt": out.loss_cqt}
    assert torch.allclose(out.loss, out.loss_masked + out.loss_cqt + 10 * out.feature_pen, atol=1e-5)
    # unmasked frames do not count: changing their codes leaves every loss term unchanged
    other = targets.clone()
    other[:, 20:] = (other[:, 20:] + 1) % 32
    again = _step(model, wavs, other, mask)
    assert torch.equal(again.loss, out.loss)
    # weights are configurable
    model.cfg.cqt_weight, model.cfg.ce_weight = 0.0, 2.0
    w = _step(model, wavs, targets, mask)
    assert torch.allclose(w.loss, 2 * out.loss_masked + 10 * out.feature_pen, atol=1e-5)
    model.cfg.ce_reduction = "mean"  # the non-MERT option: averaged over codebooks
    assert torch.allclose(_step(model, wavs, targets, mask).loss_masked, per_book.mean(), atol=1e-6)
    with pytest.raises(ValueError, match=r"targets must be \[batch=2, frames, num_codebooks=8\]"):
        model(wavs, None, targets[..., :4])


def _reference_logits(proj_x, label_embs, target, temp=0.1):
    """MERT's compute_nce, restated: candidates = [positive; every label embedding], cosine / temp,
    the candidates equal to the positive set to -inf; the target is candidate 0."""
    pos = label_embs[target]  # [S, F]
    cands = torch.cat([pos[None], label_embs[:, None].expand(-1, len(target), -1)])  # [1 + K, S, F]
    logits = torch.cosine_similarity(proj_x[None].float(), cands.float(), dim=-1) / temp
    logits[1:][(pos[None] == cands[1:]).all(-1)] = float("-inf")
    return logits.T  # [S, 1 + K], target 0


def test_cosine_heads_match_mert_compute_nce():
    torch.manual_seed(0)
    model = build_mert(tiny(**NO_DROP)).eval()
    with torch.no_grad():
        model.final_proj.bias.normal_()
    wavs = torch.randn(2, 12000)
    t = model.encoder.num_frames(12000)
    targets = torch.randint(0, 32, (2, t, 8))
    mask = torch.zeros(2, t, dtype=torch.bool)
    mask[:, 3:15] = True
    out = _step(model, wavs, targets, mask)
    hidden = model.encoder(wavs, None, mask_indices=mask).hidden_states[-1]
    proj = model.final_proj(hidden[mask]).chunk(8, dim=-1)  # untie_final_proj: chunk c is codebook c
    embs = model.label_embs.split([32] * 8, 0)
    total = 0.0
    for c in range(8):
        ref = _reference_logits(proj[c], embs[c], targets[..., c][mask])
        ce = F.cross_entropy(ref, torch.zeros(len(ref), dtype=torch.long), reduction="sum")
        total = total + ce
        torch.testing.assert_close(torch.log_softmax(ref, -1)[:, 0], torch.log_softmax(out.logits[:, :, c][mask], -1).gather(1, targets[..., c][mask][:, None])[:, 0], atol=1e-5, rtol=1e-5)
    # hubert criterion: sum of the codebooks' summed CE / number of masked frames (sample_size)
    torch.testing.assert_close(out.loss_masked, total / int(mask.sum()), atol=1e-5, rtol=1e-5)
    assert model.label_embs.shape == (8 * 32, 16) and float(model.label_embs.detach().min()) >= 0  # U(0, 1) init


def test_heads_are_untied():
    torch.manual_seed(0)
    model = build_mert(tiny(**NO_DROP)).train()
    wavs = torch.randn(2, 12000)
    t = model.encoder.num_frames(12000)
    targets = torch.full((2, t, 8), -100)
    targets[..., 3] = 5  # only codebook 3 has labels
    mask = torch.ones(2, t, dtype=torch.bool)
    model.cfg.cqt_weight = model.cfg.feature_pen_weight = 0.0
    _step(model, wavs, targets, mask).loss.backward()
    g = model.final_proj.weight.grad.view(8, 16, -1).abs().sum((1, 2))
    assert float(g[3]) > 0 and float(g.sum() - g[3]) == 0.0
    e = model.label_embs.grad.view(8, 32, -1).abs().sum((1, 2))
    assert float(e[3]) > 0 and float(e.sum() - e[3]) == 0.0


def test_targets_shorter_or_longer_are_aligned():
    torch.manual_seed(0)
    model = build_mert(tiny(**NO_DROP)).eval()
    wavs = torch.randn(1, 12000)
    t = model.encoder.num_frames(12000)
    mask = torch.ones(1, t, dtype=torch.bool)
    full = torch.randint(0, 32, (1, t + 1, 8))
    a = _step(model, wavs, full, mask)
    b = _step(model, wavs, full[:, : t - 1], mask)
    assert int(a.num_masked) == t * 8 and int(b.num_masked) == (t - 1) * 8


def test_flops_match_flop_counter_and_per_second():
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    from audiossl.models.mert import family as mert_family
    from audiossl.models.mert.flops import cqt_flops, forward_flops, mert_train_flops_per_second, train_flops

    cfg = tiny(num_layers=3, pos_conv_kernel=31, **NO_DROP)
    model = build_mert(cfg).eval()
    n = 24000
    wavs = torch.randn(1, n)
    t = model.encoder.num_frames(n)
    targets = torch.randint(0, 32, (1, t, 8))
    model.cqt.method = "direct"  # FlopCounterMode counts convolutions, not FFTs
    counter = FlopCounterMode(display=False)
    with sdpa_kernel(SDPBackend.MATH), counter, torch.no_grad():
        model(wavs, None, targets)
    measured = counter.get_total_flops()
    analytic = forward_flops(cfg, n) - cqt_flops(cfg, n, t) + cqt_flops(cfg, n, t, method="direct")
    assert abs(analytic - measured) / measured < 0.01, (analytic, measured)
    assert train_flops(cfg, n) < 3 * analytic  # the CQT teacher has no backward
    per_s = mert_family.train_flops_per_second(mert_95m(), 120000)
    # HuBERT Base is ~44.6 GFLOP per 16 kHz second; at 24 kHz (1.5x the frames) plus 8 x 1024-way heads
    assert 60e9 < per_s < 80e9, per_s
    assert 2 * per_s < mert_train_flops_per_second(mert_330m()) < 3 * per_s  # as HuBERT Large vs Base
    # the 336-bin teacher on a 5-s crop: the FFT path does a fraction of the strided convolutions' work
    t95 = model.encoder.num_frames(120000)
    assert cqt_flops(mert_95m(), 120000, t95) < cqt_flops(mert_95m(), 120000, t95, method="direct") / 4
    assert forward_flops(cfg, 300) == 0


def test_pretrain_step_has_no_graph_breaks():
    """No host sync in the step (noise mixture, CQT teacher, masks, losses): one graph."""
    torch._dynamo.reset()
    model = build_mert(tiny(noise_mix_prob=1.0)).train()
    wavs = torch.randn(2, 12000)
    t = model.encoder.num_frames(12000)
    explained = torch._dynamo.explain(model)(wavs, torch.tensor([12000, 9000]), torch.randint(0, 32, (2, t, 8)))
    assert explained.graph_break_count == 0, [str(r.reason) for r in explained.break_reasons]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gpu_bf16_step_95m_and_330m():
    for build in (mert_95m, mert_330m):
        torch.manual_seed(0)
        model = build_mert(build()).cuda().train()
        wavs = torch.randn(4, 120000, device="cuda")
        t = model.encoder.num_frames(120000)
        targets = torch.randint(0, 1024, (4, t, 8), device="cuda")
        with torch.autocast("cuda", dtype=torch.bfloat16):
            out = model(wavs, torch.tensor([120000, 110000, 100000, 90000], device="cuda"), targets)
        out.loss.backward()
        assert math.isfinite(float(out.loss)) and 6.0 < float(out.loss_masked) < 8.0
        assert all(p.grad is None or torch.isfinite(p.grad).all() for p in model.parameters())
        del model, out
        torch.cuda.empty_cache()
