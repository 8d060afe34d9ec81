"""Parity with ESPnet's BEATs encoder (``espnet2.asr.encoder.beats_encoder.BeatsEncoder``, PyPI ``espnet``,
the ``parity`` extra): our model, exported with ``audiossl export --to beats``, loads into ESPnet with
no missing or unexpected keys and gives the same hidden states (every layer, fp32, 1e-4) on unpadded
and padded batches. Weights are non-trivial (LayerNorm affine and every bias random), so a swapped
norm / bias mapping cannot pass.
"""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("espnet2.asr.encoder.beats_encoder", reason="needs the parity extra (espnet, installed --no-deps)")

from espnet2.asr.encoder.beats_encoder import BeatsEncoder  # noqa: E402

from audiossl.models.beats.model import BeatsConfig, build_beats  # noqa: E402

ATOL = 1e-4


def _config(**kw) -> BeatsConfig:
    base = dict(embed_dim=64, encoder_layers=3, encoder_embed_dim=96, encoder_ffn_embed_dim=192, encoder_attention_heads=4,
                conv_pos=16, conv_pos_groups=4, encoder_layerdrop=0.0, num_buckets=32, max_distance=64)
    return BeatsConfig(**{**base, **kw})


def _randomise(model: torch.nn.Module, seed: int = 0) -> None:
    """Random LayerNorm affine, random biases, random gates: nothing is at its default."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g)
            if name.endswith("layer_norm.weight"):
                p.copy_(1.0 + 0.3 * noise)
            elif name.endswith(".bias"):
                p.copy_(0.1 * noise)
            elif name.endswith("grep_a"):
                p.copy_(1.0 + 0.3 * noise)
            elif name.endswith("relative_attention_bias.weight"):
                p.copy_(noise)
            elif name.endswith("conv_bias") or "patch_embedding" in name:
                p.add_(0.02 * noise)


def _export(cfg: BeatsConfig, tmp_path, seed: int = 0):
    from audiossl.models.beats.checkpoint import export_beats
    from audiossl.models.checkpoint import save_checkpoint

    pre = build_beats(cfg)
    _randomise(pre.encoder, seed)
    save_checkpoint(pre, tmp_path / "ck")
    return pre.encoder.eval(), export_beats(tmp_path / "ck", tmp_path / "ours_beats.pt")


def _espnet(path, num_layers: int) -> BeatsEncoder:
    enc = BeatsEncoder(input_size=1, beats_ckpt_path=str(path), max_layer=num_layers - 1)
    enc.reload_pretrained_parameters()
    # ESPnet loads with strict=False (it would silently skip a key we misname): check the key sets.
    info = enc.load_state_dict(torch.load(path, map_location="cpu", weights_only=True)["model"], strict=False)
    assert info.missing_keys == [] and info.unexpected_keys == [], (info.missing_keys, info.unexpected_keys)
    return enc.eval()


def _espnet_hidden(enc: BeatsEncoder, wavs: torch.Tensor, sample_pad: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
    """ESPnet's ``extract_features``: layers 0 .. N-1 from its ``TransformerEncoder``'s ``layer_results``, the
    last from its full forward (``max_layer=None``: for pre-LN that includes the final LayerNorm, as ours)."""
    got = {}

    def keep(module, args, out):
        got.setdefault("layers", out[1])  # the first call (max_layer set) collects them

    hook = enc.encoder.register_forward_hook(keep)
    try:
        with torch.no_grad():
            _, patch_pad = enc.extract_features(wavs, sample_pad, max_layer=enc.max_layer)
            last, _ = enc.extract_features(wavs, sample_pad, max_layer=None)
    finally:
        hook.remove()
    return [x.transpose(0, 1) for x, _ in got["layers"][:-1]] + [last], (~patch_pad).sum(-1)


def _espnet_sample_mask(wavs: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
    """The sample padding mask under which ESPnet marks exactly ``frames[b]`` fbank frames valid.

    ESPnet maps samples onto frames by reshaping the mask into ``S // num_frames`` samples per frame
    (not the 160-sample hop), so the mask its ``forward`` builds from ``ilens`` keeps one patch more
    than the audio fills (pinned below); this mask is cut where its reshape puts frame ``frames[b]``.
    """
    s = wavs.shape[1]
    per_frame = s // (1 + (s - 400) // 160)
    return torch.arange(s)[None, :] >= (per_frame * frames)[:, None]


def _wavs(lengths: list[int], seed: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    w = 0.1 * torch.randn(len(lengths), max(lengths), generator=g)
    for i, n in enumerate(lengths):
        w[i, n:] = 0
    return w, torch.tensor(lengths)


def _compare(ours, enc, wavs, lengths):
    with torch.no_grad():
        out = ours(wavs, lengths)
    valid = out.lengths * ours.cfg.num_codebooks
    ref, ref_lens = _espnet_hidden(enc, wavs, _espnet_sample_mask(wavs, out.lengths * ours.cfg.input_patch_size))
    assert ref_lens.tolist() == valid.tolist()
    assert len(ref) == len(out.hidden_states) == ours.cfg.encoder_layers + 1
    worst = 0.0
    for i, (h, r) in enumerate(zip(out.hidden_states, ref)):
        assert h.shape == r.shape, (i, h.shape, r.shape)
        for b, n in enumerate(valid.tolist()):
            torch.testing.assert_close(h[b, :n], r[b, :n], rtol=0, atol=ATOL, msg=lambda m: f"hidden state {i}, item {b}: {m}")
            worst = max(worst, (h[b, :n] - r[b, :n]).abs().max().item())
    return worst


@pytest.mark.parametrize("post_ln", [True, False], ids=["deepnorm_postln", "preln_no_relpos"])
def test_hidden_states_match_espnet_unpadded_and_padded(tmp_path, post_ln):
    cfg = _config() if post_ln else _config(deep_norm=False, layer_norm_first=True, relative_position_embedding=False, gru_rel_pos=False)
    ours, path = _export(cfg, tmp_path)
    enc = _espnet(path, cfg.encoder_layers)
    # 400 + 160 * (16 k - 1) samples = exactly 16 k fbank frames = k patch steps: ESPnet's padding
    # mask (sample mask reshaped onto frames, then frames onto patches) then marks the same patches.
    full = 400 + 160 * (16 * 6 - 1)
    _compare(ours, enc, *_wavs([full, full]))
    wavs, lengths = _wavs([full, 400 + 160 * (16 * 3 - 1)])
    _compare(ours, enc, wavs, lengths)
    with torch.no_grad():  # ESPnet's own length → mask mapping keeps one patch of padding (see _espnet_sample_mask)
        assert enc(wavs, lengths)[1].tolist() == [48, 25]


def test_swapped_layer_norms_do_not_match(tmp_path):
    """The test has teeth: exchanging two LayerNorms' parameters in the exported file breaks parity."""
    cfg = _config()
    ours, path = _export(cfg, tmp_path)
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    sd = ckpt["model"]
    for what in ("weight", "bias"):
        a, b = f"encoder.layers.0.self_attn_layer_norm.{what}", f"encoder.layers.0.final_layer_norm.{what}"
        sd[a], sd[b] = sd[b], sd[a]
    torch.save(ckpt, path)
    enc = _espnet(path, cfg.encoder_layers)
    full = 400 + 160 * (16 * 4 - 1)
    with pytest.raises(AssertionError):
        _compare(ours, enc, *_wavs([full]))
