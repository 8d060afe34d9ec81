"""HuBERT model: parity with torchaudio, padding, short input, layerdrop, loss, builders."""

import inspect
import math

import pytest
import torch
import torchaudio
from torch.nn import functional as F

from audiossl.models.hubert.torchaudio import (
    config_from_torchaudio,
    from_torchaudio,
    state_dict_from_torchaudio,
    state_dict_to_torchaudio,
    to_torchaudio,
)
from audiossl.models import (
    HubertConfig,
    HubertModel,
    build_hubert,
    hubert_base,
    hubert_large,
    hubert_tiny,
    hubert_xlarge,
)
from audiossl.models import conv_frontend, hubert, transformer
from tests.parity_utils import assert_padded_batch_matches_single, randomize_affine

TINY_CONV = [(32, 10, 5)] + [(32, 3, 2)] * 4 + [(32, 2, 2)] * 2
NO_DROP = dict(dropout=0.0, attention_dropout=0.0, dropout_input=0.0, encoder_layerdrop=0.0)


def _ta_tiny_prelln():
    """A torchaudio Large-style (layer_norm extractor, conv bias, pre-LN) model with tiny dims."""
    return torchaudio.models.wav2vec2_model(
        extractor_mode="layer_norm", extractor_conv_layer_config=TINY_CONV, extractor_conv_bias=True,
        encoder_embed_dim=64, encoder_projection_dropout=0.0, encoder_pos_conv_kernel=16,
        encoder_pos_conv_groups=4, encoder_num_layers=3, encoder_num_heads=4, encoder_attention_dropout=0.0,
        encoder_ff_interm_features=256, encoder_ff_interm_dropout=0.0, encoder_dropout=0.0,
        encoder_layer_norm_first=True, encoder_layer_drop=0.0, aux_num_out=None,
    ).eval()


def _ta_tiny_pretrain():
    return torchaudio.models.hubert_pretrain_model(
        extractor_mode="group_norm", extractor_conv_layer_config=TINY_CONV, extractor_conv_bias=False,
        encoder_embed_dim=64, encoder_projection_dropout=0.0, encoder_pos_conv_kernel=16,
        encoder_pos_conv_groups=4, encoder_num_layers=2, encoder_num_heads=4, encoder_attention_dropout=0.0,
        encoder_ff_interm_features=256, encoder_ff_interm_dropout=0.0, encoder_dropout=0.0,
        encoder_layer_norm_first=False, encoder_layer_drop=0.0, mask_prob=0.8, mask_selection="static",
        mask_other=0.0, mask_length=10, no_mask_overlap=False, mask_min_space=1, mask_channel_prob=0.0,
        mask_channel_selection="static", mask_channel_other=0.0, mask_channel_length=10,
        no_mask_channel_overlap=False, mask_channel_min_space=1, skip_masked=False, skip_nomask=False,
        num_classes=20, final_dim=16, feature_grad_mult=0.1,
    ).eval()


def _ta_pretrain_logits(ta, wavs, mask, labels):
    """torchaudio's masked logits for a given mask: ``[masked, 1 + num_classes]`` (col 0 = target)."""
    w2v = ta.wav2vec2
    x, _ = w2v.feature_extractor(wavs, None)
    x, attn = w2v.encoder._preprocess(x, None)
    x = x.clone()
    x[mask] = ta.mask_generator.mask_embedding
    x = w2v.encoder.transformer(x, attention_mask=attn)
    logit_m, _ = ta.logit_generator(x, labels, mask, ~mask)
    return logit_m


