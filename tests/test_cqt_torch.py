"""On-device CQT target: librosa agreement, alignment to the student's frames, shape, normalisation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from audiossl.audio.cqt_torch import TorchCQT, log_cqt_target
from audiossl.models.mert import build_cqt, build_mert, mert_tiny

SR, HOP, FMIN = 24000, 320, 32.70319566257483


def _signal(seconds: float = 1.5, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    y = 0.3 * np.sin(2 * np.pi * 440 * t) + 0.2 * np.sin(2 * np.pi * 55 * t * (1 + 0.2 * t)) + 0.02 * rng.standard_normal(len(t))
    return y.astype(np.float32)


@pytest.fixture(scope="module")
def cqt():
    return TorchCQT(SR, HOP, 336, 48, FMIN, center_offset=200)


def test_matches_librosa_on_the_student_frames(cqt):
    import librosa

    y = _signal()
    num_frames = (len(y) - 400) // HOP + 1  # student frames (receptive field 400, hop 320)
    ours = cqt(torch.from_numpy(y)[None], num_frames)[0].numpy()
    assert ours.shape == (num_frames, 336)
    # librosa frame i is centred on sample i * hop of its input: feed it y[200:] so that frame i is
    # centred on 320 i + 200, the centre of the student's frame i
    ref = np.abs(librosa.cqt(y[200:], sr=SR, hop_length=HOP, fmin=FMIN, n_bins=336, bins_per_octave=48, scale=False)).T[:num_frames]
    lengths, _ = librosa.filters.wavelet_lengths(freqs=FMIN * 2.0 ** (np.arange(336) / 48), sr=SR, window="hann", filter_scale=1)
    ours_scaled = ours * lengths[None, :]  # librosa scale=False weights each bin by its filter length
    inner = slice(3, -3)  # the first/last frames see the signal edge differently (zero padding vs resampler)
    err = np.abs(ours_scaled - ref)[inner].max() / ref.max()
    assert err < 0.01, err
    corr = np.corrcoef(np.log(ours_scaled[inner] + 1e-3).ravel(), np.log(ref[inner] + 1e-3).ravel())[0, 1]
    assert corr > 0.99, corr
    # peaks where the tones are: 440 Hz is bin 48 * log2(440 / fmin) = 180
    assert abs(int(ours[num_frames // 2].argmax()) - 180) <= 1


def test_alignment_an_onset_lands_in_the_student_frame(cqt):
    """A click at sample s peaks in the frame whose centre (320 i + 200) is closest to s."""
    for s in (6400 + 200, 9600 + 200 + 160):
        y = np.zeros(24000, np.float32)
        y[s] = 1.0
        mag = cqt(torch.from_numpy(y)[None], (24000 - 400) // HOP + 1)[0]
        top = mag[:, 250:].sum(-1)  # short high-frequency filters localise the click
        want = round((s - 200) / HOP)
        assert abs(int(top.argmax()) - want) <= (0 if (s - 200) % HOP == 0 else 1)


def test_model_target_shape_padding_and_normalisation():
    torch.manual_seed(0)
    model = build_mert(mert_tiny(num_classes=16)).eval()
    wavs = torch.from_numpy(np.stack([_signal(1.0, 0), _signal(1.0, 1)]))
    wavs[1, 16000:] = 0
    lengths = torch.tensor([24000, 16000])
    t = model.encoder.num_frames(24000)
    targets = torch.randint(0, 16, (2, t, 8))
    out = model(wavs, lengths, targets)
    assert out.cqt_target.shape == (2, t, 336) == out.cqt_pred.shape
    n1 = model.encoder.num_frames(16000)
    assert torch.all(out.cqt_target[1, n1:] == 0)  # padding frames carry no target
    valid = out.cqt_target[0]
    assert abs(float(valid.mean())) < 1e-4 and abs(float(valid.std()) - 1) < 1e-2
    # the padded item's target equals the target of the item alone (no leak from padding)
    alone = model(wavs[1:, :16000], None, targets[1:, :n1]).cqt_target
    assert float((out.cqt_target[1, :n1] - alone[0]).abs().max()) < 1e-3
    # the model's teacher is the 336-bin, 48/octave, 32.7 Hz, hop-320 CQT centred on the student frames
    c = build_cqt(model.cfg)
    assert (c.n_bins, c.bins_per_octave, c.hop_length, c.center_offset) == (336, 48, 320, 200)
    assert "cqt.kernel_0" not in model.state_dict()  # rebuilt from the config, not stored


def test_log_target_gain_invariant():
    mag = torch.rand(1, 20, 12) + 0.1
    a, b = log_cqt_target(mag), log_cqt_target(3.0 * mag)
    assert torch.allclose(a, b, atol=1e-3)


def test_refuses_bins_above_nyquist():
    with pytest.raises(ValueError, match="Nyquist"):
        TorchCQT(8000, 80, 336, 48, FMIN)
