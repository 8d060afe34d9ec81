"""On-device CQT target: parity with nnAudio's CQT1992v2 (MERT's teacher), frame centres, padding, model target."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from audiossl.audio.cqt_torch import TorchCQT, log_cqt_target
from audiossl.models.mert.model import build_cqt, build_mert, mert_tiny

SR, HOP = 24000, 320


def _signal(seconds: float = 1.5, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    y = 0.3 * np.sin(2 * np.pi * 440 * t) + 0.2 * np.sin(2 * np.pi * 55 * t * (1 + 0.2 * t)) + 0.02 * rng.standard_normal(len(t))
    return y.astype(np.float32)


@pytest.fixture(scope="module")
def cqt():
    return TorchCQT(SR, HOP, 336, 48, 32.7)


def test_matches_nnaudio_cqt1992v2(cqt):
    """MERT's teacher (mert_model.py, model_cqt_pred): nnAudio CQT with these exact settings, padded batch."""
    features = pytest.importorskip("nnAudio.features", reason="nnAudio not installed (pip install '.[parity]')")
    ref = features.cqt.CQT(
        sr=SR, hop_length=SR // 75, fmin=32.7, fmax=None, n_bins=336, bins_per_octave=336 // 7, filter_scale=1, norm=1,
        window="hann", center=True, pad_mode="constant", trainable=False, output_format="Magnitude", verbose=False,
    )
    wavs = torch.from_numpy(np.stack([_signal(1.5, 0), _signal(1.5, 1)]))
    wavs[1, 26000:] = 0  # a padded item
    want = ref(wavs).transpose(1, 2)  # [B, frames, bins]
    got = cqt(wavs, want.shape[1])
    assert got.shape == want.shape == (2, 36000 // HOP + 1, 336)
    # the strided convolutions are nnAudio's arithmetic (1e-9 here); the default FFT path adds fp32
    # rounding amplified by the polyphase sum's cancellation (module doc): 6e-6 here, on any FFT library
    direct = TorchCQT(SR, HOP, 336, 48, 32.7, method="direct")(wavs, want.shape[1])
    assert float((direct - want).abs().max() / want.abs().max()) < 1e-6
    err = float((got - want).abs().max() / want.abs().max())
    assert err < 2e-5, err
    # the padded item alone gives the same frames (zero padding is nnAudio's constant padding)
    alone = cqt(wavs[1:, :26000], 26000 // HOP + 1)[0]
    torch.testing.assert_close(alone, got[1, : 26000 // HOP + 1], atol=1e-5 * float(want.max()), rtol=1e-5)


@pytest.mark.parametrize("batch,samples", [(3, 36000), (2, 23999), (1, 1000), (2, 100)])
def test_fft_method_equals_direct_convolution(cqt, batch, samples):
    """The polyphase FFT path forms the strided convolutions' sums (to fp32 FFT rounding), blocks included."""
    direct = TorchCQT(SR, HOP, 336, 48, 32.7, method="direct")
    wavs = torch.from_numpy(np.stack([_signal(samples / SR, k) for k in range(batch)]))
    want = direct(wavs)
    for blocks in (256, 7):  # one block per item; many blocks of 7 frames stacked on the batch axis
        cqt.max_block_frames = blocks
        got = cqt(wavs)
        assert got.shape == want.shape
        assert float((got - want).abs().max() / want.abs().max()) < 2e-5
    cqt.max_block_frames = 256


def test_fft_spectra_cache_is_bounded_and_follows_the_module():
    small = TorchCQT(SR, HOP, 96, 24, 32.7, cache_mib=1.0)
    wav = torch.from_numpy(_signal(1.0))[None]
    first = small(wav)
    assert small._spectra  # cached per (group, FFT length)
    assert sum(v.numel() * v.element_size() for v in small._spectra.values()) <= 2**20 or len(small._spectra) == 1
    small.double()  # a move or cast drops the cache (its spectra belong to the old device/dtype)
    assert not small._spectra
    torch.testing.assert_close(small.float()(wav), first)
    with pytest.raises(ValueError, match="method"):
        TorchCQT(SR, HOP, 96, 24, 32.7, method="nnaudio")


def test_frame_i_is_centred_on_sample_hop_times_i(cqt):
    """nnAudio center=True: a click at sample s peaks in frame round(s / hop)."""
    for s in (6400, 9600 + 160):
        y = np.zeros(24000, np.float32)
        y[s] = 1.0
        mag = cqt(torch.from_numpy(y)[None], 24000 // HOP + 1)[0]
        top = mag[:, 250:].sum(-1)  # short high-frequency filters localise the click
        want = round(s / HOP)
        assert abs(int(top.argmax()) - want) <= (0 if s % HOP == 0 else 1)
    y = _signal()
    assert abs(int(cqt(torch.from_numpy(y)[None])[0, 50].argmax()) - 180) <= 1  # 440 Hz: bin 48·log2(440/32.7)


def test_model_target_is_the_raw_magnitude_on_masked_frames():
    torch.manual_seed(0)
    model = build_mert(mert_tiny(num_classes=16)).eval()
    wavs = torch.from_numpy(np.stack([_signal(1.0, 0), _signal(1.0, 1)]))
    wavs[1, 16000:] = 0
    lengths = torch.tensor([24000, 16000])
    t = model.encoder.num_frames(24000)
    targets = torch.randint(0, 16, (2, t, 8))
    mask = torch.zeros(2, t, dtype=torch.bool)
    mask[:, 5:30] = True
    out = model(wavs, lengths, targets, mask_indices=mask)
    assert out.cqt_target.shape == (2, t, 336) == out.cqt_pred.shape
    c = build_cqt(model.cfg)
    assert (c.n_bins, c.bins_per_octave, c.hop_length, c.center_offset, c.fmin) == (336, 48, 320, 0, 32.7)
    torch.testing.assert_close(out.cqt_target, c(wavs, t))  # MERT: first T frames of the CQT, no log, no scaling
    # plain MSE (nn.MSELoss) over the masked, non-padded frames and all bins
    n1 = model.encoder.num_frames(16000)
    sel = mask & (torch.arange(t)[None] < torch.tensor([t, n1])[:, None])
    torch.testing.assert_close(out.loss_cqt, torch.nn.functional.mse_loss(out.cqt_pred[sel], out.cqt_target[sel]))
    assert "cqt.kernel_0" not in model.state_dict()  # rebuilt from the config, not stored
    # the non-MERT option: log-magnitude standardised per utterance, centred on the student's frames
    model.cfg.cqt_target = "log_norm"
    model.cqt = build_cqt(model.cfg)
    assert model.cqt.center_offset == 200
    norm = model(wavs, lengths, targets, mask_indices=mask).cqt_target
    assert torch.all(norm[1, n1:] == 0) and abs(float(norm[0].mean())) < 1e-4


def test_log_target_gain_invariant():
    mag = torch.rand(1, 20, 12) + 0.1
    a, b = log_cqt_target(mag), log_cqt_target(3.0 * mag)
    assert torch.allclose(a, b, atol=1e-3)


def test_refuses_bins_above_nyquist():
    with pytest.raises(ValueError, match="Nyquist"):
        TorchCQT(8000, 80, 336, 48, 32.7)