def _check_pretrain_parity(ta, ours, wavs, gen_seed=0):
    torch.manual_seed(gen_seed)
    t = ours.encoder.num_frames(wavs.shape[1])
    labels = torch.randint(0, ours.cfg.num_classes, (wavs.shape[0], t))
    mask = torch.rand(wavs.shape[0], t) < 0.5
    with torch.no_grad():
        feats, _ = ta.wav2vec2.feature_extractor(wavs, None)
        layers, _ = ta.wav2vec2.extract_features(wavs)
        out = ours.encoder(wavs)
        torch.testing.assert_close(out.features, feats, atol=1e-4, rtol=0)
        assert len(out.hidden_states) == len(layers) + 1
        for i, ref in enumerate(layers):
            torch.testing.assert_close(out.hidden_states[i + 1], ref, atol=1e-4, rtol=0)
        ref_logits = _ta_pretrain_logits(ta, wavs, mask, labels)
        res = ours(wavs, None, labels, mask_indices=mask)
    mine = res.logits[mask]  # [masked, num_classes]
    lab = labels[mask]
    torch.testing.assert_close(mine.gather(1, lab[:, None])[:, 0], ref_logits[:, 0], atol=1e-4, rtol=0)
    ref_all = ref_logits[:, 1:].clone()
    keep = torch.ones_like(ref_all, dtype=torch.bool).scatter_(1, lab[:, None], False)  # ta puts -inf there
    torch.testing.assert_close(mine[keep], ref_all[keep], atol=1e-4, rtol=0)
    # our masked loss is fairseq's: CE with the target in column 0 of torchaudio's logits
    ref_loss = F.cross_entropy(ref_logits, torch.zeros(len(lab), dtype=torch.long))
    torch.testing.assert_close(res.loss_masked, ref_loss, atol=1e-4, rtol=1e-5)
    assert int(res.num_masked) == int(mask.sum())


def test_parity_hubert_pretrain_base():
    torch.manual_seed(0)
    ta = torchaudio.models.hubert_pretrain_base(num_classes=50).eval()
    ours = from_torchaudio(ta).eval()
    assert ours.cfg == hubert_base(num_classes=50)
    _check_pretrain_parity(ta, ours, torch.randn(1, 4800))


def _check_padded_parity(ta, encoder, lengths: list[int], pre_ln: bool) -> None:
    """Our padded batch, item by item, equals torchaudio's on each item alone (transformer layers;
    a pre-LN model's last layer differs by torchaudio's final LayerNorm, checked elsewhere)."""
    wavs = torch.randn(len(lengths), max(lengths))
    for i, n in enumerate(lengths):
        wavs[i, n:] = 0.0
    keep = slice(None, -1) if pre_ln else slice(None)
    with torch.no_grad():
        out = encoder(wavs, torch.tensor(lengths))
        single = lambda i: ta.extract_features(wavs[i : i + 1, : lengths[i]])[0][keep]  # noqa: E731
        assert_padded_batch_matches_single(out.hidden_states[1:][keep], out.lengths.tolist(), single)


def test_parity_tiny_pretrain_and_round_trip():
    torch.manual_seed(1)
    ta = randomize_affine(_ta_tiny_pretrain(), seed=1)
    ours = from_torchaudio(ta).eval()
    _check_pretrain_parity(ta, ours, torch.randn(3, 8000))
    _check_padded_parity(ta.wav2vec2, ours.encoder, [8000, 5123, 2400], pre_ln=False)
    # back to torchaudio: a fresh model gets exactly our weights
    ta2 = to_torchaudio(ours, _ta_tiny_pretrain())
    for k, v in ta.state_dict().items():
        torch.testing.assert_close(ta2.state_dict()[k], v, atol=0, rtol=0)


def test_parity_tiny_pre_ln_layer_norm_extractor():
    torch.manual_seed(2)
    ta = randomize_affine(_ta_tiny_prelln(), seed=2)
    ours = from_torchaudio(ta).eval()
    _check_padded_parity(ta, ours, [6000, 4321, 1900], pre_ln=True)
    assert ours.cfg.layer_norm_first and ours.cfg.extractor_mode == "layer_norm" and ours.cfg.conv_bias
    wavs = torch.randn(2, 6000)
    with torch.no_grad():
        layers, _ = ta.extract_features(wavs)
        final, _ = ta(wavs)  # torchaudio forward applies the final LayerNorm of pre-LN models
        out = ours(wavs)
    for i, ref in enumerate(layers[:-1]):
        torch.testing.assert_close(out.hidden_states[i + 1], ref, atol=1e-4, rtol=0)
    torch.testing.assert_close(out.hidden_states[-1], final, atol=1e-4, rtol=0)
    # the key mapping is a bijection
    sd = {"encoder." + k: v for k, v in ours.state_dict().items() if k != "mask_emb"}
    back = state_dict_from_torchaudio(state_dict_to_torchaudio(sd, pretrain=False))
    assert set(back) == set(sd)


