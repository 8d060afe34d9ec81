"""WavLM: config, encoder, utterance mixing (what is drawn, measured back; no host sync), FLOPs."""

from __future__ import annotations

import math

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from audiossl.models.families import get_family
from audiossl.models.wavlm import MixConfig, WavlmConfig, build_wavlm, mix_utterances, wavlm_base, wavlm_base_plus, wavlm_large, wavlm_tiny
from audiossl.models.wavlm.flops import forward_flops, train_flops, wavlm_train_flops_per_second


def _batch(b: int = 6, s: int = 8000, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(s // 4, s + 1, (b,), generator=g)
    lengths[0] = s
    wavs = torch.rand(b, s, generator=g) * 2 - 1
    wavs = wavs * (torch.arange(s)[None, :] < lengths[:, None])  # zero padding
    return wavs, lengths


def test_configs_and_family_registration():
    fam = get_family("wavlm")
    assert set(fam.CONFIGS) == {"tiny", "base", "base_plus", "large"}
    base, plus, large = wavlm_base(), wavlm_base_plus(), wavlm_large()
    assert (base.num_layers, base.embed_dim, base.layer_norm_first, base.extractor_mode) == (12, 768, False, "group_norm")
    assert plus == base  # Base+ differs from Base in data and schedule only
    assert (large.num_layers, large.embed_dim, large.layer_norm_first, large.extractor_mode) == (24, 1024, True, "layer_norm")
    assert (base.num_buckets, base.max_distance, base.gru_rel_pos, base.mix_prob, base.mix_max_ratio) == (320, 800, True, 0.2, 0.5)
    cfg = wavlm_tiny(mix_energy_db=(-3, 2))
    assert WavlmConfig.from_dict(cfg.to_dict()) == cfg and WavlmConfig.family == "wavlm"
    with pytest.raises(ValueError, match="mix_max_ratio"):
        wavlm_tiny(mix_max_ratio=1.5)
    with pytest.raises(ValueError, match="attention_impl"):
        wavlm_tiny(attention_impl="fast")
    with pytest.raises(ValueError, match="unknown WavlmConfig fields"):
        WavlmConfig.from_dict({"mix_probability": 0.1})


def test_only_layer_zero_owns_the_bias_table_and_every_layer_has_its_gate():
    enc = build_wavlm(wavlm_tiny(num_layers=3)).encoder
    names = [n for n, _ in enc.named_parameters()]
    assert [n for n in names if "relative_attention_bias" in n] == ["encoder.layers.0.self_attn.relative_attention_bias.weight"]
    assert sum("grep_linear.weight" in n for n in names) == sum("grep_a" in n for n in names) == 3


def test_encoder_hidden_states_and_padding():
    torch.manual_seed(0)
    enc = build_wavlm(wavlm_tiny()).encoder.eval()
    wavs, lengths = _batch(3, 9000)
    with torch.no_grad():
        states, frames = enc.layer_states(wavs, lengths)
        alone = enc.layer_states(wavs[2:, : int(lengths[2])], None)[0]
    assert len(states) == enc.num_hidden_states == 3 and states[0].shape == (3, enc.num_frames(9000), 128)
    t = int(frames[2])
    assert t == enc.num_frames(int(lengths[2]))
    for a, b in zip(states, alone):
        torch.testing.assert_close(a[2:, :t], b, atol=1e-5, rtol=0)
    # the relative bias matters: another random table changes the output
    with torch.no_grad():
        enc.encoder.layers[0].self_attn.relative_attention_bias.weight.normal_()
        assert (enc.layer_states(wavs, lengths)[0][-1] - states[-1]).abs().max() > 1e-3


def test_mixing_draws_are_what_the_output_holds():
    wavs, lengths = _batch(64, 4000)
    g = torch.Generator().manual_seed(1)
    res = mix_utterances(wavs, lengths, MixConfig(prob=0.6), generator=g)
    x, out = wavs, res.wavs
    assert out.dtype == wavs.dtype and not torch.equal(out, wavs) and res.mixed.any() and (~res.mixed).any()
    # items with mixing off are untouched (bit for bit)
    assert torch.equal(out[~res.mixed], x[~res.mixed])
    for i in torch.nonzero(res.mixed).flatten().tolist():
        n, s0, src = int(lengths[i]), int(res.start[i]), int(res.source[i])
        ln, ss = int(res.length[i]), int(res.src_start[i])
        assert 0 < ln <= math.floor(0.5 * n) and s0 + ln <= n  # ≤ 50 % of the primary, inside its valid samples
        assert src != i and ss + ln <= int(lengths[src])  # another utterance, inside its valid samples
        diff = out[i] - x[i]
        assert diff[:s0].abs().max() == 0 and diff[s0 + ln:].abs().max() == 0  # padding stays zero too
        seg = x[src, ss : ss + ln]
        gain = diff[s0 : s0 + ln].dot(seg) / seg.dot(seg)
        torch.testing.assert_close(diff[s0 : s0 + ln], gain * seg, atol=1e-5, rtol=0)  # a scaled copy of the source
        measured = 10 * math.log10(float(x[i, :n].pow(2).mean()) / float(diff[s0 : s0 + ln].pow(2).mean()))
        assert measured == pytest.approx(float(res.ratio_db[i]), abs=1e-3)  # the energy ratio is as drawn
        assert -5.0 <= float(res.ratio_db[i]) <= 5.0


def test_mixing_statistics_and_noise():
    wavs, lengths = _batch(4000, 400, seed=2)
    res = mix_utterances(wavs, lengths, MixConfig(prob=0.2), generator=torch.Generator().manual_seed(0))
    assert abs(res.mixed.float().mean() - 0.2) < 0.03
    frac = (res.length[res.mixed].float() / lengths[res.mixed].float())
    assert frac.max() <= 0.5 and abs(frac.mean() - 0.25) < 0.03  # uniform up to 50 %
    r = res.ratio_db[res.mixed]
    assert r.min() >= -5 and r.max() <= 5 and abs(r.mean()) < 0.5
    noisy = mix_utterances(wavs[:50], lengths[:50], MixConfig(prob=1.0, noise_share=1.0), generator=torch.Generator().manual_seed(0))
    assert noisy.noise.equal(noisy.mixed) and noisy.mixed.sum() > 40
    i = int(torch.nonzero(noisy.mixed)[0])
    s0, ln, n = int(noisy.start[i]), int(noisy.length[i]), int(lengths[i])
    d = noisy.wavs[i] - wavs[i]
    measured = 10 * math.log10(float(wavs[i, :n].pow(2).mean()) / float(d[s0 : s0 + ln].pow(2).mean()))
    assert measured == pytest.approx(float(noisy.ratio_db[i]), abs=1e-3)
    single = mix_utterances(wavs[:1], lengths[:1], MixConfig(prob=1.0), generator=torch.Generator().manual_seed(0))
    assert not single.mixed.any() and torch.equal(single.wavs, wavs[:1])  # nobody else to mix in


def test_pretrain_model_mixes_in_training_only_and_keeps_the_targets(monkeypatch):
    from audiossl.models.hubert.model import HubertPretrainModel

    seen = []
    original = HubertPretrainModel.forward

    def spy(self, wavs, lengths, targets, **kw):
        seen.append((wavs.clone(), targets.clone()))
        return original(self, wavs, lengths, targets, **kw)

    monkeypatch.setattr(HubertPretrainModel, "forward", spy)
    torch.manual_seed(0)
    model = build_wavlm(wavlm_tiny(mix_prob=1.0, num_classes=20))
    wavs, lengths = _batch(4, 8000)
    targets = torch.randint(0, 20, (4, model.encoder.num_frames(8000)))
    model.train()(wavs, lengths, targets)
    model.eval()(wavs, lengths, targets)
    (w_train, t_train), (w_eval, t_eval) = seen
    assert torch.equal(t_train, targets) and torch.equal(t_eval, targets)  # the primary's units, untouched
    assert not torch.equal(w_train, wavs) and torch.equal(w_eval, wavs)  # no mixing in eval mode
    model = build_wavlm(wavlm_tiny(mix_prob=0.0, num_classes=20)).train()
    model(wavs, lengths, targets)
    assert torch.equal(seen[-1][0], wavs)


def test_mixing_and_training_step_read_nothing_back_to_the_host():
    """Under FakeTensorMode every ``.item()`` / data-dependent shape raises (see tests/test_step_host_reads.py)."""
    torch.manual_seed(0)
    with FakeTensorMode():
        model = build_wavlm(wavlm_tiny(mix_prob=1.0, mix_noise_share=0.5)).train()
        wavs = torch.randn(3, 8000)
        lengths = 8000 - torch.randint(0, 2000, (3,))
        mixed = mix_utterances(wavs, lengths, MixConfig(prob=1.0, noise_share=0.5))
        assert mixed.wavs.shape == (3, 8000)
        t = model.encoder.num_frames(8000)
        out = model(wavs, lengths, torch.randint(0, 100, (3, t)))
        out.loss.backward()
    assert out.loss.shape == ()


@pytest.mark.parametrize("pre_ln", [False, True])
def test_flops_match_flop_counter_on_tiny_forward(pre_ln):
    cfg = wavlm_tiny(num_layers=3, pos_conv_kernel=31, layer_norm_first=pre_ln, attention_impl="eager")
    model = build_wavlm(cfg).eval()
    counter = FlopCounterMode(display=False)
    with sdpa_kernel(SDPBackend.MATH), counter, torch.no_grad():
        model.compute_logits(model.encoder(torch.randn(1, 24000)).hidden_states[-1])
    measured = counter.get_total_flops()
    assert abs(forward_flops(cfg, 24000) - measured) / measured < 0.01, (forward_flops(cfg, 24000), measured)


def test_base_flops_reference():
    from audiossl.models.hubert.flops import hubert_train_flops_per_second
    from audiossl.models.hubert.model import hubert_base

    per_s = wavlm_train_flops_per_second(wavlm_base())  # 10 s crops
    hubert = hubert_train_flops_per_second(hubert_base())
    assert hubert < per_s < 1.01 * hubert  # the gate adds 2·T·D·8 per layer: ~0.3 %
    assert abs(per_s / 1e9 - 44.56) < 0.05
    assert get_family("wavlm").train_flops_per_second(wavlm_base(), 160000) == per_s
    assert train_flops(wavlm_base(), 16000) == 3 * forward_flops(wavlm_base(), 16000) and forward_flops(wavlm_base(), 100) == 0


@pytest.mark.parametrize("pre_ln", [False, True])
def test_flex_attention_equals_eager_on_a_padded_batch(monkeypatch, pre_ln):
    """The flex path (flex's unfused eager fallback here: no C++ compile) gates with the layer input too."""
    import warnings

    from audiossl.models import rel_pos

    monkeypatch.setattr(rel_pos, "FLEX_COMPILE", False)
    warnings.filterwarnings("ignore", message=".*flex_attention.*")
    torch.manual_seed(0)
    eager = build_wavlm(wavlm_tiny(attention_impl="eager", layer_norm_first=pre_ln)).encoder.eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in eager.named_parameters():
            if "grep" in name or "relative_attention_bias" in name:
                p.copy_(torch.randn(p.shape, generator=g))
    flex = build_wavlm(wavlm_tiny(attention_impl="flex", layer_norm_first=pre_ln)).encoder.eval()
    flex.load_state_dict(eager.state_dict())
    wavs, lengths = _batch(3, 12000)
    with torch.no_grad():
        a, frames = eager.layer_states(wavs, lengths)
        b, _ = flex.layer_states(wavs, lengths)
    valid = torch.arange(a[0].shape[1])[None, :] < frames[:, None]
    assert max(float((x - y)[valid].abs().max()) for x, y in zip(a, b)) < 1e-5
