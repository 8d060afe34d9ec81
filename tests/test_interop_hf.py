"""transformers interop: our HuBERT ⇄ HubertModel (both ways), wav2vec2 / WavLM / data2vec-audio import."""

from __future__ import annotations

import pytest
import torch
import transformers

from audiossl.upstream.encoder import EncoderUpstream

from audiossl.upstream.load import load_upstream
from audiossl.interop.hf import HFUpstream, hf_upstream_from_model
from audiossl.models.hubert.hf import export_hf, hf_to_ours
from audiossl.models.hubert.model import build_hubert, hubert_tiny
from tests.parity_utils import assert_padded_batch_matches_single, randomize_affine

CONV = ((32, 10, 5),) + ((32, 3, 2),) * 4 + ((32, 2, 2),) * 2
HF_TINY = dict(
    hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
    conv_dim=[32] * 7, conv_kernel=[10, 3, 3, 3, 3, 2, 2], conv_stride=[5, 2, 2, 2, 2, 2, 2],
    num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4, vocab_size=8,
)


def tiny(**kw):
    base = dict(conv_layers=CONV, embed_dim=32, num_layers=2, num_heads=2, ffn_dim=64, pos_conv_kernel=16, pos_conv_groups=4)
    base.update(kw)
    return hubert_tiny(**base)


def max_diff(a, b) -> float:
    return max(float((x - y).abs().max()) for x, y in zip(a, b))


def hf_hidden(model, wavs):
    with torch.no_grad():
        return model(wavs, output_hidden_states=True).hidden_states


@pytest.mark.parametrize("mode,pre_ln", [("group_norm", False), ("layer_norm", True)])
def test_export_loads_in_transformers_with_equal_hidden_states(tmp_path, mode, pre_ln):
    torch.manual_seed(0)
    model = randomize_affine(build_hubert(tiny(extractor_mode=mode, layer_norm_first=pre_ln, conv_bias=pre_ln)).eval())
    out = export_hf(model, tmp_path / "hf")
    hf = transformers.HubertModel.from_pretrained(out).eval()
    assert hf.config.do_stable_layer_norm == pre_ln
    wavs = torch.randn(2, 12000)
    ours = EncoderUpstream(model.encoder)(wavs).hidden_states
    theirs = hf_hidden(hf, wavs)
    assert len(theirs) == len(ours) == 3
    assert max_diff(ours, theirs) <= 1e-4
    assert float(ours[-1].std()) > 0.1  # real activations, not zeros
    # and the comparison can fail: a different random model is far away
    other = EncoderUpstream(build_hubert(tiny(extractor_mode=mode, layer_norm_first=pre_ln, conv_bias=pre_ln)).encoder)
    assert max_diff(other(wavs).hidden_states[1:], theirs[1:]) > 1e-2
    # a padded batch, item by item, equals transformers on each item alone
    lengths = [12000, 7777, 3000]
    padded = torch.randn(3, 12000)
    for i, n in enumerate(lengths):
        padded[i, n:] = 0.0
    batch = EncoderUpstream(model.encoder)(padded, torch.tensor(lengths))
    assert_padded_batch_matches_single(batch.hidden_states, batch.lengths.tolist(),
                                       lambda i: hf_hidden(hf, padded[i : i + 1, : lengths[i]]))
    # and the exported directory round-trips through the hf: spec
    again = load_upstream(f"hf:{out}")
    assert max_diff(again(wavs).hidden_states, ours) <= 1e-5


@pytest.mark.parametrize("stable", [False, True])
def test_import_transformers_hubert(stable):
    torch.manual_seed(0)
    cfg = transformers.HubertConfig(**HF_TINY, do_stable_layer_norm=stable,
                                    feat_extract_norm="layer" if stable else "group", conv_bias=stable)
    hf = randomize_affine(transformers.HubertModel(cfg).eval(), seed=3)
    up = hf_upstream_from_model(hf, "hf:test")
    assert isinstance(up, EncoderUpstream) and up.num_layers == 3 and up.hidden_dim == 32
    wavs = torch.randn(2, 9000)
    assert max_diff(up(wavs).hidden_states, hf_hidden(hf, wavs)) <= 1e-4


def test_import_wav2vec2_converts_to_our_encoder():
    torch.manual_seed(0)
    hf = transformers.Wav2Vec2Model(transformers.Wav2Vec2Config(**HF_TINY)).eval()
    ours = hf_to_ours(hf)
    wavs = torch.randn(1, 8000)
    assert max_diff(EncoderUpstream(ours)(wavs).hidden_states, hf_hidden(hf, wavs)) <= 1e-4


@pytest.mark.parametrize("name", ["wavlm", "data2vec-audio"])
def test_import_wavlm_and_data2vec(tmp_path, name):
    torch.manual_seed(0)
    if name == "wavlm":
        hf = transformers.WavLMModel(
            transformers.WavLMConfig(**HF_TINY, num_buckets=16, max_bucket_distance=64, feat_extract_norm="layer")
        )
    else:
        hf = transformers.Data2VecAudioModel(transformers.Data2VecAudioConfig(**HF_TINY, conv_pos_kernel_size=5))
    hf.save_pretrained(tmp_path / name)
    transformers.Wav2Vec2FeatureExtractor(do_normalize=True).save_pretrained(tmp_path / name)
    up = load_upstream(f"hf:{tmp_path / name}")
    # WavLM runs on our encoder (audiossl.models.wavlm), data2vec-audio as the HF module
    assert isinstance(up, EncoderUpstream if name == "wavlm" else HFUpstream)
    assert up.normalize and up.num_layers == 3 and up.frame_rate == 50.0
    ref = type(hf).from_pretrained(tmp_path / name).eval()
    wavs = torch.randn(2, 10000) * 3 + 1
    lengths = torch.tensor([10000, 10000])
    normed = (wavs - wavs.mean(1, keepdim=True)) / torch.sqrt(wavs.var(1, unbiased=False, keepdim=True) + 1e-5)
    out = up(wavs, lengths)
    assert max_diff(out.hidden_states, hf_hidden(ref, normed)) <= 1e-4
    assert out.lengths.tolist() == [up.num_frames(10000)] * 2 == [31, 31]
    # padding: the valid frames of a padded item match its own single pass (layer-norm front end);
    # data2vec's positional conv stack sees padding, so the extractor runs it one item at a time
    assert up.padding_invariant == (name == "wavlm")
    if not up.padding_invariant:
        return
    short = up(wavs[1:, :6000]).hidden_states
    padded = up(torch.cat([wavs[:1], torch.nn.functional.pad(wavs[1:, :6000], (0, 4000))]), torch.tensor([10000, 6000]))
    t = up.num_frames(6000)
    assert padded.lengths.tolist() == [31, t]
    assert max_diff([h[1:, :t] for h in padded.hidden_states], short) <= 1e-4


def test_unsupported_model_type_is_named(tmp_path):
    (tmp_path / "config.json").write_text('{"model_type": "whisper"}')
    with pytest.raises(ValueError, match="whisper"):
        load_upstream(f"hf:{tmp_path}")
