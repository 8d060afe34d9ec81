"""Released-BEATs interop: a unilm-layout checkpoint built from the documented key names loads via
``beats:``, matches our model on the same weights, exports back bit-exactly; unsafe pickles are refused."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from audiossl.models.beats.model import BeatsConfig, BeatsModel, beats_tiny, build_beats

H, D, E, FFN, LAYERS, K = 4, 96, 64, 192, 2, 16
CFG = {  # a released-style BEATsConfig dict (BEATs_iter3 switches, small sizes)
    "encoder_layers": LAYERS, "encoder_embed_dim": D, "encoder_ffn_embed_dim": FFN, "encoder_attention_heads": H,
    "activation_fn": "gelu", "dropout": 0.0, "attention_dropout": 0.0, "activation_dropout": 0.0, "encoder_layerdrop": 0.05,
    "dropout_input": 0.0, "layer_norm_first": False, "conv_bias": False, "conv_pos": K, "conv_pos_groups": 4,
    "relative_position_embedding": True, "num_buckets": 320, "max_distance": 800, "gru_rel_pos": True, "deep_norm": True,
    "input_patch_size": 16, "layer_wise_gradient_decay_ratio": 0.6, "embed_dim": E, "finetuned_model": False,
}


def _reference_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """A state dict with microsoft/unilm ``beats/BEATs.py`` key names and shapes (random values)."""
    g = torch.Generator().manual_seed(seed)

    def r(*shape, scale=0.05):
        return scale * torch.randn(*shape, generator=g)

    sd = {
        "patch_embedding.weight": r(E, 1, 16, 16),
        "layer_norm.weight": 1 + r(E), "layer_norm.bias": r(E),
        "post_extract_proj.weight": r(D, E), "post_extract_proj.bias": r(D),
        "encoder.pos_conv.0.bias": r(D), "encoder.pos_conv.0.weight_g": 1 + r(1, 1, K), "encoder.pos_conv.0.weight_v": r(D, D // 4, K),
        "encoder.layer_norm.weight": 1 + r(D), "encoder.layer_norm.bias": r(D),
    }
    rel = r(320, H, scale=1.0)
    for i in range(LAYERS):
        p = f"encoder.layers.{i}."
        for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
            sd[p + f"self_attn.{proj}.weight"], sd[p + f"self_attn.{proj}.bias"] = r(D, D, scale=0.1), r(D)
        sd[p + "self_attn.relative_attention_bias.weight"] = rel  # tied to layer 0's in unilm
        sd[p + "self_attn.grep_linear.weight"], sd[p + "self_attn.grep_linear.bias"] = r(8, D // H, scale=0.3), r(8)
        sd[p + "self_attn.grep_a"] = 1 + r(1, H, 1, 1, scale=0.3)
        for ln in ("self_attn_layer_norm", "final_layer_norm"):
            sd[p + f"{ln}.weight"], sd[p + f"{ln}.bias"] = 1 + r(D), r(D)
        sd[p + "fc1.weight"], sd[p + "fc1.bias"] = r(FFN, D, scale=0.1), r(FFN)
        sd[p + "fc2.weight"], sd[p + "fc2.bias"] = r(D, FFN, scale=0.1), r(D)
    return sd


def _ours_from_reference(sd: dict[str, torch.Tensor]) -> BeatsModel:
    """The same weights put into our model by hand (independent of audiossl.models.beats.checkpoint)."""
    cfg = BeatsConfig(**{k: v for k, v in CFG.items() if k != "finetuned_model"})
    model = BeatsModel(cfg).eval()
    with torch.no_grad():
        model.patch_embedding.weight.copy_(sd["patch_embedding.weight"])
        model.layer_norm.weight.copy_(sd["layer_norm.weight"]), model.layer_norm.bias.copy_(sd["layer_norm.bias"])
        model.post_extract_proj.weight.copy_(sd["post_extract_proj.weight"]), model.post_extract_proj.bias.copy_(sd["post_extract_proj.bias"])
        conv = model.encoder.pos_conv.conv
        conv.bias.copy_(sd["encoder.pos_conv.0.bias"])
        conv.parametrizations.weight.original0.copy_(sd["encoder.pos_conv.0.weight_g"])
        conv.parametrizations.weight.original1.copy_(sd["encoder.pos_conv.0.weight_v"])
        model.encoder.layer_norm.weight.copy_(sd["encoder.layer_norm.weight"]), model.encoder.layer_norm.bias.copy_(sd["encoder.layer_norm.bias"])
        model.encoder.layers[0].self_attn.relative_attention_bias.weight.copy_(sd["encoder.layers.0.self_attn.relative_attention_bias.weight"])
        for i, layer in enumerate(model.encoder.layers):
            p = f"encoder.layers.{i}."
            mods = {"self_attn.q_proj": layer.self_attn.q_proj, "self_attn.k_proj": layer.self_attn.k_proj,
                    "self_attn.v_proj": layer.self_attn.v_proj, "self_attn.out_proj": layer.self_attn.out_proj,
                    "self_attn.grep_linear": layer.self_attn.grep_linear, "self_attn_layer_norm": layer.self_attn_layer_norm,
                    "final_layer_norm": layer.final_layer_norm, "fc1": layer.fc1, "fc2": layer.fc2}
            for name, mod in mods.items():
                mod.weight.copy_(sd[p + name + ".weight"]), mod.bias.copy_(sd[p + name + ".bias"])
            layer.self_attn.grep_a.copy_(sd[p + "self_attn.grep_a"])
    return model


@pytest.fixture(scope="module")
def released(tmp_path_factory) -> tuple[Path, dict]:
    path = tmp_path_factory.mktemp("rel") / "BEATs_test.pt"
    sd = _reference_state()
    torch.save({"cfg": dict(CFG), "model": sd}, path)
    return path, sd


def _wavs():
    g = torch.Generator().manual_seed(5)
    w = 0.1 * torch.randn(2, 20000, generator=g)
    w[1, 13000:] = 0
    return w, torch.tensor([20000, 13000])


def test_released_checkpoint_loads_and_matches_our_forward(released):
    from audiossl.upstream.load import load_upstream

    path, sd = released
    up = load_upstream(f"beats:{path}")
    assert up.frame_rate == 6.25 and up.num_layers == LAYERS + 1 and up.hidden_dim == D
    w, lens = _wavs()
    out = up(w, lens)
    ours = _ours_from_reference(sd)
    with torch.no_grad():
        ref = ours(w, lens)
    assert out.lengths.tolist() == ref.lengths.tolist() == [7, 4]
    for h, r in zip(out.hidden_states, ref.hidden_states):
        assert h.shape == (2, 7, D)
        torch.testing.assert_close(h, r.view(2, 7, 8, D).mean(2), rtol=0, atol=0)
    # the loaded model really uses the file's weights (not a fresh init)
    assert torch.equal(up.model.encoder.layers[1].self_attn.grep_a, sd["encoder.layers.1.self_attn.grep_a"])
    assert up.model.cfg.max_distance == 800 and up.model.cfg.deep_norm


def test_export_round_trips_bit_exactly(released, tmp_path):
    from audiossl.models.beats.checkpoint import export_beats, load_beats_model
    from audiossl.models.checkpoint import save_checkpoint

    path, sd = released
    model = load_beats_model(path)
    pre = build_beats(model.cfg)
    pre.encoder.load_state_dict(model.state_dict())
    save_checkpoint(pre, tmp_path / "ck")
    out = export_beats(tmp_path / "ck", tmp_path / "exported.pt")
    back = torch.load(out, map_location="cpu", weights_only=True)
    assert set(back) == {"cfg", "model"} and back["model"].keys() == sd.keys()
    for k, v in sd.items():
        assert torch.equal(back["model"][k], v), k
    assert {k: back["cfg"][k] for k in CFG} == CFG
    again = load_beats_model(out)
    assert all(torch.equal(v, again.state_dict()[k]) for k, v in model.state_dict().items())


def test_our_model_exports_and_reloads(tmp_path):
    from audiossl.interop.family_upstreams import load_beats_upstream
    from audiossl.models.beats.checkpoint import export_beats
    from audiossl.models.checkpoint import save_checkpoint

    pre = build_beats(beats_tiny()).eval()
    save_checkpoint(pre, tmp_path / "ck")
    up = load_beats_upstream(export_beats(tmp_path / "ck", tmp_path / "out" / "beats.pt"))
    w, lens = _wavs()
    with torch.no_grad():
        ref = pre.encoder(w, lens).hidden_states[-1]
    torch.testing.assert_close(up(w, lens).hidden_states[-1], ref.view(2, 7, 8, -1).mean(2), rtol=0, atol=0)


class _Evil:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.makedirs, (self.marker,))


def test_malicious_pickle_is_refused(tmp_path):
    from audiossl.upstream.load import load_upstream
    from audiossl.models.beats.checkpoint import BeatsCheckpointError

    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"cfg": dict(CFG), "model": {}, "x": _Evil(str(marker))}, path)
    with pytest.raises(BeatsCheckpointError, match="refused to load.*could run arbitrary code"):
        load_upstream(f"beats:{path}")
    assert not marker.exists()


def test_finetuned_head_is_dropped_and_bad_files_are_named(released, tmp_path):
    from audiossl.models.beats.checkpoint import BeatsCheckpointError, load_beats_model

    path, sd = released
    ft = tmp_path / "ft.pt"
    torch.save({"cfg": {**CFG, "finetuned_model": True, "predictor_class": 527},
                "model": {**sd, "predictor.weight": torch.zeros(527, D), "predictor.bias": torch.zeros(527)}}, ft)
    assert torch.equal(load_beats_model(ft).patch_embedding.weight, sd["patch_embedding.weight"])
    broken = tmp_path / "broken.pt"
    torch.save({"cfg": dict(CFG), "model": {k: v for k, v in sd.items() if not k.startswith("encoder.layers.1.fc1")}}, broken)
    with pytest.raises(BeatsCheckpointError, match=r"broken.pt.*missing keys: encoder\.layers\.1\.fc1\.bias"):
        load_beats_model(broken)
    wrong = tmp_path / "wrong.pt"
    torch.save({"weights": sd}, wrong)
    with pytest.raises(BeatsCheckpointError, match="expected a dict with 'cfg'"):
        load_beats_model(wrong)
    with pytest.raises(BeatsCheckpointError, match="no such BEATs checkpoint"):
        load_beats_model(tmp_path / "missing.pt")
