"""HEAR API wrapper: attributes, shapes, timestamps, scene = time-mean of timestamp embeddings."""

from __future__ import annotations

import pytest
import torch

import audiossl.hear as hear
from audiossl.models.checkpoint import save_checkpoint
from audiossl.models.hubert.model import HubertModel, hubert_tiny

CONV = ((32, 10, 5),) + ((32, 3, 2),) * 4 + ((32, 2, 2),) * 2


@pytest.fixture
def model(tmp_path):
    torch.manual_seed(0)
    cfg = hubert_tiny(conv_layers=CONV, embed_dim=32, num_layers=2, num_heads=2, ffn_dim=64, pos_conv_kernel=16, pos_conv_groups=4)
    return hear.load_model(str(save_checkpoint(HubertModel(cfg), tmp_path / "ckpt")))


def test_attributes_and_shapes(model):
    assert model.sample_rate == 16000 and model.scene_embedding_size == model.timestamp_embedding_size == 32
    audio = torch.randn(3, 16000)
    emb, ts = hear.get_timestamp_embeddings(audio, model)
    assert emb.shape == (3, 49, 32) and ts.shape == (3, 49)
    # frame t covers samples [320 t, 320 t + 400): its centre is 20 t + 12.5 ms
    torch.testing.assert_close(ts[0, :3], torch.tensor([12.5, 32.5, 52.5]))
    assert torch.all(ts[:, 1:] > ts[:, :-1])
    scene = hear.get_scene_embeddings(audio, model)
    assert scene.shape == (3, 32)
    torch.testing.assert_close(scene, emb.mean(1))
    # the default embedding is the average of all layers
    hs = model.upstream(audio).hidden_states
    torch.testing.assert_close(emb, torch.stack(hs).mean(0))


def test_layer_choice_and_long_clip(tmp_path, model):
    one = hear.HearModel(model.upstream, layer=-1, chunk_seconds=1.0)
    audio = torch.randn(2, 40000)
    emb, ts = hear.get_timestamp_embeddings(audio, one)
    assert emb.shape == (2, model.upstream.num_frames(40000), 32) and ts.shape == emb.shape[:2]
    with pytest.raises(ValueError, match="out of range"):
        hear.HearModel(model.upstream, layer=7)
    with pytest.raises(ValueError, match="n_sounds"):
        hear.get_scene_embeddings(torch.randn(16000), model)


def test_default_model_is_fbank():
    m = hear.load_model()
    assert m.scene_embedding_size == 80
    emb, ts = hear.get_timestamp_embeddings(torch.randn(1, 16000), m)
    assert emb.shape == (1, 98, 80)
    torch.testing.assert_close(ts[0, :2], torch.tensor([12.5, 22.5]))
