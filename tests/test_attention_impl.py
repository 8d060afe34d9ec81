"""Attention implementations agree (issue 19): BEATs' gated relative bias through flex_attention
(``score_mod`` + key-padding block mask) equals the eager dense-bias path, and MERT-330M's PB-relax
attention through SDPA's ``scale`` equals the explicit-scores path. CPU, fp32, padded and unpadded.

flex is checked with its unfused eager fallback (``rel_pos.FLEX_COMPILE = False``): the same
``score_mod`` / block mask the compiled kernel runs, without a C++ compile per test; one test
compiles it at a tiny size (about 30–60 s of compilation on a CPU) and is marked ``slow``.
"""

from __future__ import annotations

import warnings

import pytest
import torch

from audiossl.models import rel_pos
from audiossl.models.beats.model import build_beats, beats_tiny
from audiossl.models.mert.model import MertModel, RelaxedSelfAttention, mert_tiny

TOL = 1e-5


@pytest.fixture
def eager_flex(monkeypatch):
    monkeypatch.setattr(rel_pos, "FLEX_COMPILE", False)
    warnings.filterwarnings("ignore", message=".*flex_attention.*")


def _nontrivial(model: torch.nn.Module, seed: int = 0) -> None:
    """Random LayerNorm affine / biases / gate parameters, so no term is trivially 1 or 0."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias") or "layer_norm" in name or "grep_a" in name:
                p.add_(0.1 * torch.randn(p.shape, generator=g))
            if "relative_attention_bias" in name:
                p.normal_(0.0, 1.0, generator=g)


def _beats_pair(**over):
    torch.manual_seed(0)
    eager = build_beats(beats_tiny(attention_impl="eager", **over)).eval()
    _nontrivial(eager)
    flex = build_beats(beats_tiny(attention_impl="flex", **over)).eval()
    flex.load_state_dict(eager.state_dict())
    return eager, flex


@pytest.mark.parametrize("padded", [False, True])
def test_beats_flex_encoder_equals_eager(eager_flex, padded):
    eager, flex = _beats_pair()
    wavs = torch.randn(3, 16000)
    lengths = torch.tensor([16000, 9000, 3000]) if padded else None
    a = eager.encoder(wavs, lengths).hidden_states
    b = flex.encoder(wavs, lengths).hidden_states
    valid = ~eager.encoder(wavs, lengths).padding_mask
    diff = max(float((x - y)[valid].abs().max()) for x, y in zip(a, b))
    assert diff < TOL, diff


@pytest.mark.parametrize("padded", [False, True])
def test_beats_flex_training_step_equals_eager(eager_flex, padded):
    """Loss, logits and every gradient (the bias table and the gate included) agree."""
    eager, flex = _beats_pair()
    wavs = torch.randn(2, 16000)
    lengths = torch.tensor([16000, 11000]) if padded else None
    targets = torch.randint(0, 1024, (2, 6, 8))
    outs = []
    for m in (eager, flex):
        m.train()
        m.zero_grad()
        out = m(wavs, lengths, targets, generator=torch.Generator().manual_seed(3))
        out.loss.backward()
        outs.append(out)
    assert torch.equal(outs[0].mask_indices, outs[1].mask_indices)
    assert abs(float(outs[0].loss - outs[1].loss)) < TOL
    assert float((outs[0].logits - outs[1].logits).abs().max()) < TOL
    for (n, p), q in zip(eager.named_parameters(), flex.parameters()):
        if p.grad is not None:
            assert float((p.grad - q.grad).abs().max()) < 1e-4, n
    assert flex.encoder.encoder.layers[0].self_attn.relative_attention_bias.weight.grad.abs().sum() > 0


def test_beats_flex_builds_no_dense_bias(eager_flex, monkeypatch):
    """The flex path never calls the dense ``[H, T, T]`` bias builder."""
    monkeypatch.setattr(rel_pos, "dense_position_bias", lambda *a, **k: pytest.fail("dense bias built"))
    _, flex = _beats_pair()
    flex.encoder(torch.randn(2, 8000), torch.tensor([8000, 6000]))


def test_key_padding_block_mask_matches_lengths():
    from torch.nn.attention.flex_attention import create_mask

    lengths = torch.tensor([300, 128, 1, 0])
    bm = rel_pos.key_padding_block_mask(lengths, 300)
    dense = bm.to_dense()  # [B, 1, q_blocks, kv_blocks]
    assert dense.shape == (4, 1, 3, 3)
    want = torch.arange(300)[None, :] < torch.tensor([300, 128, 1, 300])[:, None]
    got = create_mask(bm.mask_mod, 4, 1, 300, 300, device="cpu")[:, 0, 0]
    assert torch.equal(got, want)
    assert dense[1, 0, 0].tolist() == [1, 0, 0] and dense[3, 0, 0].tolist() == [1, 1, 1]


def test_auto_resolves_by_device():
    assert rel_pos.resolve_impl("auto", torch.device("cpu")) == "eager"
    assert rel_pos.resolve_impl("auto", torch.device("cuda")) == "flex"
    with pytest.raises(ValueError):
        beats_tiny(attention_impl="fast")


@pytest.mark.slow
def test_beats_compiled_flex_equals_eager_on_cpu():
    """The compiled flex kernel itself (CPU inductor C++ template), tiny size. Forward only: in torch
    2.9 the CPU template has no backward (a CPU call needing gradients takes flex's eager fallback)."""
    rel_pos._FLEX = None
    eager, flex = _beats_pair()
    wavs = torch.randn(2, 8000)
    lengths = torch.tensor([8000, 5000])
    with torch.no_grad():
        a = eager.encoder(wavs, lengths)
        b = flex.encoder(wavs, lengths)
    valid = ~a.padding_mask
    assert float((a.hidden_states[-1] - b.hidden_states[-1])[valid].abs().max()) < TOL


# --- MERT-330M: PB-relax through SDPA ---------------------------------------------------------------


@pytest.mark.parametrize("padded", [False, True])
def test_relaxed_attention_sdpa_equals_eager(padded):
    torch.manual_seed(0)
    eager = RelaxedSelfAttention(64, 4, 0.0, relax=32.0, impl="eager")
    sdpa = RelaxedSelfAttention(64, 4, 0.0, relax=32.0, impl="sdpa")
    sdpa.load_state_dict(eager.state_dict())
    x = (3.0 * torch.randn(3, 50, 64)).requires_grad_()
    mask = None
    if padded:
        mask = (torch.arange(50)[None, :] < torch.tensor([50, 31, 7])[:, None])[:, None, None, :]
    ya = eager(x, mask)
    (ga,) = torch.autograd.grad(ya.square().sum(), x)
    yb = sdpa(x, mask)
    (gb,) = torch.autograd.grad(yb.square().sum(), x)
    assert float((ya - yb).abs().max()) < TOL
    assert float((ga - gb).abs().max()) < 1e-4


@pytest.mark.parametrize("padded", [False, True])
def test_mert_relaxed_encoder_sdpa_equals_eager(padded):
    torch.manual_seed(0)
    eager = MertModel(mert_tiny(attention_relax=32.0, layer_norm_first=True, attention_impl="eager")).eval()
    _nontrivial(eager)
    sdpa = MertModel(mert_tiny(attention_relax=32.0, layer_norm_first=True)).eval()
    sdpa.load_state_dict(eager.state_dict())
    assert sdpa.encoder.layers[0].self_attn.impl == "sdpa" and eager.encoder.layers[0].self_attn.impl == "eager"
    wavs = torch.randn(2, 24000)
    lengths = torch.tensor([24000, 15000]) if padded else None
    a, b = eager(wavs, lengths), sdpa(wavs, lengths)
    valid = ~a.padding_mask
    assert max(float((x - y)[valid].abs().max()) for x, y in zip(a.hidden_states, b.hidden_states)) < TOL
