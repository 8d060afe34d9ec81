"""Released HF-format MERT: export → transformers HubertModel parity, round trip, refusals, upstream."""

from __future__ import annotations

import json

import pytest
import torch
import transformers

from audiossl.upstream.encoder import EncoderUpstream
from audiossl.upstream.load import load_upstream
from audiossl.models.mert.hf import MertFormatError, export_mert, load_mert_model
from audiossl.models.checkpoint import save_checkpoint
from audiossl.models.mert.model import build_mert, mert_tiny

CONV = ((32, 10, 5),) + ((32, 3, 2),) * 4 + ((32, 2, 2),) * 2


def tiny(**kw):
    base = dict(conv_layers=CONV, embed_dim=32, num_layers=2, num_heads=2, ffn_dim=64, pos_conv_kernel=16,
                pos_conv_groups=4, num_classes=16, cqt_bins=96, cqt_bins_per_octave=24)
    base.update(kw)
    return mert_tiny(**base)


def max_diff(a, b) -> float:
    return max(float((x - y).abs().max()) for x, y in zip(a, b))


def _ckpt(tmp_path, **kw):
    torch.manual_seed(0)
    model = build_mert(tiny(**kw)).eval()
    return model, save_checkpoint(model, tmp_path / "ckpt", extra={"step": 1})


def _hf_hubert_from_mert_dir(d):
    """transformers HubertModel built from the MERT config.json, loading the exported weights as they are."""
    from safetensors.torch import load_file

    c = json.loads((d / "config.json").read_text())
    assert c["model_type"] == "mert_model" and c["sample_rate"] == 24000
    fields = {k: v for k, v in c.items() if k in transformers.HubertConfig().to_dict() and k != "model_type"}
    hf = transformers.HubertModel(transformers.HubertConfig(**fields)).eval()
    state = load_file(str(d / "model.safetensors"))
    missing, unexpected = hf.load_state_dict(state, strict=False)
    assert not unexpected and not missing, (missing, unexpected)
    return hf


@pytest.mark.parametrize("kw", [{}, dict(extractor_mode="layer_norm", conv_bias=True, layer_norm_first=True, attention_relax=32.0)])
def test_export_matches_transformers_hubert(tmp_path, kw):
    model, ckpt = _ckpt(tmp_path, **kw)
    out = export_mert(ckpt, tmp_path / "released")
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors", "preprocessor_config.json"]
    hf = _hf_hubert_from_mert_dir(out)
    wavs = torch.randn(2, 24000)
    with torch.no_grad():
        ours = model.encoder(wavs).hidden_states
        theirs = hf(wavs, output_hidden_states=True).hidden_states
    assert len(ours) == len(theirs) == 3
    assert max_diff(ours, theirs) <= 1e-4
    assert float(ours[-1].std()) > 0.1
    # the comparison can fail: another random model is far away
    torch.manual_seed(1)
    other = build_mert(tiny(**kw)).eval()
    with torch.no_grad():
        assert max_diff(other.encoder(wavs).hidden_states[1:], theirs[1:]) > 1e-2


def test_round_trip_equal_and_upstream(tmp_path):
    model, ckpt = _ckpt(tmp_path, attention_relax=8.0)
    out = export_mert(ckpt, tmp_path / "released")
    again, normalize = load_mert_model(out)
    assert normalize is False and again.cfg.attention_relax == 8.0 and again.frame_rate == 75.0
    sd = model.encoder.state_dict()
    assert sd.keys() == again.state_dict().keys()
    assert all(torch.equal(sd[k], v) for k, v in again.state_dict().items())
    up = load_upstream(f"mert:{out}")
    assert up.sample_rate == 24000 and up.frame_rate == 75.0 and up.num_layers == 3
    wavs, lengths = torch.randn(2, 12000), torch.tensor([12000, 9000])
    got = up(wavs, lengths)
    with torch.no_grad():
        want = model.encoder(wavs, lengths).hidden_states
    assert got.lengths.tolist() == [model.encoder.num_frames(12000), model.encoder.num_frames(9000)]
    assert max_diff(got.hidden_states, want) <= 1e-5
    # our own checkpoint directory: the family's encoder in the generic wrapper
    own = load_upstream(str(ckpt))
    assert isinstance(own, EncoderUpstream) and type(own.model).__name__ == "MertModel" and own.sample_rate == 24000
    assert max_diff(own(wavs, lengths).hidden_states, want) <= 1e-6


