"""fairseq wav2vec 2.0 (Base: group norm, post-LN; Large: layer norm, pre-LN), WavLM (microsoft/unilm
and s3prl layout: flat ``cfg``) and data2vec-audio checkpoints load through ``fairseq:<file>``.

Each checkpoint is built here in the reference key layout (the names transformers' conversion
scripts read: convert_wav2vec2_original_pytorch_checkpoint_to_pytorch.py,
convert_wavlm_original_pytorch_checkpoint_to_pytorch.py,
convert_data2vec_audio_original_pytorch_checkpoint_to_pytorch.py) from a transformers model with
random non-trivial weights (LayerNorm affine, biases), and the upstream's hidden states are compared
with that transformers model's: max abs difference <= 1e-4, each item of a padded batch against
its own unpadded pass."""

from __future__ import annotations

import pytest
import torch
import transformers

from audiossl.upstream.load import load_upstream
from audiossl.models.fairseq_io import FairseqCheckpointError
from audiossl.interop.fairseq_w2v import hf_to_fairseq_state_dict

TOL = 1e-4
CONV = "[(32, 10, 5)] + [(32, 3, 2)] * 4 + [(32, 2, 2)] * 2"

# name → (transformers class, fairseq model cfg, extra checks on the written keys)
CASES = {
    "wav2vec2-base": ("wav2vec2", dict(extractor_mode="default", layer_norm_first=False, conv_bias=False),
                      ["feature_extractor.conv_layers.0.2.weight", "encoder.pos_conv.0.weight_g", "encoder.layers.1.fc1.bias"]),
    "wav2vec2-large": ("wav2vec2", dict(extractor_mode="layer_norm", layer_norm_first=True, conv_bias=True),
                       ["feature_extractor.conv_layers.6.2.1.bias", "feature_extractor.conv_layers.6.0.bias", "encoder.layer_norm.weight"]),
    "wavlm-base": ("wavlm", dict(extractor_mode="default", layer_norm_first=False, conv_bias=False, relative_position_embedding=True,
                                 gru_rel_pos=True, num_buckets=32, max_distance=64),
                   ["encoder.layers.1.self_attn.grep_linear.weight", "encoder.layers.1.self_attn.grep_a",
                    "encoder.layers.0.self_attn.relative_attention_bias.weight"]),
    "wavlm-large": ("wavlm", dict(extractor_mode="layer_norm", layer_norm_first=True, conv_bias=False, relative_position_embedding=True,
                                  gru_rel_pos=True, num_buckets=32, max_distance=64, normalize=True),
                    ["encoder.layers.0.self_attn.relative_attention_bias.weight"]),
    "data2vec-audio": ("data2vec-audio", dict(_name="data2vec_audio", extractor_mode="layer_norm", layer_norm_first=False,
                                              conv_bias=False, pos_conv_depth=5, conv_pos=15),
                       ["encoder.pos_conv.4.0.weight", "feature_extractor.conv_layers.0.2.1.weight"]),
}


def _fairseq_cfg(extra: dict) -> dict:
    return {"_name": "wav2vec2", "encoder_layers": 2, "encoder_embed_dim": 48, "encoder_ffn_embed_dim": 64,
            "encoder_attention_heads": 4, "conv_feature_layers": CONV, "conv_pos": 16, "conv_pos_groups": 4,
            "activation_fn": "gelu", **extra}


def _random_hf(kind: str, mc: dict):
    from audiossl.interop.fairseq_w2v import hf_config

    torch.manual_seed(0)
    cls = {"wav2vec2": transformers.Wav2Vec2Model, "wavlm": transformers.WavLMModel,
           "data2vec-audio": transformers.Data2VecAudioModel}[kind]
    model = cls(hf_config(kind, mc)).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name or name.endswith("bias") or "gru_rel_pos_const" in name:
                p.add_(0.2 * torch.randn_like(p))
    return model


def _save(tmp_path, name: str, mc: dict, sd: dict):
    path = tmp_path / f"{name}.pt"
    if name.startswith("wavlm"):  # microsoft/unilm (and s3prl wavlm_local) layout: flat cfg + model
        torch.save({"cfg": mc, "model": sd}, path)
    else:
        torch.save({"cfg": {"model": mc, "task": {"_name": "audio_pretraining", "normalize": False, "sample_rate": 16000}},
                    "model": sd, "args": None}, path)
    return path


@pytest.mark.parametrize("name", list(CASES))
def test_fairseq_checkpoint_matches_transformers(tmp_path, name):
    kind, extra, keys = CASES[name]
    mc = _fairseq_cfg(extra)
    hf = _random_hf(kind, mc)
    sd = hf_to_fairseq_state_dict(hf)
    for k in keys:  # the reference layout, not just our own inverse
        assert k in sd, k
    sd["quantizer.vars"] = torch.randn(1, 8, 4)  # pretraining-only tensors are ignored
    up = load_upstream(f"fairseq:{_save(tmp_path, name, mc, sd)}")
    assert (up.num_layers, up.hidden_dim, up.frame_rate) == (3, 48, 50.0)
    g = torch.Generator().manual_seed(1)
    lengths = torch.tensor([12000, 8000, 5000])
    wavs = torch.randn(3, 12000, generator=g) * (torch.arange(12000)[None] < lengths[:, None])
    out = up(wavs, lengths)
    for i, n in enumerate(lengths.tolist()):
        x = wavs[i : i + 1, :n]
        if mc.get("normalize"):
            x = (x - x.mean()) / torch.sqrt(x.var(unbiased=False) + 1e-5)
        with torch.no_grad():
            ref = hf(x, output_hidden_states=True).hidden_states
        t = int(out.lengths[i])
        assert t == ref[0].shape[1]
        for layer, (a, b) in enumerate(zip(out.hidden_states, ref)):
            assert float((a[i, :t] - b[0]).abs().max()) <= TOL, (name, i, layer)


def test_finetuned_wav2vec2_prefix_is_unwrapped(tmp_path):
    kind, extra, _ = CASES["wav2vec2-base"]
    mc = _fairseq_cfg(extra)
    hf = _random_hf(kind, mc)
    sd = {f"w2v_encoder.w2v_model.{k}": v for k, v in hf_to_fairseq_state_dict(hf).items()}
    sd["w2v_encoder.proj.weight"] = torch.randn(10, 48)
    path = tmp_path / "ctc.pt"
    torch.save({"cfg": {"model": {"_name": "wav2vec_ctc", "w2v_args": {"model": mc}}, "task": {}}, "model": sd}, path)
    x = torch.randn(1, 6000)
    with torch.no_grad():
        ref = hf(x, output_hidden_states=True).hidden_states[-1]
    assert float((load_upstream(f"fairseq:{path}")(x).hidden_states[-1] - ref).abs().max()) <= TOL


def test_config_that_does_not_match_the_weights_names_the_file(tmp_path):
    kind, extra, _ = CASES["wavlm-base"]
    mc = _fairseq_cfg(extra)
    sd = hf_to_fairseq_state_dict(_random_hf(kind, mc))
    path = _save(tmp_path, "wavlm-base", {**mc, "encoder_layers": 3}, sd)
    with pytest.raises(FairseqCheckpointError, match=rf"{path.name}.*missing keys.*encoder.layers.2"):
        load_upstream(f"fairseq:{path}")
