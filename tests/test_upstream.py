"""The upstream contract: load_upstream specs, shapes, frame counts, padding, baselines."""

from __future__ import annotations

import json

import pytest
import torch

from audiossl.upstream.encoder import EncoderUpstream

from audiossl.upstream.load import load_upstream

from audiossl.audio.normalize import normalize_waveform
from audiossl.models.checkpoint import save_checkpoint
from audiossl.models.hubert.model import HubertModel, hubert_tiny

CONV = ((32, 10, 5),) + ((32, 3, 2),) * 4 + ((32, 2, 2),) * 2


def tiny(**kw):
    base = dict(conv_layers=CONV, embed_dim=32, num_layers=2, num_heads=2, ffn_dim=64, pos_conv_kernel=16, pos_conv_groups=4)
    base.update(kw)
    return hubert_tiny(**base)


@pytest.fixture
def ckpt(tmp_path):
    torch.manual_seed(0)
    return save_checkpoint(HubertModel(tiny()), tmp_path / "ckpt")


@pytest.mark.parametrize("spec,dim", [("fbank", 80), ("mfcc", 39), ("fbank:40", 40)])
def test_baseline_shapes_and_rate(spec, dim):
    up = load_upstream(spec)
    assert up.frame_rate == 100.0 and up.num_layers == 1 and up.hidden_dim == dim and up.sample_rate == 16000
    wavs = torch.randn(3, 16000)
    lengths = torch.tensor([16000, 8000, 300])
    out = up(wavs, lengths)
    assert len(out.hidden_states) == 1
    assert out.hidden_states[0].shape == (3, 98, dim)
    assert out.lengths.tolist() == [98, 48, 0] == [up.num_frames(n) for n in lengths.tolist()]
    # padding never changes a valid frame; without CMVN the utterance mean keeps the spectrum
    single = up(wavs[1:2, :8000]).hidden_states[0]
    torch.testing.assert_close(out.hidden_states[0][1, :48], single[0], atol=1e-4, rtol=0)
    assert out.hidden_states[0][0].mean(0).abs().max() > 1e-2
    assert torch.all(out.hidden_states[0][2] == 0)
    cmvn = load_upstream(spec + "+cmvn")
    assert cmvn.name.endswith("+cmvn")
    assert cmvn(wavs, lengths).hidden_states[0][0].mean(0).abs().max() < 1e-4


def test_bad_baseline_spec():
    with pytest.raises(ValueError, match="fbank:<num_mel_bins>"):
        load_upstream("fbank:abc")


def test_checkpoint_upstream_contract(ckpt):
    up = load_upstream(str(ckpt))
    assert up.name == f"hubert:{ckpt}"
    assert (up.sample_rate, up.frame_rate, up.num_layers, up.hidden_dim) == (16000, 50.0, 3, 32)
    assert not up.training and not any(p.requires_grad for p in up.parameters())
    wavs = torch.randn(2, 16000, requires_grad=True)
    out = up(wavs, torch.tensor([16000, 12000]))
    assert len(out.hidden_states) == up.num_layers
    assert all(h.shape == (2, up.num_frames(16000), 32) for h in out.hidden_states)
    assert out.lengths.tolist() == [up.num_frames(16000), up.num_frames(12000)] == [49, 37]
    assert not out.hidden_states[-1].requires_grad


@pytest.mark.parametrize("mode,pre_ln", [("group_norm", False), ("layer_norm", True)])
def test_padded_batch_equals_one_by_one(tmp_path, mode, pre_ln):
    torch.manual_seed(1)
    up = EncoderUpstream(HubertModel(tiny(extractor_mode=mode, layer_norm_first=pre_ln)))
    lens = [16000, 11000, 5000]
    wavs = torch.zeros(3, 16000)
    for i, n in enumerate(lens):
        wavs[i, :n] = torch.randn(n)
    out = up(wavs, torch.tensor(lens))
    for i, n in enumerate(lens):
        single = up(wavs[i : i + 1, :n])
        t = up.num_frames(n)
        for h_b, h_s in zip(out.hidden_states, single.hidden_states):
            torch.testing.assert_close(h_b[i, :t], h_s[0], atol=1e-5, rtol=1e-4)


def test_too_short_batch_gives_zero_frames(ckpt):
    up = load_upstream(str(ckpt))
    out = up(torch.randn(2, 300), torch.tensor([300, 200]))
    assert out.lengths.tolist() == [0, 0] and all(h.shape == (2, 0, 32) for h in out.hidden_states)


def test_normalize_flag_from_checkpoint_extra(tmp_path):
    torch.manual_seed(0)
    path = save_checkpoint(HubertModel(tiny()), tmp_path / "n", extra={"normalize": True})
    up = load_upstream(str(path))
    assert up.normalize
    x = torch.randn(1, 8000)
    a = up(x).hidden_states[-1]
    b = up(3.0 * x + 0.5).hidden_states[-1]  # scale/offset removed by the normalisation
    torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-3)


def test_normalize_waveform_ignores_padding():
    x = torch.randn(2, 1000)
    x[1, 600:] = 0
    y = normalize_waveform(x, torch.tensor([1000, 600]))
    assert abs(float(y[1, :600].mean())) < 1e-5 and abs(float(y[1, :600].std(unbiased=False)) - 1) < 1e-3
    assert torch.all(y[1, 600:] == 0)


def test_bad_specs_have_clear_errors(tmp_path, ckpt):
    with pytest.raises(FileNotFoundError, match="no such checkpoint directory"):
        load_upstream(str(tmp_path / "nope"))
    f = tmp_path / "model.pt"
    f.write_bytes(b"x")
    with pytest.raises(ValueError, match="fairseq:"):
        load_upstream(str(f))
    hf_like = tmp_path / "hfdir"
    hf_like.mkdir()
    (hf_like / "config.json").write_text(json.dumps({"model_type": "hubert"}))
    with pytest.raises(ValueError, match="hf:"):
        load_upstream(str(hf_like))
    other = tmp_path / "w2v9"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"family": "wav2vec9"}))
    with pytest.raises(ValueError, match="model family 'wav2vec9': choose one of"):
        load_upstream(str(other))
    half = tmp_path / "beats"
    half.mkdir()
    (half / "config.json").write_text(json.dumps({"family": "beats"}))
    with pytest.raises(ValueError, match="format_version"):
        load_upstream(str(half))
