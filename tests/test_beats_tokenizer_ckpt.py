"""A released BEATs tokenizer (microsoft/unilm ``beats/Tokenizers.py`` layout) loads as ``beats_tokenizer:<file>``
and labels audio exactly as unilm's ``extract_labels``; our export writes that layout and reloads.

The file is built here in unilm's key layout (names and shapes from ``Tokenizers.py`` / ``backbone.py`` /
``quantizer.py``) with random non-trivial weights, and the reference labels are computed by hand
(Kaldi fbank → Conv2d → LayerNorm → post-LN transformer → Linear–Tanh–Linear → l2norm → nearest code).
"""

from __future__ import annotations

import argparse
import math

import numpy as np
import pytest
import torch
import torchaudio.compliance.kaldi as ta_kaldi
from torch.nn import functional as F

from audiossl.audio.io import save_audio
from audiossl.data.manifest import Manifest, Row, write_manifest

CFG = {
    "input_patch_size": 16, "embed_dim": 32, "conv_bias": False, "encoder_layers": 2, "encoder_embed_dim": 48,
    "encoder_ffn_embed_dim": 96, "encoder_attention_heads": 4, "activation_fn": "gelu", "layer_norm_first": False,
    "deep_norm": False, "dropout": 0.1, "attention_dropout": 0.1, "activation_dropout": 0.0, "encoder_layerdrop": 0.0,
    "dropout_input": 0.0, "conv_pos": 16, "conv_pos_groups": 4, "relative_position_embedding": False, "num_buckets": 320,
    "max_distance": 1280, "gru_rel_pos": False, "quant_n": 64, "quant_dim": 16,
}