def test_config_from_torchaudio_unknown_keys_rejected():
    ta = _ta_tiny_prelln()
    sd = dict(ta.state_dict(), **{"aux.weight": torch.zeros(1)})
    with pytest.raises(KeyError, match="aux.weight"):
        state_dict_from_torchaudio(sd)
    assert config_from_torchaudio(ta, num_classes=7).num_classes == 7


@pytest.mark.parametrize("mode", ["group_norm", "layer_norm"])
def test_padded_batch_matches_one_by_one(mode):
    torch.manual_seed(3)
    model = HubertModel(hubert_tiny(extractor_mode=mode, **NO_DROP)).eval()
    lengths = torch.tensor([8000, 5123, 2400])
    wavs = torch.randn(3, 8000)
    for i, n in enumerate(lengths.tolist()):
        wavs[i, n:] = 100.0  # garbage in the padding must not leak into valid frames
    with torch.no_grad():
        batched = model(wavs, lengths)
        for i, n in enumerate(lengths.tolist()):
            single = model(wavs[i : i + 1, :n])
            t = int(batched.lengths[i])
            assert t == single.hidden_states[0].shape[1] == model.num_frames(n)
            assert not batched.padding_mask[i, :t].any() and batched.padding_mask[i, t:].all()
            for b, s in zip(batched.hidden_states, single.hidden_states):
                torch.testing.assert_close(b[i, :t], s[0], atol=1e-4, rtol=1e-4)


def test_frame_arithmetic():
    with torch.device("meta"):
        model = HubertModel(hubert_base())
    assert model.frame_rate == 50.0 and model.receptive_field == 400
    samples = [0, 399, 400, 719, 720, 16000, 16080, 250000]
    expected = [0, 0, 1, 1, 2, 49, 50, 781]
    assert [model.num_frames(s) for s in samples] == expected
    assert model.frame_lengths(torch.tensor(samples)).tolist() == expected


def test_short_and_zero_length_input():
    model = HubertModel(hubert_tiny(**NO_DROP)).eval()
    for n in (0, 1, 399):
        with pytest.raises(ValueError, match=rf"{n} samples, fewer than the 400-sample receptive field"):
            model(torch.zeros(2, n))
    # a batch long enough overall, with an empty and a too-short item: zero frames, no NaN, no crash
    wavs = torch.randn(3, 4000)
    with torch.no_grad():
        out = model(wavs, torch.tensor([4000, 0, 300]))
    assert out.lengths.tolist() == [model.num_frames(4000), 0, 0]
    assert out.padding_mask[1:].all()
    assert all(torch.isfinite(h).all() for h in out.hidden_states)
    pre = build_hubert(hubert_tiny(**NO_DROP)).eval()
    res = pre(wavs, torch.tensor([4000, 0, 300]), torch.zeros(3, 12, dtype=torch.long))
    assert torch.isfinite(res.loss) and res.num_frames.item() == model.num_frames(4000)
    with pytest.raises(ValueError, match=r"\[batch, samples\]"):
        model(torch.zeros(16000))


def test_layerdrop_keeps_hidden_state_count():
    torch.manual_seed(4)
    cfg = hubert_tiny(num_layers=4, **dict(NO_DROP, encoder_layerdrop=1.0))
    model = HubertModel(cfg).train()
    out = model(torch.randn(2, 4000))
    assert len(out.hidden_states) == 5
    for h in out.hidden_states[1:]:  # every layer dropped: each passes its input through
        torch.testing.assert_close(h, out.hidden_states[0])
    model.encoder.layerdrop = 0.5
    counts = []
    for _ in range(10):
        hs = model(torch.randn(1, 2000)).hidden_states
        assert len(hs) == 5
        counts.append(sum(not torch.equal(a, b) for a, b in zip(hs[:-1], hs[1:])))
    assert 0 < sum(counts) < 40  # some layers ran, some were skipped
    model.eval()  # never drops in eval
    hs = model(torch.randn(1, 4000)).hidden_states
    assert all(not torch.equal(a, b) for a, b in zip(hs[:-1], hs[1:]))


