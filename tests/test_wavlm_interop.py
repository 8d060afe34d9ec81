"""WavLM parity: transformers ``WavLMModel`` ⇄ our encoder (both ways, padded batches), unilm ``WavLM-*.pt`` files."""

from __future__ import annotations

import pytest
import torch
import transformers

from audiossl.models.wavlm import build_wavlm, wavlm_tiny
from audiossl.models.wavlm.fairseq import export_fairseq, load_fairseq_wavlm, unilm_config
from audiossl.models.wavlm.hf import export_hf, hf_to_ours
from tests.parity_utils import assert_padded_batch_matches_single, randomize_affine

HF_TINY = dict(
    hidden_size=32, num_hidden_layers=3, num_attention_heads=2, intermediate_size=64,
    conv_dim=[32] * 7, conv_kernel=[10, 3, 3, 3, 3, 2, 2], conv_stride=[5, 2, 2, 2, 2, 2, 2],
    num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4, vocab_size=8, num_buckets=16, max_bucket_distance=40,
)
LENGTHS = [12000, 7777, 3000]


def _randomize_rel_pos(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Random bucket tables and gates (HF and ours name them differently), so a mapping slip shows."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if any(k in name for k in ("gru_rel_pos", "rel_attn_embed", "grep_", "relative_attention_bias")):
                p.copy_(torch.randn(p.shape, generator=g))
    return model


def _hf_model(stable: bool, seed: int = 0):
    torch.manual_seed(seed)
    cfg = transformers.WavLMConfig(**HF_TINY, do_stable_layer_norm=stable, feat_extract_norm="layer" if stable else "group",
                                   conv_bias=stable)
    return _randomize_rel_pos(randomize_affine(transformers.WavLMModel(cfg).eval(), seed=seed + 1), seed + 2)


def hf_hidden(model, wavs):
    with torch.no_grad():
        return model(wavs, output_hidden_states=True).hidden_states


def ours_hidden(model, wavs, lengths=None):
    with torch.no_grad():
        return model.layer_states(wavs, lengths)


def max_diff(a, b) -> float:
    assert len(a) == len(b)
    return max(float((x - y).abs().max()) for x, y in zip(a, b))


def _padded(seed: int = 5):
    g = torch.Generator().manual_seed(seed)
    wavs = torch.randn(3, LENGTHS[0], generator=g)
    for i, n in enumerate(LENGTHS):
        wavs[i, n:] = 0.0
    return wavs


@pytest.mark.parametrize("stable", [False, True])
def test_transformers_wavlm_loads_into_our_encoder(stable):
    hf = _hf_model(stable)
    ours = hf_to_ours(hf)
    assert ours.cfg.layer_norm_first == stable and (ours.cfg.num_buckets, ours.cfg.max_distance) == (16, 40)
    wavs = torch.randn(2, 12000)
    theirs = hf_hidden(hf, wavs)
    states, _ = ours_hidden(ours, wavs)
    assert len(states) == len(theirs) == 4
    assert max_diff(states, theirs) <= 1e-5
    assert float(theirs[-1].std()) > 0.1
    # the comparison can fail: other rel-pos tables / gates (all else equal) are far away
    other = _randomize_rel_pos(hf_to_ours(hf), seed=99)
    assert max_diff(ours_hidden(other, wavs)[0][1:], theirs[1:]) > 1e-3
    # a padded batch, item by item, equals transformers on each item alone
    padded = _padded()
    batch, frames = ours_hidden(ours, padded, torch.tensor(LENGTHS))
    assert_padded_batch_matches_single(batch, frames.tolist(), lambda i: hf_hidden(hf, padded[i : i + 1, : LENGTHS[i]]), atol=1e-5)


@pytest.mark.parametrize("stable", [False, True])
def test_our_wavlm_exports_to_transformers(tmp_path, stable):
    torch.manual_seed(0)
    cfg = wavlm_tiny(num_layers=3, layer_norm_first=stable, extractor_mode="layer_norm" if stable else "group_norm", conv_bias=stable)
    model = _randomize_rel_pos(randomize_affine(build_wavlm(cfg).eval(), seed=3), seed=4)
    out = export_hf(model, tmp_path / "hf")
    hf = transformers.WavLMModel.from_pretrained(out).eval()
    assert hf.config.do_stable_layer_norm == stable and hf.config.num_buckets == 320
    wavs = torch.randn(2, 12000)
    theirs = hf_hidden(hf, wavs)
    assert max_diff(ours_hidden(model.encoder, wavs)[0], theirs) <= 1e-5
    padded = _padded()
    batch, frames = ours_hidden(model.encoder, padded, torch.tensor(LENGTHS))
    assert_padded_batch_matches_single(batch, frames.tolist(), lambda i: hf_hidden(hf, padded[i : i + 1, : LENGTHS[i]]), atol=1e-5)
    # and back: transformers → ours gives the same weights
    again = hf_to_ours(hf, num_classes=cfg.num_classes)
    for k, v in model.encoder.state_dict().items():
        assert torch.equal(v, again.state_dict()[k]), k


def test_unilm_checkpoint_layout_loads_with_equal_outputs(tmp_path):
    """A unilm ``WavLM-*.pt`` ({'cfg': flat config, 'model': weights}) written from a converted random
    transformers model by the independent interop mapping, read onto our encoder."""
    from audiossl.interop.fairseq_w2v import hf_to_fairseq_state_dict

    hf = _hf_model(stable=False)
    ours_cfg = hf_to_ours(hf).cfg
    path = tmp_path / "WavLM-Tiny.pt"
    state = hf_to_fairseq_state_dict(hf)
    assert "encoder.layers.0.self_attn.relative_attention_bias.weight" in state and "encoder.layers.2.self_attn.grep_a" in state
    torch.save({"cfg": unilm_config(ours_cfg), "model": state}, path)
    ours, normalize = load_fairseq_wavlm(path)
    assert not normalize and ours.cfg.num_buckets == 16
    wavs = torch.randn(2, 9000)
    assert max_diff(ours_hidden(ours, wavs)[0], hf_hidden(hf, wavs)) <= 1e-5


def test_our_unilm_export_round_trips_and_reads_in_the_hf_route(tmp_path):
    from audiossl.interop.fairseq_w2v import load_fairseq_hf_model
    from audiossl.models.fairseq_io import FairseqCheckpointError

    torch.manual_seed(0)
    model = _randomize_rel_pos(randomize_affine(build_wavlm(wavlm_tiny(num_layers=3)).encoder.eval(), seed=7), seed=8)
    path = export_fairseq(model, tmp_path / "WavLM-Tiny.pt", normalize=True)
    raw = torch.load(path, weights_only=True)  # plain dicts and tensors only
    assert set(raw) == {"cfg", "model"} and raw["cfg"]["relative_position_embedding"]
    ours, normalize = load_fairseq_wavlm(path)
    assert normalize
    for k, v in model.state_dict().items():
        assert torch.equal(v, ours.state_dict()[k]), k
    hf, _ = load_fairseq_hf_model(path)  # transformers' reading of the same file agrees
    wavs = torch.randn(2, 9000)
    assert max_diff(ours_hidden(model, wavs)[0], hf_hidden(hf, wavs)) <= 1e-5
    # refusals name the file: a checkpoint without relative bias, weights that do not fit the cfg
    torch.save({"cfg": {**raw["cfg"], "relative_position_embedding": False}, "model": raw["model"]}, tmp_path / "w2v.pt")
    with pytest.raises(FairseqCheckpointError, match="w2v.pt.*relative_position_embedding"):
        load_fairseq_wavlm(tmp_path / "w2v.pt")
    torch.save({"cfg": {**raw["cfg"], "encoder_layers": 4}, "model": raw["model"]}, tmp_path / "bad.pt")
    with pytest.raises(FairseqCheckpointError, match="bad.pt.*missing keys"):
        load_fairseq_wavlm(tmp_path / "bad.pt")