def unilm_state(cfg: dict, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights under unilm's ``Tokenizers.state_dict()`` names."""
    g = torch.Generator().manual_seed(seed)

    def w(*shape, fan_in=None):
        fan_in = fan_in or shape[-1]
        return torch.randn(*shape, generator=g) / math.sqrt(fan_in)

    def ln(n):
        return 1.0 + 0.2 * torch.randn(n, generator=g), 0.1 * torch.randn(n, generator=g)

    e, d, f, p, k = cfg["embed_dim"], cfg["encoder_embed_dim"], cfg["encoder_ffn_embed_dim"], cfg["input_patch_size"], cfg["conv_pos"]
    s = {"patch_embedding.weight": w(e, 1, p, p, fan_in=p * p)}
    s["layer_norm.weight"], s["layer_norm.bias"] = ln(e)
    s["post_extract_proj.weight"], s["post_extract_proj.bias"] = w(d, e), 0.1 * w(d, 1)[:, 0]
    s["encoder.pos_conv.0.bias"] = 0.1 * w(d, 1)[:, 0]
    s["encoder.pos_conv.0.weight_g"] = 0.05 + 0.1 * torch.rand(1, 1, k, generator=g)
    s["encoder.pos_conv.0.weight_v"] = w(d, d // cfg["conv_pos_groups"], k)
    for i in range(cfg["encoder_layers"]):
        pre = f"encoder.layers.{i}."
        for proj in ("k_proj", "v_proj", "q_proj", "out_proj"):  # sharp attention: patches stay apart, codes vary
            s[pre + f"self_attn.{proj}.weight"] = w(d, d) * (3.0 if proj in ("k_proj", "q_proj") else 1.0)
            s[pre + f"self_attn.{proj}.bias"] = 0.1 * w(d, 1)[:, 0]
        s[pre + "self_attn_layer_norm.weight"], s[pre + "self_attn_layer_norm.bias"] = ln(d)
        s[pre + "fc1.weight"], s[pre + "fc1.bias"] = w(f, d), 0.1 * w(f, 1)[:, 0]
        s[pre + "fc2.weight"], s[pre + "fc2.bias"] = w(d, f), 0.1 * w(d, 1)[:, 0]
        s[pre + "final_layer_norm.weight"], s[pre + "final_layer_norm.bias"] = ln(d)
    s["encoder.layer_norm.weight"], s["encoder.layer_norm.bias"] = ln(d)
    n, q = cfg["quant_n"], cfg["quant_dim"]
    codebook = F.normalize(torch.randn(n, q, generator=g), dim=-1)
    s["quantize.embedding.weight"] = codebook
    s["quantize.embedding.cluster_size"] = torch.rand(n, generator=g) * 10
    s["quantize.embedding.embed_avg"] = torch.randn(n, q, generator=g)
    s["quantize.embedding.initted"] = torch.Tensor([True])
    s["quantize.cluster_size"] = torch.rand(n, generator=g) * 10
    s["quantize_layer.0.weight"], s["quantize_layer.0.bias"] = w(d, d), 0.1 * w(d, 1)[:, 0]
    s["quantize_layer.2.weight"], s["quantize_layer.2.bias"] = w(q, d), 0.1 * w(q, 1)[:, 0]
    return s


def reference_labels(s: dict, cfg: dict, wav: torch.Tensor) -> torch.Tensor:
    """unilm ``Tokenizers.extract_labels`` of one unpadded clip, by hand → codes ``[T, 8]``."""
    fb = ta_kaldi.fbank(wav[None] * 2**15, num_mel_bins=128, sample_frequency=16000, frame_length=25, frame_shift=10)
    fb = (fb - 15.41663) / (2 * 6.55582)
    p = cfg["input_patch_size"]
    x = F.conv2d(fb[None, None], s["patch_embedding.weight"], stride=p)  # [1, E, T, 8]
    x = x.reshape(1, x.shape[1], -1).transpose(1, 2)
    x = F.layer_norm(x, x.shape[-1:], s["layer_norm.weight"], s["layer_norm.bias"])
    x = F.linear(x, s["post_extract_proj.weight"], s["post_extract_proj.bias"])[0]  # [L, D]
    v, gain = s["encoder.pos_conv.0.weight_v"], s["encoder.pos_conv.0.weight_g"]
    weight = gain * v / v.norm(dim=(0, 1), keepdim=True)  # weight_norm(dim=2)
    k = cfg["conv_pos"]
    conv = F.conv1d(x.T[None], weight, s["encoder.pos_conv.0.bias"], padding=k // 2, groups=cfg["conv_pos_groups"])
    conv = conv[..., :-1] if k % 2 == 0 else conv  # SamePad
    x = x + F.gelu(conv[0].T)
    d, h = x.shape[-1], cfg["encoder_attention_heads"]
    x = F.layer_norm(x, (d,), s["encoder.layer_norm.weight"], s["encoder.layer_norm.bias"])
    for i in range(cfg["encoder_layers"]):
        pre = f"encoder.layers.{i}."

        def lin(name, t):
            return F.linear(t, s[pre + name + ".weight"], s[pre + name + ".bias"])

        q = lin("self_attn.q_proj", x).view(-1, h, d // h).transpose(0, 1) * (d // h) ** -0.5
        kk = lin("self_attn.k_proj", x).view(-1, h, d // h).transpose(0, 1)
        vv = lin("self_attn.v_proj", x).view(-1, h, d // h).transpose(0, 1)
        a = (q @ kk.transpose(1, 2)).softmax(-1) @ vv
        x = F.layer_norm(x + lin("self_attn.out_proj", a.transpose(0, 1).reshape(-1, d)), (d,),
                         s[pre + "self_attn_layer_norm.weight"], s[pre + "self_attn_layer_norm.bias"])
        x = F.layer_norm(x + lin("fc2", F.gelu(lin("fc1", x))), (d,), s[pre + "final_layer_norm.weight"], s[pre + "final_layer_norm.bias"])
    z = F.linear(torch.tanh(F.linear(x, s["quantize_layer.0.weight"], s["quantize_layer.0.bias"])),
                 s["quantize_layer.2.weight"], s["quantize_layer.2.bias"])
    z = F.normalize(z, dim=-1)
    c = s["quantize.embedding.weight"]
    dist = z.pow(2).sum(1, keepdim=True) + c.pow(2).sum(1) - 2 * z @ c.T
    return dist.argmin(1).view(-1, 128 // p)


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    s = unilm_state(CFG)
    path = tmp_path_factory.mktemp("released") / "Tokenizer_test.pt"
    torch.save({"cfg": dict(CFG), "model": s}, path)
    return path, s


def _wavs():
    g = torch.Generator().manual_seed(1)
    lens = [16000, 11000, 6000]
    wavs = torch.zeros(len(lens), max(lens))
    for i, n in enumerate(lens):
        t = torch.arange(n) / 16000
        wavs[i, :n] = 0.3 * torch.sin(2 * math.pi * (200 + 150 * i) * t * (1 + t)) + 0.05 * torch.randn(n, generator=g)
    return wavs, torch.tensor(lens)


def test_released_tokenizer_loads_with_every_key_and_labels_like_unilm(released):
    from audiossl.tokenizers.beats.checkpoint import load_beats_tokenizer, state_from_unilm

    path, s = released
    loaded = torch.load(path, map_location="cpu", weights_only=True)  # what the loader reads: tensors only
    enc, quant = state_from_unilm(loaded["model"])
    model = load_beats_tokenizer(path)  # strict: raises on any missing / unexpected key
    assert set(enc) == set(model.encoder.state_dict()) and set(quant) == set(model.quantizer.state_dict())
    assert model.cfg.encoder_type == "beats" and model.cfg.codebook_update == "unilm" and model.cfg.dead_code_threshold == 0
    assert bool(model.quantizer.initialised) and torch.equal(model.quantizer.codebook, s["quantize.embedding.weight"])
    wavs, lens = _wavs()
    codes, frames = model.tokenize(wavs, lens)  # a padded batch
    for b in range(len(lens)):
        ref = reference_labels(s, CFG, wavs[b, : lens[b]])
        assert frames[b] == ref.shape[0]
        assert torch.equal(codes[b, : frames[b]], ref), b
    assert len(set(codes.flatten().tolist())) > 8  # non-trivial weights give varied codes


def test_released_tokenizer_is_an_upstream_spec_and_labels_through_the_cli(released, tmp_path, capsys):
    from audiossl.cli import tokenizer_beats
    from audiossl.data.frame_labels import read_frame_labels
    from audiossl.tokenizers.beats.checkpoint import load_beats_tokenizer
    from audiossl.upstream.load import load_upstream
    from audiossl.upstream.specs import spec_help

    path, _ = released
    assert "beats_tokenizer:<file>" in spec_help()
    up = load_upstream(f"beats_tokenizer:{path}")
    wavs, lens = _wavs()
    out = up(wavs, lens)
    assert up.frame_rate == 6.25 and len(out.hidden_states) == CFG["encoder_layers"] + 1
    assert out.hidden_states[-1].shape == (3, 6, CFG["encoder_embed_dim"]) and out.lengths.tolist() == [6, 4, 2]

    rows = []
    for i, n in enumerate(lens.tolist()):
        save_audio(tmp_path / f"u{i}.wav", wavs[i, :n].numpy(), 16000)
        rows.append(Row(f"u{i}.wav", n))
    write_manifest(Manifest(tmp_path, rows), tmp_path / "train.tsv")
    p = argparse.ArgumentParser()
    tokenizer_beats.add_label_arguments(p, "beats")
    a = p.parse_args([f"beats_tokenizer:{path}", str(tmp_path / "train.tsv"), "--ext", "bt3", "--batch-size", "2"])
    a.action, a.kind = "label", "beats"
    assert tokenizer_beats.run_label(a) == 0
    assert "labelled 3 of 3 rows" in capsys.readouterr().out
    labels, info = read_frame_labels(tmp_path / "train.bt3")
    assert info.num_classes == CFG["quant_n"] and info.num_codebooks == 8 and info.tokenizer["checkpoint"] == f"beats_tokenizer:{path}"
    model = load_beats_tokenizer(path)
    for i, n in enumerate(lens.tolist()):
        want, _ = model.tokenize(wavs[i : i + 1, :n])
        np.testing.assert_array_equal(labels[i], want[0].numpy())


def test_export_writes_unilm_keys_and_shapes(released):
    from audiossl.tokenizers.beats.checkpoint import beats_tokenizer_checkpoint_dict, config_from_unilm
    from audiossl.tokenizers.beats.model import BeatsTokenizer

    _, s = released
    torch.manual_seed(0)
    d = beats_tokenizer_checkpoint_dict(BeatsTokenizer(config_from_unilm(CFG)))
    assert d["cfg"] == CFG
    assert {k: tuple(v.shape) for k, v in d["model"].items()} == {k: tuple(v.shape) for k, v in s.items()}


def test_unsafe_or_malformed_files_are_refused(tmp_path):
    from audiossl.tokenizers.beats.checkpoint import BeatsTokenizerCheckpointError, load_beats_tokenizer

    torch.save({"cfg": CFG, "model": {**unilm_state(CFG), "quantize.extra": torch.zeros(1)}}, tmp_path / "extra.pt")
    with pytest.raises(BeatsTokenizerCheckpointError, match="quantize.extra"):
        load_beats_tokenizer(tmp_path / "extra.pt")
    state = unilm_state(CFG)
    del state["quantize_layer.2.bias"]
    torch.save({"cfg": CFG, "model": state}, tmp_path / "missing.pt")
    with pytest.raises(BeatsTokenizerCheckpointError, match="quantize_layer.2.bias"):
        load_beats_tokenizer(tmp_path / "missing.pt")
    torch.save({"cfg": CFG, "model": unilm_state(CFG), "args": argparse.Namespace()}, tmp_path / "pickle.pt")
    with pytest.raises(BeatsTokenizerCheckpointError, match="refused"):
        load_beats_tokenizer(tmp_path / "pickle.pt")