def test_output_layers_and_mask_embedding():
    torch.manual_seed(5)
    model = HubertModel(hubert_tiny(num_layers=3, **NO_DROP)).eval()
    wavs = torch.randn(2, 4000)
    with torch.no_grad():
        full = model(wavs)
        part = model(wavs, output_layers=1)
        t = model.num_frames(4000)
        mask = torch.zeros(2, t, dtype=torch.bool)
        mask[:, 3:8] = True
        masked = model(wavs, mask_indices=mask)
    assert len(part.hidden_states) == 2
    torch.testing.assert_close(part.hidden_states[1], full.hidden_states[1])
    assert not torch.allclose(masked.hidden_states[0], full.hidden_states[0])
    with pytest.raises(ValueError, match="mask_indices"):
        model(wavs, mask_indices=mask[:, :-1])


def test_attention_gets_boolean_key_padding_mask(monkeypatch):
    seen = []
    real = F.scaled_dot_product_attention

    def spy(q, k, v, attn_mask=None, **kw):
        seen.append(attn_mask)
        return real(q, k, v, attn_mask=attn_mask, **kw)

    monkeypatch.setattr(transformer.F, "scaled_dot_product_attention", spy)
    model = HubertModel(hubert_tiny(**NO_DROP)).eval()
    with torch.no_grad():
        model(torch.randn(2, 4000))
        assert seen and all(m is None for m in seen)
        seen.clear()
        out = model(torch.randn(2, 4000), torch.tensor([4000, 2000]))
    t = out.hidden_states[0].shape[1]
    assert all(m.dtype == torch.bool and m.shape == (2, 1, 1, t) for m in seen)
    torch.testing.assert_close(seen[0][:, 0, 0], ~out.padding_mask)


def test_no_host_sync_calls_in_forward():
    fns = (
        hubert.HubertModel.forward, hubert.HubertPretrainModel.forward, hubert.HubertPretrainModel.compute_logits,
        transformer.TransformerEncoder.forward, transformer.EncoderLayer.forward, transformer.SelfAttention.forward,
        conv_frontend.ConvFrontend.forward, conv_frontend.masked_group_norm,
    )
    for fn in fns:
        src = inspect.getsource(fn)
        for bad in (".item()", ".cpu()", ".numpy()", ".tolist()"):
            assert bad not in src, f"{fn.__qualname__} calls {bad}"


def test_pretrain_loss_targets_and_weights():
    torch.manual_seed(6)
    cfg = hubert_tiny(**NO_DROP)
    model = build_hubert(cfg).train()
    wavs, lengths = torch.randn(2, 8000), torch.tensor([8000, 6000])
    t = model.encoder.num_frames(8000)
    targets = torch.randint(0, cfg.num_classes, (2, t + 2))  # a few labels too many: truncated
    targets[0, :5] = -100  # unlabelled frames are ignored
    gen = torch.Generator().manual_seed(0)
    out = model(wavs, lengths, targets, generator=gen)
    valid = ~(torch.arange(t)[None] >= model.encoder.frame_lengths(lengths)[:, None])
    labelled = valid & (targets[:, :t] >= 0)
    sel = labelled & out.mask_indices
    assert int(out.num_masked) == int(sel.sum()) > 0
    assert int(out.num_frames) == int(valid.sum())
    assert not (out.mask_indices & ~valid).any()
    ce = F.cross_entropy(out.logits[sel], targets[:, :t][sel])
    torch.testing.assert_close(out.loss_masked, ce)
    torch.testing.assert_close(out.loss, ce + cfg.feature_pen_weight * out.feature_pen)
    assert int(out.num_unmasked) == 0 and float(out.loss_unmasked) == 0.0  # weight 0: not computed
    assert 0 <= int(out.correct_masked) <= int(out.num_masked)
    out.loss.backward()
    assert model.label_embs.grad is not None and model.encoder.mask_emb.grad is not None

    # same generator seed → same mask; too few targets are padded with -100
    again = model(wavs, lengths, targets[:, : t - 3], generator=torch.Generator().manual_seed(0))
    assert torch.equal(again.mask_indices, out.mask_indices)
    assert int(again.num_masked) == int((sel[:, : t - 3] & labelled[:, : t - 3]).sum())

    both = build_hubert(hubert_tiny(pred_nomask_weight=0.5, **NO_DROP))
    both.load_state_dict(model.state_dict())
    res = both(wavs, lengths, targets, mask_indices=out.mask_indices)
    sel_u = labelled & ~out.mask_indices
    ce_u = F.cross_entropy(res.logits[sel_u], targets[:, :t][sel_u], reduction="sum")
    expect = (ce * sel.sum() + 0.5 * ce_u) / sel.sum() + cfg.feature_pen_weight * res.feature_pen
    torch.testing.assert_close(res.loss, expect)
    assert int(res.num_unmasked) == int(sel_u.sum())


