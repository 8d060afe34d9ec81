"""HuBERT checkpoints: safetensors + config.json round trip, clear errors on mismatched weights."""

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from audiossl.models import HubertModel, HubertPretrainModel, build_hubert, hubert_tiny
from audiossl.models.checkpoint import CheckpointError, load_config, load_model, save_checkpoint

NO_DROP = dict(dropout=0.0, attention_dropout=0.0, dropout_input=0.0, encoder_layerdrop=0.0)


@pytest.fixture
def model():
    torch.manual_seed(0)
    return build_hubert(hubert_tiny(num_classes=37, **NO_DROP)).eval()


def test_round_trip_pretrain_model(tmp_path, model):
    out = save_checkpoint(model, tmp_path / "ckpt", extra={"step": 12, "tokenizer": "km37"})
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors"]  # no temp files left
    meta = json.loads((out / "config.json").read_text())
    assert meta["family"] == "hubert" and meta["format_version"] == 1
    assert meta["frame_rate"] == 50.0 and meta["extra"] == {"step": 12, "tokenizer": "km37"}
    assert load_config(out) == model.cfg

    loaded = load_model(out, pretrain=True)
    assert isinstance(loaded, HubertPretrainModel)
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k
    wavs, lengths = torch.randn(2, 6000), torch.tensor([6000, 4000])
    targets = torch.randint(0, 37, (2, 18))
    mask = torch.zeros(2, 18, dtype=torch.bool)
    mask[:, 4:14] = True
    with torch.no_grad():
        a = model(wavs, lengths, targets, mask_indices=mask)
        b = loaded.eval()(wavs, lengths, targets, mask_indices=mask)
    torch.testing.assert_close(a.logits, b.logits, atol=0, rtol=0)
    torch.testing.assert_close(a.loss, b.loss, atol=0, rtol=0)

    encoder = load_model(out)  # the upstream by default
    assert isinstance(encoder, HubertModel) and encoder.frame_rate == 50.0
    with torch.no_grad():
        h1 = model.encoder(wavs, lengths).hidden_states
        h2 = encoder.eval()(wavs, lengths).hidden_states
    for x, y in zip(h1, h2):
        torch.testing.assert_close(x, y, atol=0, rtol=0)


def test_overwrite_keeps_other_files(tmp_path, model):
    (tmp_path / "tokenizer.json").write_text("{}")
    save_checkpoint(model, tmp_path)
    save_checkpoint(model, tmp_path, extra={"step": 2})
    assert (tmp_path / "tokenizer.json").exists()
    assert json.loads((tmp_path / "config.json").read_text())["extra"] == {"step": 2}


def test_encoder_only_checkpoint(tmp_path, model):
    save_checkpoint(model.encoder, tmp_path)
    assert all(k.startswith("encoder.") for k in load_file(str(tmp_path / "model.safetensors")))
    assert isinstance(load_model(tmp_path), HubertModel)
    with pytest.raises(CheckpointError, match=r"missing keys: .*label_embs.*load it with pretrain=False"):
        load_model(tmp_path, pretrain=True)


def test_wrong_keys_are_listed(tmp_path, model):
    save_checkpoint(model, tmp_path)
    weights = tmp_path / "model.safetensors"
    state = load_file(str(weights))
    key = "encoder.encoder.layers.0.self_attn.qkv.weight"
    state[key.replace("qkv", "qkv_fused")] = state.pop(key)
    save_file(state, str(weights))
    with pytest.raises(CheckpointError) as err:
        load_model(tmp_path)
    msg = str(err.value)
    assert "missing keys: encoder.layers.0.self_attn.qkv.weight" in msg
    assert "unexpected keys: encoder.layers.0.self_attn.qkv_fused.weight" in msg
    assert str(weights) in msg


def test_shape_mismatch_and_bad_files(tmp_path, model):
    save_checkpoint(model, tmp_path)
    meta = json.loads((tmp_path / "config.json").read_text())
    meta["config"]["ffn_dim"] = 256
    (tmp_path / "config.json").write_text(json.dumps(meta))
    expect = r"shapes do not match.*ffn.fc1.weight: checkpoint \[512, 128\] vs model \[256, 128\]"
    with pytest.raises(CheckpointError, match=expect):
        load_model(tmp_path)

    meta["family"] = "beats"
    (tmp_path / "config.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="family is 'beats'"):
        load_config(tmp_path)
    meta.update(family="hubert", format_version=9)
    (tmp_path / "config.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="format_version 9"):
        load_config(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_config(tmp_path)
    with pytest.raises(CheckpointError, match="not an audiossl checkpoint"):
        load_model(tmp_path / "nope")

    save_checkpoint(model, tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"\x80\x04pickle, not safetensors")
    with pytest.raises(CheckpointError, match="cannot read safetensors"):
        load_model(tmp_path)


def test_extra_must_be_json(tmp_path, model):
    with pytest.raises(TypeError):
        save_checkpoint(model, tmp_path, extra={"obj": object()})
    assert not (tmp_path / "config.json").exists()
