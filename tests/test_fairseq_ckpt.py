"""fairseq checkpoints: safe reading (no code runs), key mapping, export that s3prl's hubert_local loads."""

from __future__ import annotations

import argparse
import os
import sys
import types

import pytest
import torch

from audiossl.upstream.encoder import EncoderUpstream

from audiossl.upstream.load import load_upstream
from audiossl.models.fairseq_io import FairseqCheckpointError, eval_conv_layers, read_fairseq_checkpoint
from audiossl.models.hubert.fairseq import export_fairseq, load_fairseq_hubert, state_dict_to_fairseq
from audiossl.models.hubert.model import build_hubert, hubert_tiny

CONV = ((32, 10, 5),) + ((32, 3, 2),) * 4 + ((32, 2, 2),) * 2


def tiny(**kw):
    base = dict(conv_layers=CONV, embed_dim=48, num_layers=2, num_heads=2, ffn_dim=64, pos_conv_kernel=16,
                pos_conv_groups=4, final_dim=16, num_classes=10)
    base.update(kw)
    return hubert_tiny(**base)


def fairseq_model_cfg(cfg) -> dict:
    return {"encoder_layers": cfg.num_layers, "encoder_embed_dim": cfg.embed_dim, "encoder_ffn_embed_dim": cfg.ffn_dim,
            "encoder_attention_heads": cfg.num_heads, "conv_pos": cfg.pos_conv_kernel, "conv_pos_groups": cfg.pos_conv_groups,
            "conv_feature_layers": "[(32, 10, 5)] + [(32, 3, 2)] * 4 + [(32, 2, 2)] * 2", "final_dim": cfg.final_dim,
            "extractor_mode": "default", "label_rate": 50.0}


@pytest.mark.parametrize("mode,pre_ln", [("group_norm", False), ("layer_norm", True)])
def test_export_loads_in_s3prl_hubert_local_with_equal_hidden_states(tmp_path, mode, pre_ln):
    from s3prl.upstream.hubert.hubconf import hubert_local

    torch.manual_seed(0)
    model = build_hubert(tiny(extractor_mode=mode, layer_norm_first=pre_ln, conv_bias=pre_ln)).eval()
    path = export_fairseq(model, tmp_path / "hubert.pt")
    s3 = hubert_local(ckpt=str(path)).eval()
    wav = torch.randn(12000)
    with torch.no_grad():
        theirs = s3([wav])["hidden_states"]
    ours = EncoderUpstream(model.encoder)(wav[None]).hidden_states
    assert len(theirs) == len(ours) == 3
    assert max(float((a - b).abs().max()) for a, b in zip(ours, theirs)) <= 1e-4
    # our own reader round-trips every tensor, including the pretraining head
    back, task = load_fairseq_hubert(path, pretrain=True)
    assert task["sample_rate"] == 16000
    for (k, a), (k2, b) in zip(model.state_dict().items(), back.state_dict().items()):
        assert k == k2 and torch.equal(a, b), k
    up = load_upstream(f"fairseq:{path}")
    assert up.name == f"fairseq:{path}" and up.num_layers == 3
    torch.testing.assert_close(up(wav[None]).hidden_states[-1], ours[-1])


class Evil:
    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickle_that_runs_code_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    evil = Evil()
    evil.marker = marker
    path = tmp_path / "evil.pt"
    torch.save({"model": {}, "cfg": {"model": evil}}, path)
    with pytest.raises(FairseqCheckpointError, match=r"refused to load.*system.*could run arbitrary code"):
        read_fairseq_checkpoint(path)
    assert not marker.exists()
    with pytest.raises(FairseqCheckpointError, match="refused"):
        load_upstream(f"fairseq:{path}")


@pytest.fixture
def fake_fairseq_dictionary(monkeypatch):
    """A class pickled under fairseq's real name, as fairseq's task_state holds it."""
    mod = types.ModuleType("fairseq.data.dictionary")

    class Dictionary:
        def __init__(self, symbols):
            self.symbols = list(symbols)
            self.indices = {s: i for i, s in enumerate(symbols)}
            self.count = [1] * len(symbols)

    Dictionary.__module__ = "fairseq.data.dictionary"
    Dictionary.__qualname__ = "Dictionary"
    mod.Dictionary = Dictionary
    for name in ("fairseq", "fairseq.data"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, "fairseq.data.dictionary", mod)
    return Dictionary