def test_few_adam_steps_fit_a_fixed_batch():
    torch.manual_seed(11)
    model = build_hubert(hubert_tiny(num_classes=8, **NO_DROP)).train()
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    wavs, lengths = torch.randn(2, 4000), torch.tensor([4000, 3000])
    t = model.encoder.num_frames(4000)
    targets = (torch.arange(t)[None].repeat(2, 1) // 3) % 8  # learnable from position
    losses = []
    for step in range(4):
        out = model(wavs, lengths, targets, generator=torch.Generator().manual_seed(step))
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        losses.append(float(out.loss_masked.detach()))
    assert losses[-1] < losses[0] - 0.5, losses  # 1.9 -> 0.7 on CPU


def test_bf16_autocast_train_step_cpu():
    torch.manual_seed(10)
    model = build_hubert(hubert_tiny()).train()
    wavs, lengths = torch.randn(2, 6000), torch.tensor([6000, 4500])
    targets = torch.randint(0, 100, (2, 18))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(wavs, lengths, targets, generator=torch.Generator().manual_seed(0))
    assert out.logits.dtype == torch.float32 and torch.isfinite(out.loss)
    out.loss.backward()
    assert torch.isfinite(model.encoder.frontend.layers[0].norm.weight.grad).all()


@pytest.mark.parametrize("mult", [0.0, 0.1])
def test_feature_grad_mult(mult):
    torch.manual_seed(7)
    wavs, targets = torch.randn(2, 4000), torch.randint(0, 100, (2, 12))
    mask = torch.zeros(2, 12, dtype=torch.bool)
    mask[:, 2:7] = True
    grads = {}
    for m in (1.0, mult):
        torch.manual_seed(8)
        model = build_hubert(hubert_tiny(feature_grad_mult=m, **NO_DROP))
        model(wavs, None, targets, mask_indices=mask).loss.backward()
        grads[m] = model.encoder.frontend.layers[-1].conv.weight.grad
    if mult == 0.0:
        assert grads[0.0] is None
    else:
        # the feature penalty's gradient is scaled too, exactly as fairseq (GradMultiply before the penalty)
        torch.testing.assert_close(grads[mult], grads[1.0] * mult, rtol=1e-4, atol=1e-8)


def test_builders_and_config_round_trip():
    counts = {}
    for name, fn in (("base", hubert_base), ("large", hubert_large), ("xlarge", hubert_xlarge)):
        with torch.device("meta"):
            counts[name] = sum(p.numel() for p in HubertModel(fn()).parameters())
    # fairseq / torchaudio encoder sizes: 94.4 M, 315.4 M, 962.5 M
    assert counts == {"base": 94_371_712, "large": 315_438_720, "xlarge": 962_497_408}
    assert hubert_large().layer_norm_first and hubert_large().extractor_mode == "layer_norm"
    tiny = hubert_tiny(num_classes=33)
    assert tiny.num_classes == 33 and sum(p.numel() for p in build_hubert(tiny).parameters()) < 2e6
    assert HubertConfig.from_dict(tiny.to_dict()) == tiny
    with pytest.raises(ValueError, match="unknown HubertConfig fields"):
        HubertConfig.from_dict(dict(tiny.to_dict(), encoder_layers=3))
    with pytest.raises(ValueError, match="divisible"):
        HubertConfig(embed_dim=100, num_heads=12)
    assert math.isclose(HubertModel(hubert_tiny()).frame_rate, 50.0)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gpu_bf16_train_step():
    torch.manual_seed(9)
    model = build_hubert(hubert_tiny()).cuda().train()
    wavs = torch.randn(4, 16000, device="cuda")
    lengths = torch.tensor([16000, 12000, 9000, 16000], device="cuda")
    targets = torch.randint(0, 100, (4, 49), device="cuda")
    gen = torch.Generator(device="cuda").manual_seed(0)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        out = model(wavs, lengths, targets, generator=gen)
    out.loss.backward()
    assert out.mask_indices.is_cuda and torch.isfinite(out.loss)
    assert model.label_embs.grad is not None
