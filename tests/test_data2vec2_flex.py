"""data2vec 2.0's ALiBi attention through flex_attention (issue 19) equals the eager dense-bias path:
the key-keep block mask, encoder hidden states (teacher path on all frames, student path on the kept
frames), a full training step (loss and every gradient, the ALiBi scales included), the config field.

flex runs its unfused eager fallback (``rel_pos.FLEX_COMPILE = False``, as in tests/test_attention_impl.py):
the same ``score_mod`` and block mask the compiled kernel runs, without a C++ compile per test.
"""

from __future__ import annotations

import json
import warnings

import pytest
import torch
from torch.nn import functional as F

from audiossl.models import rel_pos
from audiossl.models.data2vec2 import Data2Vec2Config, Data2Vec2Model, build_data2vec2, data2vec2_tiny
from audiossl.models.data2vec2 import model as d2v_model
from audiossl.models.rel_pos import key_keep_block_mask
from audiossl.models.data2vec2.masking import compute_block_mask

TOL = 1e-5


@pytest.fixture
def eager_flex(monkeypatch):
    monkeypatch.setattr(rel_pos, "FLEX_COMPILE", False)
    warnings.filterwarnings("ignore", message=".*flex_attention.*")


def _scales(num_heads: int, seed: int = 0) -> torch.Tensor:
    """Random in [0.5, 2], head 1 negative (the clamp at 0 turns its ALiBi off)."""
    g = torch.Generator().manual_seed(seed)
    s = 0.5 + 1.5 * torch.rand(num_heads, generator=g)
    s[1] = -0.7
    return s


def _pair(cls, **over):
    """(eager, flex) models with the same weights: non-trivial ALiBi scales, LayerNorm affines and biases."""
    torch.manual_seed(0)
    eager = cls(data2vec2_tiny(attention_impl="eager", **over))
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in eager.named_parameters():
            if name.endswith("bias") or "layer_norm" in name:
                p.add_(0.1 * torch.randn(p.shape, generator=g))
        for name, t in [*eager.named_parameters(), *eager.named_buffers()]:
            if name.endswith("alibi_scale"):  # the student's parameter and the EMA teacher's buffer
                t.copy_(_scales(t.shape[0]))
    flex = cls(data2vec2_tiny(attention_impl="flex", **over))
    flex.load_state_dict(eager.state_dict())
    return eager, flex


def test_key_keep_block_mask_blocks_and_attention():
    """Full / partial / skipped blocks from any keep pattern; flex with it equals SDPA with the dense mask."""
    from torch.nn.attention.flex_attention import flex_attention

    t, block = 70, 16  # 5 blocks, the last one 6 long
    keep = torch.ones(5, t, dtype=torch.bool)
    keep[0, 40:] = False  # suffix padding
    keep[1, 3] = keep[1, 20:30] = keep[1, 60:] = False  # holes: not a suffix
    keep[2] = False  # all padding: attends everywhere
    keep[3, :32] = False  # prefix padding
    bm = key_keep_block_mask(keep, block=block)
    partial, full = bm.kv_num_blocks[:, 0, 0].tolist(), bm.full_kv_num_blocks[:, 0, 0].tolist()
    assert partial == [1, 3, 1, 1, 1] and full == [2, 1, 4, 2, 4]  # the last, short block is never full
    assert set(bm.full_kv_indices[1, 0, 0, :1].tolist()) == {2}
    assert set(bm.kv_indices[1, 0, 0, :3].tolist()) == {0, 1, 3}
    assert bm.kv_indices[0, 0, 0, 0] == 2 and bm.kv_indices[4, 0, 0, 0] == 4
    assert bm.kv_indices[3, 0, 0, 0] == 4 and set(bm.full_kv_indices[3, 0, 0, :2].tolist()) == {2, 3}
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(5, 2, t, 8, generator=g) for _ in range(3))
    want_keep = keep.clone()
    want_keep[2] = True
    want = F.scaled_dot_product_attention(q, k, v, attn_mask=want_keep[:, None, None, :])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got = flex_attention(q, k, v, block_mask=bm)
    assert float((got - want).abs().max()) < TOL


def _student_mask(lengths: torch.Tensor, t: int):
    return compute_block_mask(lengths, t, 0.5, 5, generator=torch.Generator().manual_seed(5))


@pytest.mark.parametrize("student", [False, True], ids=["teacher", "student"])
@pytest.mark.parametrize("padded", [False, True], ids=["unpadded", "padded"])
def test_flex_encoder_equals_eager(eager_flex, padded, student):
    eager, flex = _pair(Data2Vec2Model)
    eager.eval(), flex.eval()
    wavs = torch.randn(3, 16000)
    lengths = torch.tensor([16000, 9000, 4000]) if padded else None
    with torch.no_grad():
        x, frames, pad = eager.local_features(wavs, lengths)
    ids_keep = None
    if student:
        mask = _student_mask(frames, x.shape[1])
        x, ids_keep = x.masked_fill(mask.removed[..., None], 0.0), mask.ids_keep
        if padded:  # the kept padding of a padded row is a suffix here; a general keep pattern is checked above
            assert pad.gather(1, ids_keep).any()
    assert flex.context.uses_flex(x.device) and not eager.context.uses_flex(x.device)
    with torch.no_grad():
        a, fa = eager.context(x, pad, ids_keep=ids_keep, ffn_outputs=True)
        b, fb = flex.context(x, pad, ids_keep=ids_keep, ffn_outputs=True)
    assert len(a) == 4 and a[-1].shape == b[-1].shape
    diff = max(float((p - q).abs().max()) for p, q in zip(a + fa, b + fb))
    assert diff < TOL, diff
    # the ALiBi term matters here: without it the outputs move far more than the tolerance
    with torch.no_grad():
        flex.context.alibi_scale.zero_()
        c, _ = flex.context(x, pad, ids_keep=ids_keep)
    assert float((c[-1] - a[-1]).abs().max()) > 100 * TOL


