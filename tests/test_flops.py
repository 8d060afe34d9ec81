"""Analytic FLOP count against torch's FlopCounterMode, the HuBERT Base reference, peak/MFU helpers."""

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from audiossl.models import build_hubert, hubert_base, hubert_large, hubert_tiny
from audiossl.models.flops import mfu, peak_flops
from audiossl.models.hubert.flops import estimate_mfu, forward_flops, hubert_train_flops_per_second, train_flops


LARGE_STYLE = {"extractor_mode": "layer_norm", "conv_bias": True, "layer_norm_first": True}


@pytest.mark.parametrize("overrides", [{}, LARGE_STYLE])
def test_matches_flop_counter_on_tiny_forward(overrides):
    cfg = hubert_tiny(num_layers=3, pos_conv_kernel=31, **overrides)
    model = build_hubert(cfg).eval()
    wavs = torch.randn(1, 24000)
    counter = FlopCounterMode(display=False)
    # the math backend decomposes attention into bmm, which FlopCounterMode counts on CPU
    with sdpa_kernel(SDPBackend.MATH), counter, torch.no_grad():
        model.compute_logits(model.encoder(wavs).hidden_states[-1])
    measured = counter.get_total_flops()
    analytic = forward_flops(cfg, 24000)
    assert abs(analytic - measured) / measured < 0.01, (analytic, measured)


def test_hubert_base_reference():
    cfg = hubert_base()
    per_s = hubert_train_flops_per_second(cfg)  # default: 10 s utterances
    assert abs(per_s / 1e9 - 44.6) < 0.5
    # the T^2 attention term makes longer utterances cost more per second
    assert hubert_train_flops_per_second(cfg, 16000) < per_s < hubert_train_flops_per_second(cfg, 250000)
    assert train_flops(cfg, 16000) == 3 * forward_flops(cfg, 16000)
    assert 2 * per_s < hubert_train_flops_per_second(hubert_large()) < 3 * per_s  # same conv frontend
    assert forward_flops(cfg, 100) == 0  # below the receptive field: no frame, no work


def test_peak_and_mfu():
    assert peak_flops("NVIDIA H100 80GB HBM3") == 989e12
    assert peak_flops("NVIDIA H200") == 989e12
    assert peak_flops("NVIDIA A100-SXM4-40GB") == 312e12
    assert peak_flops("anything", override=1e12) == 1e12
    with pytest.raises(ValueError, match="override"):
        peak_flops("Mystery Accelerator 9000")
    assert mfu(494.5e12, 989e12) == pytest.approx(0.5)
    with pytest.raises(ValueError):
        mfu(1.0, 0.0)
    # 1000 audio-seconds per second on an H100 for Base at 10 s utterances
    assert estimate_mfu(hubert_base(), 1000.0, device_name="H100") == pytest.approx(
        1000 * hubert_train_flops_per_second(hubert_base()) / 989e12
    )
