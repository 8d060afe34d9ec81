"""EMA cosine VQ: buffers not parameters, bf16 autocast + optimiser step, k-means init, dead-code restart."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from audiossl.tokenizers.vq import EMAVectorQuantizer, VQConfig, distinct_seeds, l2norm, spherical_kmeans


def _clusters(k: int = 4, dim: int = 8, per: int = 64, seed: int = 0, noise: float = 0.05) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    centres = l2norm(torch.randn(k, dim, generator=g))
    x = centres.repeat_interleave(per, 0) + noise * torch.randn(k * per, dim, generator=g)
    return x[torch.randperm(len(x), generator=g)], centres


class _Net(nn.Module):
    def __init__(self, cfg: VQConfig):
        super().__init__()
        self.proj = nn.Linear(cfg.dim, cfg.dim)
        self.vq = EMAVectorQuantizer(cfg)
        self.head = nn.Linear(cfg.dim, 1)

    def forward(self, x):
        out = self.vq(self.proj(x))
        return self.head(out.quantized).pow(2).mean() + out.commit_loss, out


def test_codebook_is_buffers_not_parameters():
    vq = EMAVectorQuantizer(VQConfig(num_codes=16, dim=4))
    assert not list(vq.parameters())
    assert {"codebook", "ema_count", "ema_sum", "initialised"} <= set(dict(vq.named_buffers()))
    assert all(b.dtype == torch.float32 for n, b in vq.named_buffers() if n != "initialised")


def test_ema_survives_bf16_autocast_and_optimiser_step():
    torch.manual_seed(0)
    cfg = VQConfig(num_codes=8, dim=8, decay=0.9, dead_code_threshold=0.0)
    net = _Net(cfg)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-2, weight_decay=0.1)
    x, _ = _clusters()
    for step in range(3):
        before = net.vq.codebook.clone()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss, out = net(x)
        after_forward = net.vq.codebook.clone()
        assert not torch.equal(before, after_forward), f"step {step}: the EMA update did not change the codebook"
        opt.zero_grad()
        loss.backward()
        assert net.proj.weight.grad is not None and net.proj.weight.grad.abs().sum() > 0  # straight-through
        opt.step()
        assert torch.equal(net.vq.codebook, after_forward), "the optimiser step changed the codebook"
        assert net.vq.codebook.dtype == torch.float32 and net.vq.ema_sum.dtype == torch.float32
        assert torch.allclose(net.vq.codebook.norm(dim=-1), torch.ones(cfg.num_codes), atol=1e-4)
        assert out.quantized.dtype == torch.float32 and torch.isfinite(loss)


def test_kmeans_init_and_ema_find_the_clusters():
    torch.manual_seed(6)  # seeds are random rows (as BEATs' init): this seed puts one in each cluster
    x, centres = _clusters(k=4, per=64)
    vq = EMAVectorQuantizer(VQConfig(num_codes=4, dim=8, decay=0.5, dead_code_threshold=0.0), seed=3).train()
    assert not bool(vq.initialised)
    for _ in range(5):
        out = vq(x)
    assert bool(vq.initialised)
    cos = vq.codebook @ centres.T  # every centre has a code pointing at it
    assert cos.max(0).values.min() > 0.98
    assert float(out.usage) == 1.0 and abs(float(out.perplexity) - 4.0) < 0.05
    # codes agree with the cluster structure: vectors of one cluster share one code
    labels = (l2norm(x) @ centres.T).argmax(-1)
    for c in range(4):
        assert out.codes[labels == c].unique().numel() == 1


def test_eval_mode_does_not_update_and_masked_vectors_are_ignored():
    x, _ = _clusters()
    vq = EMAVectorQuantizer(VQConfig(num_codes=4, dim=8, decay=0.5)).train()
    vq(x)
    snapshot = {k: v.clone() for k, v in vq.state_dict().items()}
    vq.eval()
    vq(x * 3 + 1)
    assert all(torch.equal(snapshot[k], v) for k, v in vq.state_dict().items())
    vq.train()
    mask = torch.zeros(len(x), dtype=torch.bool)
    out = vq(torch.randn_like(x) * 100, mask)  # nothing valid: the EMA only decays, no vector is absorbed
    assert torch.allclose(vq.ema_count, snapshot["ema_count"] * 0.5)
    assert float(out.commit_loss) == 0.0


def test_dead_code_restart_moves_unused_codes_onto_batch_vectors():
    x, _ = _clusters(k=2, per=50)
    vq = EMAVectorQuantizer(VQConfig(num_codes=6, dim=8, decay=0.9, dead_code_threshold=0.2, kmeans_iters=3), seed=1).train()
    vq(x)
    with torch.no_grad():
        vq.ema_count[5] = 0.0
        vq.codebook[5] = -l2norm(x[:1])[0]  # points away from every input: never chosen
    vq(x)
    data = l2norm(x)
    assert (data @ vq.codebook[5]).max() > 0.999, "the dead code was not moved onto a batch vector"
    assert float(vq.ema_count[5]) > 0.2 * float(vq.ema_count.mean())


def test_restart_disabled_keeps_dead_codes():
    x, _ = _clusters(k=2, per=50)
    vq = EMAVectorQuantizer(VQConfig(num_codes=6, dim=8, decay=0.9, dead_code_threshold=0.0, kmeans_iters=3), seed=1).train()
    vq(x)
    with torch.no_grad():
        vq.ema_count[5] = 0.0
        vq.codebook[5] = -l2norm(x[:1])[0]
    kept = vq.codebook[5].clone()
    vq(x)
    assert torch.equal(vq.codebook[5], kept)


class _SyncWatch(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.syncs = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func in (torch.ops.aten._local_scalar_dense.default, torch.ops.aten.nonzero.default):
            self.syncs.append(str(func))
        return func(*args, **(kwargs or {}))


def test_forward_after_init_never_reads_tensors_on_the_host():
    x, _ = _clusters()
    vq = EMAVectorQuantizer(VQConfig(num_codes=8, dim=8, dead_code_threshold=0.1)).train()
    vq(x)  # initialisation reads the flag and picks the valid rows once
    with _SyncWatch() as watch:
        out = vq(x, torch.ones(len(x), dtype=torch.bool))
    assert watch.syncs == []
    assert out.usage.shape == () and out.perplexity.shape == ()


def test_state_dict_roundtrip_keeps_initialisation():
    x, _ = _clusters()
    a = EMAVectorQuantizer(VQConfig(num_codes=4, dim=8), seed=0).train()
    a(x)
    b = EMAVectorQuantizer(VQConfig(num_codes=4, dim=8), seed=9).train()
    b(x * -1.0)  # b initialises on other data, then takes a's state
    b.load_state_dict(a.state_dict())
    before = b.codebook.clone()
    b.eval()
    assert torch.equal(b(x).codes, a.eval()(x).codes)
    b.train()
    b(x)  # an EMA step, not a fresh k-means: stays close to the loaded codebook
    assert (b.codebook * before).sum(-1).min() > 0.9


def test_spherical_kmeans_with_fewer_points_than_codes():
    x = torch.randn(5, 4)
    c = spherical_kmeans(x, 8, 3, torch.Generator().manual_seed(0))
    assert c.shape == (8, 4) and torch.allclose(c.norm(dim=-1), torch.ones(8), atol=1e-5)


def _min_gap(c: torch.Tensor) -> float:
    """Smallest distance between two rows of ``c [k, dim]``."""
    d = torch.cdist(c, c) + torch.eye(len(c)) * 10
    return float(d.min())


def test_codes_are_never_equal_so_no_nearest_code_search_ties():
    # Equal codes tie in every argmin, and then the matmul kernel's rounding picks the code: the
    # BEATs tokenizer's golden trace moved between AVX2 and AVX-512 CPUs until seeds were distinct.
    x = l2norm(torch.randn(5, 16))
    silence = torch.cat([x, x[:1].repeat(20, 1)])  # one vector repeated, as digital silence gives
    for data in (x, silence):
        c = distinct_seeds(data, 12, torch.Generator().manual_seed(0))
        assert c.shape == (12, 16) and _min_gap(c) > 1e-4
        assert _min_gap(spherical_kmeans(data, 12, 3, torch.Generator().manual_seed(0))) > 1e-4
    first = distinct_seeds(silence, 5, torch.Generator().manual_seed(0))  # enough distinct rows: no jitter
    assert all(bool((torch.cdist(row[None], x) < 1e-6).any()) for row in first)


def test_restarted_codes_are_distinct_even_when_many_die_at_once():
    torch.manual_seed(0)
    x, _ = _clusters(k=2, per=4)  # 8 vectors for 32 codes: most codes die
    vq = EMAVectorQuantizer(VQConfig(num_codes=32, dim=8, decay=0.5, dead_code_threshold=0.5, kmeans_iters=2)).train()
    for _ in range(3):
        vq(x)
        assert _min_gap(vq.codebook) > 1e-4


def test_default_update_is_unilm_norm_ema_of_batch_means():
    """unilm ``NormEMAVectorQuantizer``: used codes ← l2norm(decay·c + (1−decay)·l2norm(batch mean)),
    unused codes kept, ``ema_count`` (unilm ``quantize.cluster_size``) = EMA of the code counts, no restart."""
    cfg = VQConfig(num_codes=6, dim=8, decay=0.8, kmeans_iters=2)
    assert cfg.update == "unilm" and cfg.dead_code_threshold == 0.0
    x, _ = _clusters(k=3, per=20)
    vq = EMAVectorQuantizer(cfg, seed=2).train()
    vq(x)
    with torch.no_grad():
        vq.codebook[5] = -l2norm(x.sum(0, keepdim=True))[0]  # far from the data: stays unused
    c0, n0 = vq.codebook.clone(), vq.ema_count.clone()
    z = l2norm(x)
    codes = (z @ c0.T).argmax(-1)  # cosine nearest = euclidean nearest on unit vectors
    out = vq(x)
    assert torch.equal(out.codes, codes)
    bins = torch.bincount(codes, minlength=6).float()
    want = c0.clone()
    for k in range(6):
        if bins[k] > 0:
            mean = l2norm(z[codes == k].sum(0) / bins[k])
            want[k] = l2norm(0.8 * c0[k] + 0.2 * mean)
    assert bins[5] == 0 and torch.equal(vq.codebook[5], c0[5])
    assert torch.allclose(vq.codebook, want, atol=1e-6)
    assert torch.allclose(vq.ema_count, 0.8 * n0 + 0.2 * bins)


def test_laplace_update_is_a_named_option():
    x, _ = _clusters(k=3, per=20)
    vq = EMAVectorQuantizer(VQConfig(num_codes=6, dim=8, decay=0.8, update="laplace", kmeans_iters=2), seed=2).train()
    for _ in range(2):
        vq(x)
    total = vq.ema_count.sum()
    smoothed = (vq.ema_count + 1e-5) / (total + 6 * 1e-5) * total
    assert torch.allclose(vq.codebook, l2norm(vq.ema_sum / smoothed[:, None]), atol=1e-6)
    import pytest

    with pytest.raises(ValueError, match="update"):
        VQConfig(update="sum")
