"""``Upstream.forward(..., max_layer=N)``: the first N+1 hidden states of a full pass, without
running the layers above N (HuBERT, MERT, BEATs and WavLM); other upstreams truncate a full pass."""

from __future__ import annotations

import pytest
import torch

from audiossl.upstream.baselines import build_baseline
from audiossl.upstream.encoder import EncoderUpstream
from audiossl.upstream.engine import forward_long
from audiossl.models.beats.model import build_beats, beats_tiny
from audiossl.models.hubert.model import HubertModel, hubert_tiny
from audiossl.models.wavlm.model import WavlmModel, wavlm_tiny

CONV = ((32, 10, 5),) + ((32, 3, 2),) * 4 + ((32, 2, 2),) * 2


def _hubert(layer_norm_first: bool) -> EncoderUpstream:
    torch.manual_seed(0)
    cfg = hubert_tiny(conv_layers=CONV, embed_dim=32, num_layers=4, num_heads=2, ffn_dim=64, pos_conv_kernel=16,
                      pos_conv_groups=4, layer_norm_first=layer_norm_first)
    return EncoderUpstream(HubertModel(cfg))


def _wavlm(layer_norm_first: bool) -> EncoderUpstream:
    torch.manual_seed(0)
    cfg = wavlm_tiny(conv_layers=CONV, embed_dim=32, num_layers=4, num_heads=2, ffn_dim=64, pos_conv_kernel=16,
                     pos_conv_groups=4, layer_norm_first=layer_norm_first)
    return EncoderUpstream(WavlmModel(cfg))


def _beats() -> EncoderUpstream:
    torch.manual_seed(0)
    return EncoderUpstream(build_beats(beats_tiny(encoder_layers=3)).encoder)


def _layers_run(up, encoder_layers, wavs, lengths, max_layer):
    ran = []
    hooks = [layer.register_forward_hook(lambda m, i, o, k=k: ran.append(k)) for k, layer in enumerate(encoder_layers)]
    try:
        out = up(wavs, lengths, max_layer=max_layer)
    finally:
        for h in hooks:
            h.remove()
    return out, ran


@pytest.mark.parametrize("make", [lambda: _hubert(False), lambda: _hubert(True), _beats, lambda: _wavlm(False), lambda: _wavlm(True)],
                         ids=["post-ln", "pre-ln", "beats", "wavlm-post-ln", "wavlm-pre-ln"])
def test_early_exit_equals_full_pass_and_skips_the_top(make):
    up = make()
    layers = up.model.encoder.layers
    wavs = torch.randn(2, 24000)
    lengths = torch.tensor([24000, 17000])
    full, ran_all = _layers_run(up, layers, wavs, lengths, None)
    assert ran_all == list(range(len(layers)))
    for max_layer in range(up.num_layers):
        part, ran = _layers_run(up, layers, wavs, lengths, max_layer)
        assert len(part.hidden_states) == max_layer + 1
        assert ran == list(range(max_layer))  # hidden_states[k] is the output of layer k - 1
        for a, b in zip(part.hidden_states, full.hidden_states):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
        assert torch.equal(part.lengths, full.lengths)


def test_chunked_early_exit_equals_chunked_full_pass():
    up = _hubert(False)
    wav = torch.randn(16000 * 4)
    full = forward_long(up, wav, chunk_seconds=1.0, overlap_seconds=0.2)
    part = forward_long(up, wav, chunk_seconds=1.0, overlap_seconds=0.2, max_layer=2)
    assert len(part) == 3
    for a, b in zip(part, full):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_upstreams_without_early_exit_truncate_and_bad_layers_are_refused():
    fb = build_baseline("fbank")
    wavs = torch.randn(1, 16000)
    assert len(fb(wavs, max_layer=0).hidden_states) == 1
    up = _hubert(False)
    with pytest.raises(ValueError, match="max_layer 5 out of range 0..4"):
        up(wavs, max_layer=5)
    with pytest.raises(ValueError, match="out of range"):
        up(wavs, max_layer=-1)