def test_flex_student_with_a_non_suffix_padding_pattern(eager_flex):
    """ContextEncoder takes any ``ids_keep``: kept padding frames interleaved with real ones."""
    eager, flex = _pair(Data2Vec2Model)
    eager.eval(), flex.eval()
    x = torch.randn(2, 40, 128)
    pad = torch.zeros(2, 40, dtype=torch.bool)
    pad[0, 30:] = True
    pad[1, ::3] = True
    ids_keep = torch.tensor([list(range(0, 40, 2)), list(range(1, 40, 2))])
    with torch.no_grad():
        a, _ = eager.context(x, pad, ids_keep=ids_keep)
        b, _ = flex.context(x, pad, ids_keep=ids_keep)
    assert float((a[-1] - b[-1]).abs().max()) < TOL


def _step(model, wavs, lengths):
    model.train()
    model.zero_grad()
    torch.manual_seed(11)  # the same dropout draws for both models
    out = model(wavs, lengths, generator=torch.Generator().manual_seed(3))
    out.loss.backward()
    return out


@pytest.mark.parametrize("padded", [False, True], ids=["unpadded", "padded"])
def test_flex_training_step_equals_eager(eager_flex, monkeypatch, padded):
    """Loss, predictions and every gradient agree (``alibi_scale`` included; flex needs attention_dropout 0)."""
    eager, flex = _pair(build_data2vec2, attention_dropout=0.0)
    seen = []
    monkeypatch.setattr(rel_pos, "flex_attention_fn", lambda *a, _f=rel_pos.flex_attention_fn: seen.append(1) or _f(*a))
    wavs = torch.randn(2, 16000)
    lengths = torch.tensor([16000, 10500]) if padded else None
    a = _step(eager, wavs, lengths)
    assert not seen
    b = _step(flex, wavs, lengths)
    assert len(seen) == 2 * 3  # teacher and student, 3 layers each
    assert torch.equal(a.mask.ids_keep, b.mask.ids_keep)
    assert abs(float(a.loss.detach() - b.loss.detach())) < TOL
    assert float((a.predictions - b.predictions).detach().abs().max()) < TOL
    for (n, p), q in zip(eager.named_parameters(), flex.parameters()):
        assert (p.grad is None) == (q.grad is None), n
        if p.grad is not None:
            assert float((p.grad - q.grad).abs().max()) < 1e-4, n
    g = flex.encoder.context.alibi_scale.grad
    assert g[1] == 0 and (g[[0, 2, 3]] != 0).all()  # the clamped head gets none


def test_attention_dropout_in_training_runs_eager(eager_flex, monkeypatch):
    """flex has no attention dropout: the student in training with attention_dropout > 0 takes the SDPA path."""
    model = build_data2vec2(data2vec2_tiny(attention_impl="flex")).train()
    assert model.cfg.attention_dropout > 0
    assert not model.encoder.context.uses_flex(torch.device("cpu"))
    assert model.teacher.uses_flex(torch.device("cpu"))  # the teacher runs in eval
    assert model.encoder.eval().context.uses_flex(torch.device("cpu"))
    auto = Data2Vec2Model(data2vec2_tiny()).eval()
    assert not auto.context.uses_flex(torch.device("cpu")) and auto.context.uses_flex(torch.device("cuda"))
    assert not Data2Vec2Model(data2vec2_tiny(attention_impl="flex", use_alibi=False)).eval().context.uses_flex(torch.device("cpu"))


def test_flex_builds_no_dense_bias(eager_flex, monkeypatch):
    monkeypatch.setattr(d2v_model, "alibi_bias", lambda *a, **k: pytest.fail("dense ALiBi bias built"))
    monkeypatch.setattr(d2v_model, "attention_bias", lambda *a, **k: pytest.fail("dense SDPA mask built"))
    model = build_data2vec2(data2vec2_tiny(attention_impl="flex", attention_dropout=0.0))
    out = _step(model, torch.randn(2, 12000), torch.tensor([12000, 7000]))
    assert torch.isfinite(out.loss)


def test_config_field_validates_and_round_trips(tmp_path):
    with pytest.raises(ValueError, match="attention_impl"):
        data2vec2_tiny(attention_impl="fast")
    cfg = data2vec2_tiny(attention_impl="flex")
    assert cfg.to_dict()["attention_impl"] == "flex" and Data2Vec2Config.from_dict(cfg.to_dict()) == cfg
    old = data2vec2_tiny().to_dict()
    del old["attention_impl"]
    assert Data2Vec2Config.from_dict(old).attention_impl == "auto"
    # a checkpoint written before the field existed still loads (and the field survives a round trip)
    from audiossl.models.checkpoint import save_checkpoint
    from audiossl.models.data2vec2.family import load_encoder

    model = build_data2vec2(data2vec2_tiny(attention_impl="eager")).eval()
    save_checkpoint(model, tmp_path / "new")
    assert load_encoder(tmp_path / "new").cfg.attention_impl == "eager"
    save_checkpoint(model, tmp_path / "old")
    meta_path = tmp_path / "old" / "config.json"
    meta = json.loads(meta_path.read_text())
    del meta["config"]["attention_impl"]
    meta_path.write_text(json.dumps(meta))
    enc = load_encoder(tmp_path / "old")
    assert enc.cfg.attention_impl == "auto"
    wavs = torch.randn(1, 8000)
    with torch.no_grad():
        assert torch.equal(enc(wavs).hidden_states[-1], model.encoder(wavs).hidden_states[-1])
