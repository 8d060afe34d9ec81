"""Residual VQ with EMA codebooks: EMA (not the optimiser) moves the codebooks, dead-code restart
keeps every code in use, straight-through gradients, padding ignored, bf16 autocast, resume flag."""

from __future__ import annotations

import pytest
import torch

from audiossl.tokenizers.rvq.quantizer import EMAQuantizer, ResidualVQ, RVQConfig


def _clusters(n: int, k: int, dim: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(k, dim, generator=g) * 3
    return centres[torch.randint(0, k, (n,), generator=g)] + 0.05 * torch.randn(n, dim, generator=g)


def test_codebooks_are_buffers_moved_by_ema_not_by_the_optimiser():
    torch.manual_seed(0)
    rvq = ResidualVQ(RVQConfig(num_levels=2, codebook_size=8, dim=4))
    proj = torch.nn.Linear(4, 4)
    assert not any("codebook" in n for n, _ in rvq.named_parameters())
    opt = torch.optim.SGD(list(proj.parameters()) + list(rvq.parameters()), lr=0.1)
    x = _clusters(64, 8, 4).reshape(2, 32, 4)
    rvq.train()
    rvq(proj(x))  # first batch: k-means init
    before = [lvl.codebook.clone() for lvl in rvq.levels]
    out = rvq(proj(x))
    (out.quantized.pow(2).mean() + out.commitment).backward()
    assert proj.weight.grad is not None and proj.weight.grad.abs().sum() > 0  # straight-through reaches the input
    assert all(lvl.codebook.grad is None for lvl in rvq.levels)
    opt.step()
    assert any(not torch.equal(b, lvl.codebook) for b, lvl in zip(before, rvq.levels))  # changed by the EMA step
    rvq.eval()
    frozen = [lvl.codebook.clone() for lvl in rvq.levels]
    rvq(proj(x))
    assert all(torch.equal(f, lvl.codebook) for f, lvl in zip(frozen, rvq.levels))  # no update in eval


def test_residual_levels_reduce_the_error_and_codes_decode_back():
    torch.manual_seed(0)
    rvq = ResidualVQ(RVQConfig(num_levels=4, codebook_size=16, dim=8, kmeans_iters=10))
    x = torch.randn(4, 50, 8)
    rvq.train()
    for _ in range(5):
        rvq(x)
    rvq.eval()
    errs = [float((rvq.decode(rvq.encode(x, n)) - x).pow(2).mean()) for n in (1, 2, 4)]
    assert errs[0] > errs[1] > errs[2]
    out = rvq(x)
    assert out.codes.shape == (4, 50, 4) and out.codes.dtype == torch.int64
    assert torch.allclose(out.quantized, rvq.decode(out.codes), atol=1e-5)
    assert out.usage.shape == (4,) and out.perplexity.shape == (4,)


def test_dead_code_restart_brings_unused_codes_back():
    torch.manual_seed(0)
    old, new = _clusters(512, 16, 4, seed=1), _clusters(512, 16, 4, seed=2) + 30.0

    def train(threshold: float) -> int:
        vq = EMAQuantizer(16, 4, decay=0.8, dead_threshold=threshold, kmeans_iters=5)
        vq.train()
        w = torch.ones(256)
        for data in (old, new):  # the audio changes under the codebook: the old codes go dead
            for _ in range(30):
                vq(data[torch.randint(0, 512, (256,))], w)
        vq.eval()
        return len(torch.unique(vq.encode(new)))

    assert train(threshold=2.0) >= 14
    assert train(threshold=0.0) <= 4  # restart off: only the codes nearest the new audio follow it


def test_padding_frames_do_not_move_the_codebook():
    torch.manual_seed(0)
    a = ResidualVQ(RVQConfig(num_levels=1, codebook_size=4, dim=2, kmeans_iters=3))
    b = ResidualVQ(RVQConfig(num_levels=1, codebook_size=4, dim=2, kmeans_iters=3))
    b.load_state_dict(a.state_dict())
    x = torch.randn(1, 20, 2)
    padded = torch.cat([x, 100 + torch.randn(1, 7, 2)], 1)
    mask = torch.arange(27)[None] < 20
    torch.manual_seed(1)
    a.train()(x)
    torch.manual_seed(1)
    b.train()(padded, mask)
    assert torch.allclose(a.levels[0].cluster_size, b.levels[0].cluster_size)
    assert float(b.levels[0].codebook.abs().max()) < 50  # the padding values never became codes


def test_bf16_autocast_keeps_float32_codebooks_and_finite_outputs():
    torch.manual_seed(0)
    rvq = ResidualVQ(RVQConfig(num_levels=2, codebook_size=8, dim=4))
    lin = torch.nn.Linear(4, 4)
    x = torch.randn(2, 16, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        z = lin(x)
        assert z.dtype == torch.bfloat16
        out = rvq.train()(z)
        loss = out.quantized.float().pow(2).mean() + out.commitment
    loss.backward()
    assert out.quantized.dtype == torch.bfloat16 and torch.isfinite(out.quantized.float()).all()
    assert all(lvl.codebook.dtype == torch.float32 and torch.isfinite(lvl.codebook).all() for lvl in rvq.levels)
    assert torch.isfinite(lin.weight.grad).all()


def test_initialised_flag_survives_a_state_dict_round_trip():
    cfg = RVQConfig(num_levels=1, codebook_size=4, dim=2, dead_threshold=0.0)
    rvq = ResidualVQ(cfg)
    rvq.train()(torch.randn(1, 10, 2))
    fresh = ResidualVQ(cfg)
    assert not fresh.levels[0]._initialized
    fresh.load_state_dict(rvq.state_dict())
    assert fresh.levels[0]._initialized  # a resumed run does not re-initialise with k-means
    fresh.train()(torch.randn(1, 10, 2) + 50)
    # an EMA step moves one code part of the way; a k-means reset would put all four near 50
    assert int((fresh.levels[0].codebook.abs() < 25).all(-1).sum()) >= 3


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_forward_has_no_host_sync():
    rvq = ResidualVQ(RVQConfig(num_levels=2, codebook_size=16, dim=8)).cuda().train()
    x = torch.randn(2, 30, 8, device="cuda")
    rvq(x)  # k-means init (allowed to sync once)
    torch.cuda.set_sync_debug_mode("error")
    try:
        rvq(x)
    finally:
        torch.cuda.set_sync_debug_mode("default")


def test_labelling_warns_when_a_level_is_nearly_one_code(tmp_path, caplog):
    """A tokenizer that diverged labelled 99.7 % of the demo music with one code per level; say so."""
    import logging

    import numpy as np

    from audiossl.tokenizers.labelling import code_shares, warn_degenerate_codes

    rng = np.random.default_rng(0)
    healthy = [rng.integers(0, 64, (50, 2)) for _ in range(4)]
    collapsed = [np.stack([np.zeros(50, int), rng.integers(0, 64, 50)], 1) for _ in range(4)]
    collapsed[0][0, 0] = 5
    assert code_shares(collapsed)[0] == pytest.approx(199 / 200) and code_shares(healthy).max() < 0.1
    with caplog.at_level(logging.INFO, logger="audiossl.tokenizer"):
        warn_degenerate_codes(tmp_path / "ok.rvq", healthy)
        assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
        warn_degenerate_codes(tmp_path / "bad.rvq", collapsed + [np.zeros((0, 2), int)])
    warned = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warned) == 1 and "bad.rvq" in warned[0] and "level(s) 0 " in warned[0]
