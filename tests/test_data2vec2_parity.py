"""data2vec 2.0 encoder parity with ``transformers.Data2VecAudioModel`` (random weights with non-identity
norms and biases, a padded batch), and ``export_hf`` round trips through ``from_pretrained``."""

from __future__ import annotations

import pytest
import torch

from tests.parity_utils import assert_padded_batch_matches_single, randomize_affine

transformers = pytest.importorskip("transformers")

LENGTHS = [16000, 11000, 7300]


def _hf_model(seed: int = 0):
    cfg = transformers.Data2VecAudioConfig(
        hidden_size=64, num_hidden_layers=3, num_attention_heads=4, intermediate_size=128,
        conv_dim=(32, 32, 32, 32, 32, 32, 32), conv_bias=True, num_conv_pos_embeddings=3, conv_pos_kernel_size=5,
        num_conv_pos_embedding_groups=4, mask_time_prob=0.0, layerdrop=0.0,
    )
    torch.manual_seed(seed)
    return randomize_affine(transformers.Data2VecAudioModel(cfg).eval(), seed)


def _batch():
    g = torch.Generator().manual_seed(1)
    wavs = torch.randn(len(LENGTHS), max(LENGTHS), generator=g)
    lengths = torch.tensor(LENGTHS)
    return wavs * (torch.arange(wavs.shape[1])[None] < lengths[:, None]), lengths


def _hf_states(hf, wavs, lengths):
    mask = (torch.arange(wavs.shape[1])[None] < lengths[:, None]).long()
    with torch.no_grad():
        return hf(wavs, attention_mask=mask, output_hidden_states=True).hidden_states


def test_hf_weights_give_equal_hidden_states_on_a_padded_batch():
    """Unpadded: equal to HF's batch. Padded: each item equals HF run on that item alone. (HF's own padded
    batch differs from its single items in the last frames: its stacked positional convs carry the
    padding's non-zero outputs into the item; ours re-zero padding between blocks, see conv_pos.py.)"""
    from audiossl.models.data2vec2.hf import hf_to_ours

    hf = _hf_model()
    ours = hf_to_ours(hf)
    assert not ours.cfg.use_alibi and ours.cfg.pos_conv_depth == 3 and ours.cfg.conv_bias
    wavs, lengths = _batch()
    full = torch.full_like(lengths, wavs.shape[1])
    ref = _hf_states(hf, wavs, full)
    with torch.no_grad():
        unpadded = ours(wavs, None)
        out = ours(wavs, lengths)
    assert len(unpadded.hidden_states) == len(ref) == 4
    for k, (a, b) in enumerate(zip(unpadded.hidden_states, ref)):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0, msg=lambda m: f"layer {k}: {m}")
    frames = out.lengths.tolist()
    # masked vs unmasked attention sums in another order: a few 1e-5 of rounding
    assert_padded_batch_matches_single(
        out.hidden_states, frames, lambda i: _hf_states(hf, wavs[i : i + 1, : LENGTHS[i]], lengths[i : i + 1]), atol=3e-5
    )


def test_export_hf_loads_with_from_pretrained_and_gives_equal_outputs(tmp_path):
    from audiossl.models.data2vec2 import build_data2vec2, data2vec2_tiny
    from audiossl.models.data2vec2.hf import export_hf

    torch.manual_seed(0)
    model = build_data2vec2(data2vec2_tiny(use_alibi=False, conv_bias=True)).eval()
    randomize_affine(model.encoder, 3)
    out_dir = export_hf(model, tmp_path / "hf")
    hf = transformers.Data2VecAudioModel.from_pretrained(out_dir).eval()
    fe = transformers.Wav2Vec2FeatureExtractor.from_pretrained(out_dir)
    assert fe.do_normalize is True and hf.config.num_conv_pos_embeddings == 2 and hf.config.conv_pos_kernel_size == 5
    wavs, lengths = _batch()
    with torch.no_grad():
        out = model.encoder(wavs, lengths)
    assert_padded_batch_matches_single(
        out.hidden_states, out.lengths.tolist(), lambda i: _hf_states(hf, wavs[i : i + 1, : LENGTHS[i]], lengths[i : i + 1]), atol=3e-5
    )
    # the exported directory is also an `hf:` upstream, equal to ours (waveform normalisation included)
    from audiossl.upstream.encoder import EncoderUpstream
    from audiossl.upstream.load import load_upstream

    up, ours = load_upstream(f"hf:{out_dir}"), EncoderUpstream(model.encoder.eval())
    assert up.num_layers == ours.num_layers == 4
    with torch.no_grad():
        a, b = up(wavs[:1], lengths[:1]), ours(wavs[:1], lengths[:1])
    for x, y in zip(a.hidden_states, b.hidden_states, strict=True):
        torch.testing.assert_close(x, y, atol=3e-5, rtol=0)


def test_export_refuses_alibi_models(tmp_path):
    from audiossl.models.data2vec2 import Data2Vec2Model, data2vec2_tiny
    from audiossl.models.data2vec2.hf import export_hf

    with pytest.raises(ValueError, match="ALiBi"):
        export_hf(Data2Vec2Model(data2vec2_tiny()), tmp_path / "hf")
    assert not (tmp_path / "hf").exists()