def test_legacy_args_namespace_and_dictionary(tmp_path, fake_fairseq_dictionary):
    torch.manual_seed(0)
    model = build_hubert(tiny()).eval()
    cfg = model.cfg
    sd = state_dict_to_fairseq(model.encoder.state_dict(), cfg)
    # fairseq dictionary: 4 specials, then clusters in a shuffled order
    order = [3, 0, 9, 1, 2, 8, 4, 5, 7, 6]
    symbols = ["<s>", "<pad>", "</s>", "<unk>"] + [str(c) for c in order]
    sd["label_embs_concat"] = torch.cat([torch.zeros(4, 16), model.label_embs.detach()[order]])
    sd["final_proj.weight"], sd["final_proj.bias"] = model.final_proj.weight.detach(), model.final_proj.bias.detach()
    args = argparse.Namespace(**fairseq_model_cfg(cfg), sample_rate=16000, normalize=False)
    path = tmp_path / "legacy.pt"
    torch.save({"args": args, "cfg": None, "model": sd,
                "task_state": {"dictionaries": [fake_fairseq_dictionary(symbols)]},
                "extra_state": {"val_loss": __import__("numpy").float64(1.5)}}, path)
    back, _ = load_fairseq_hubert(path, pretrain=True)
    torch.testing.assert_close(back.label_embs, model.label_embs)  # rows reordered to cluster ids
    x = torch.randn(1, 8000)
    torch.testing.assert_close(back.encoder(x).hidden_states[-1], model.encoder(x).hidden_states[-1])


def test_omegaconf_cfg_is_read_without_omegaconf_code(tmp_path):
    omegaconf = pytest.importorskip("omegaconf")
    torch.manual_seed(0)
    model = build_hubert(tiny()).eval()
    sd = state_dict_to_fairseq(model.encoder.state_dict(), model.cfg)
    cfg = omegaconf.OmegaConf.create({"model": {**fairseq_model_cfg(model.cfg), "_name": "hubert"},
                                      "task": {"sample_rate": 16000, "normalize": True, "labels": ["km"]}})
    path = tmp_path / "dictconfig.pt"
    torch.save({"cfg": cfg, "model": sd}, path)
    ck = read_fairseq_checkpoint(path)
    assert ck["model_cfg"]["encoder_embed_dim"] == 48 and ck["task_cfg"]["labels"] == ["km"]
    up = load_upstream(f"fairseq:{path}")
    assert up.normalize and up.hidden_dim == 48


def test_conv_layer_string_is_not_eval(tmp_path):
    assert eval_conv_layers("[(512,10,5)] + [(512,3,2)] * 4 + [(512,2,2)] * 2")[-1] == (512, 2, 2)
    with pytest.raises(FairseqCheckpointError, match="unsupported expression"):
        eval_conv_layers("__import__('os').system('true')")


def test_equal_widths_have_no_fairseq_projection(tmp_path):
    torch.manual_seed(0)
    model = build_hubert(tiny(embed_dim=32)).eval()
    with pytest.raises(FairseqCheckpointError, match="no post_extract_proj"):
        export_fairseq(model, tmp_path / "x.pt")
    with torch.no_grad():
        model.encoder.post_extract_proj.weight.copy_(torch.eye(32))
        model.encoder.post_extract_proj.bias.zero_()
    path = export_fairseq(model, tmp_path / "x.pt")
    back, _ = load_fairseq_hubert(path)
    x = torch.randn(1, 8000)
    torch.testing.assert_close(back(x).hidden_states[-1], model.encoder(x).hidden_states[-1])


def test_unknown_layout_and_missing_file(tmp_path):
    with pytest.raises(FairseqCheckpointError, match="no such"):
        read_fairseq_checkpoint(tmp_path / "none.pt")
    torch.save({"weights": torch.zeros(1)}, tmp_path / "odd.pt")
    with pytest.raises(FairseqCheckpointError, match="unknown layout"):
        read_fairseq_checkpoint(tmp_path / "odd.pt")