def test_pytorch_bin_and_prefixed_legacy_keys(tmp_path):
    from safetensors.torch import load_file

    model, ckpt = _ckpt(tmp_path)
    out = export_mert(ckpt, tmp_path / "released")
    state = load_file(str(out / "model.safetensors"))
    legacy = {}
    for k, v in state.items():
        k = k.replace("parametrizations.weight.original0", "weight_g").replace("parametrizations.weight.original1", "weight_v")
        legacy["mert." + k] = v
    (out / "model.safetensors").unlink()
    torch.save(legacy, out / "pytorch_model.bin")
    pre = json.loads((out / "preprocessor_config.json").read_text())
    (out / "preprocessor_config.json").write_text(json.dumps(pre | {"do_normalize": True}))
    again, normalize = load_mert_model(out)
    assert normalize is True
    assert all(torch.equal(model.encoder.state_dict()[k], v) for k, v in again.state_dict().items())
    assert load_upstream(f"mert:{out}").normalize is True


def test_refusals_name_the_field(tmp_path):
    model, ckpt = _ckpt(tmp_path)
    out = export_mert(ckpt, tmp_path / "released")
    c = json.loads((out / "config.json").read_text())
    for key in ("feature_extractor_cqt", "conv_pos_batch_norm", "deepnorm"):
        (out / "config.json").write_text(json.dumps(c | {key: True}))
        with pytest.raises(MertFormatError, match=key):
            load_mert_model(out)
    (out / "config.json").write_text(json.dumps(c | {"model_type": "hubert"}))
    with pytest.raises(MertFormatError, match="expected 'mert_model'"):
        load_mert_model(out)
    (out / "config.json").write_text(json.dumps(c | {"num_hidden_layers": 1}))
    with pytest.raises(MertFormatError, match="encoder.layers.1"):
        load_mert_model(out)
    (out / "config.json").write_text(json.dumps(c))
    (out / "model.safetensors").unlink()
    with pytest.raises(MertFormatError, match="neither model.safetensors nor pytorch_model.bin"):
        load_mert_model(out)
    # a pickle that is more than tensors is refused, never run
    (out / "pytorch_model.bin").write_bytes(b"\x80\x04\x95\x10\x00\x00\x00\x00\x00\x00\x00\x8c\x02os\x8c\x06system\x93.")
    with pytest.raises(MertFormatError, match="weights_only"):
        load_mert_model(out)


_RELEASED_COMMON = dict(
    model_type="mert_model", sample_rate=24000, conv_dim=[512] * 7, conv_kernel=[10, 3, 3, 3, 3, 2, 2],
    conv_stride=[5, 2, 2, 2, 2, 2, 2], conv_bias=False, feat_extract_norm="group", feat_extract_activation="gelu",
    hidden_act="gelu", num_conv_pos_embeddings=128, num_conv_pos_embedding_groups=16, feat_proj_layer_norm=True,
)
# the architecture fields of m-a-p/MERT-v1-95M and -330M config.json (and yizhilll/MERT scripts/hf_config)
RELEASED = {
    "95m": dict(_RELEASED_COMMON, hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
                do_stable_layer_norm=False, attention_relax=-1.0),
    "330m": dict(_RELEASED_COMMON, hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096,
                 do_stable_layer_norm=True, attention_relax=32.0),
}
ARCH = ("sample_rate", "conv_layers", "extractor_mode", "conv_bias", "embed_dim", "num_layers", "num_heads", "ffn_dim",
        "layer_norm_first", "pos_conv_kernel", "pos_conv_groups", "attention_relax")


@pytest.mark.parametrize("size", ["95m", "330m"])
def test_released_config_builds_our_builder_architecture(size):
    """A released config.json (group-norm front end, no conv bias, for both sizes) = mert_95m() / mert_330m()."""
    from audiossl.models.mert.hf import hf_config_to_mert
    from audiossl.models.mert.model import CONFIGS, MertModel

    ours, released = CONFIGS[size](), hf_config_to_mert(RELEASED[size])
    assert {k: getattr(released, k) for k in ARCH} == {k: getattr(ours, k) for k in ARCH}
    with torch.device("meta"):
        a, b = MertModel(ours), MertModel(released)
    assert {k: v.shape for k, v in a.state_dict().items()} == {k: v.shape for k, v in b.state_dict().items()}
    assert not any(k.startswith("frontend.") and k.endswith("conv.bias") for k in a.state_dict())
