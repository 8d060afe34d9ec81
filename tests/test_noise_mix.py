"""In-batch noise mixture: targets stay clean by construction, input changes, deterministic, padding-safe."""

from __future__ import annotations

import torch

from audiossl.models.mert.model import build_mert, mert_tiny
from audiossl.audio.mixing import NoiseMixConfig, mix_in_batch_noise

SR = 24000


def _batch(b: int = 4, s: int = 36000):
    g = torch.Generator().manual_seed(0)
    t = torch.arange(s) / SR
    wavs = torch.stack([0.3 * torch.sin(2 * torch.pi * (200 + 100 * i) * t) for i in range(b)])
    wavs = wavs + 0.01 * torch.randn(b, s, generator=g)
    lengths = torch.tensor([s, s - 6000, s - 12000, s][:b])
    wavs = wavs * (torch.arange(s)[None] < lengths[:, None])
    return wavs, lengths


def test_mixture_adds_other_clips_inside_valid_samples_only():
    wavs, lengths = _batch()
    cfg = NoiseMixConfig(prob=1.0)
    mixed = mix_in_batch_noise(wavs, lengths, SR, cfg, generator=torch.Generator().manual_seed(1))
    assert mixed.shape == wavs.shape and not torch.equal(mixed, wavs)
    diff = (mixed - wavs).abs() > 1e-7
    valid = torch.arange(wavs.shape[1])[None] < lengths[:, None]
    assert not (diff & ~valid).any()  # padding stays zero
    changed = diff.sum(1)
    assert torch.all(changed >= int(0.5 * SR) - 1)  # every item got >= one 0.5 s segment
    assert torch.all(changed <= 3 * SR)  # at most three 1 s segments
    # MERT: raw segments at volume 1, so the added part has the other clips' level (0.3-amplitude tones)
    ratio = ((mixed - wavs)[diff].pow(2).mean() / wavs[valid].pow(2).mean())
    assert 0.7 < float(ratio) < 3.5
    half = mix_in_batch_noise(wavs, lengths, SR, NoiseMixConfig(prob=1.0, volume=0.5), generator=torch.Generator().manual_seed(1))
    assert torch.allclose(half - wavs, 0.5 * (mixed - wavs), atol=1e-6)
    # the input tensor is untouched
    assert torch.equal(wavs, _batch()[0])


def test_probability_and_determinism():
    wavs, lengths = _batch(4)
    a = mix_in_batch_noise(wavs, lengths, SR, generator=torch.Generator().manual_seed(3))
    b = mix_in_batch_noise(wavs, lengths, SR, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    assert torch.equal(mix_in_batch_noise(wavs, lengths, SR, NoiseMixConfig(prob=0.0)), wavs)
    assert torch.equal(mix_in_batch_noise(wavs[:1], lengths[:1], SR, NoiseMixConfig(prob=1.0)), wavs[:1])  # no other clip
    many = torch.randn(200, 12000, generator=torch.Generator().manual_seed(1))
    hit = (mix_in_batch_noise(many, None, SR, generator=torch.Generator().manual_seed(0)) != many).any(1)
    assert 0.38 < float(hit.float().mean()) < 0.62  # p = 0.5 per item (±3.4 sigma)


def test_segments_come_from_the_pool_of_other_clips_added_raw():
    """MERT: segments are cut from the other clips concatenated (one may run across two) and added as is."""
    b, s = 3, 30000
    wavs = (10.0 ** torch.arange(b, dtype=torch.float32))[:, None].expand(b, s).contiguous()  # item i is constant 10^i
    for seed in range(4):
        mixed = mix_in_batch_noise(wavs, None, SR, NoiseMixConfig(prob=1.0), generator=torch.Generator().manual_seed(seed))
        for i in range(b):
            added = (mixed[i] - wavs[i]).round().long()  # sum of 10^k over segments' samples; ≤ 3 overlap: no carry
            assert torch.allclose(mixed[i] - wavs[i], added.float(), atol=1e-3) and int(added.max()) >= 1
            assert int(((added // 10**i) % 10).max()) == 0  # never the item itself
            assert int(((added // 1) % 10 + (added // 10) % 10 + (added // 100) % 10).max()) <= 3


def test_snr_option_scales_segments_to_the_item_energy():
    s = 30000
    wavs = torch.tensor([[2.0], [5.0]]).expand(2, s).contiguous()
    mixed = mix_in_batch_noise(wavs, None, SR, NoiseMixConfig(prob=1.0, snr_db=(0.0, 0.0)), generator=torch.Generator().manual_seed(0))
    for i in range(2):
        # at 0 dB every segment is rescaled to the item's own energy: it adds exactly the item's value (×2, ×3 overlapping)
        added = (mixed[i] - wavs[i]) / wavs[i, 0]
        assert torch.allclose(added, added.round(), atol=1e-4) and float(added.max()) >= 1 - 1e-4
    # two clips: whatever item 0 gets comes from item 1 (a 700 Hz tone), never from itself (300 Hz)
    t = torch.arange(s) / SR
    two = torch.stack([torch.sin(2 * torch.pi * 300 * t), torch.sin(2 * torch.pi * 700 * t)])
    added = mix_in_batch_noise(two, None, SR, NoiseMixConfig(prob=1.0), generator=torch.Generator().manual_seed(0))[0] - two[0]
    spec = torch.fft.rfft(added).abs()
    assert float(spec[700 * s // SR - 3 : 700 * s // SR + 4].max()) > 20 * float(spec[300 * s // SR - 3 : 300 * s // SR + 4].max())


def test_model_targets_are_clean_by_construction():
    torch.manual_seed(0)
    model = build_mert(mert_tiny(num_classes=16, noise_mix_prob=1.0)).train()
    wavs, lengths = _batch(4, 24000)
    t = model.encoder.num_frames(24000)
    targets = torch.randint(0, 16, (4, t, 8))
    mask = torch.zeros(4, t, dtype=torch.bool)
    mask[:, 10:20] = True
    mixed = model(wavs, lengths, targets, mask_indices=mask, generator=torch.Generator().manual_seed(0))
    model.cfg.noise_mix_prob = 0.0
    clean = model(wavs, lengths, targets, mask_indices=mask, generator=torch.Generator().manual_seed(0))
    assert not torch.equal(mixed.mixed_wavs, wavs) and torch.equal(clean.mixed_wavs, wavs)
    assert torch.equal(mixed.cqt_target, clean.cqt_target)  # same CQT target with and without mixing
    # and the encoder really heard the mixture (so the target would have differed if taken from it)
    assert not torch.allclose(model.cqt(mixed.mixed_wavs, t), model.cqt(wavs, t))
    model.eval()  # no mixing outside training
    model.cfg.noise_mix_prob = 1.0
    assert torch.equal(model(wavs, lengths, targets, mask_indices=mask).mixed_wavs, wavs)
