"""No host syncs inside a training step (issue #8): forward, backward, gradient clipping and the
guarded fused AdamW step run under ``torch.cuda.set_sync_debug_mode("error")``. GPU only."""

from __future__ import annotations

import pytest
import torch

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


def _step(model, opt, wavs, lengths, targets, gen):
    with torch.autocast("cuda", dtype=torch.bfloat16):
        out = model(wavs, lengths, targets, generator=gen)
    out.loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
    opt.step()
    opt.zero_grad(set_to_none=True)
    return out


def test_hubert_train_step_has_no_host_sync():
    from audiossl.models.hubert.model import build_hubert, hubert_tiny
    from audiossl.pretrain.health import GuardedAdamW

    torch.manual_seed(0)
    model = build_hubert(hubert_tiny()).cuda().train()
    opt = GuardedAdamW(model.parameters(), lr=1e-4)
    wavs = torch.randn(4, 32000, device="cuda")
    lengths = torch.tensor([32000, 24000, 20000, 32000], device="cuda")
    targets = torch.randint(0, 100, (4, 99), device="cuda")
    gen = torch.Generator(device="cuda").manual_seed(0)
    _step(model, opt, wavs, lengths, targets, gen)  # warm-up: allocator, kernels, lazy optimizer state
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        out = _step(model, opt, wavs, lengths, targets, gen)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert torch.isfinite(out.loss)


def test_wavlm_train_step_with_utterance_mixing_has_no_host_sync():
    """Utterance mixing (speech and noise) + the dense gated relative bias (attention dropout on)."""
    from audiossl.models.wavlm.model import build_wavlm, wavlm_tiny
    from audiossl.pretrain.health import GuardedAdamW

    torch.manual_seed(0)
    model = build_wavlm(wavlm_tiny(mix_prob=1.0, mix_noise_share=0.5, attention_impl="eager")).cuda().train()
    opt = GuardedAdamW(model.parameters(), lr=1e-4)
    wavs = torch.randn(4, 32000, device="cuda")
    lengths = torch.tensor([32000, 24000, 20000, 32000], device="cuda")
    targets = torch.randint(0, 100, (4, 99), device="cuda")
    gen = torch.Generator(device="cuda").manual_seed(0)
    _step(model, opt, wavs, lengths, targets, gen)  # warm-up
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        out = _step(model, opt, wavs, lengths, targets, gen)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert torch.isfinite(out.loss)


def test_data2vec2_train_step_and_teacher_update_have_no_host_sync():
    """data2vec 2.0: block masks with a host-sized gather, ALiBi masks, the decoder, and the EMA step."""
    from audiossl.models.data2vec2 import build_data2vec2, data2vec2_tiny
    from audiossl.pretrain.health import GuardedAdamW

    torch.manual_seed(0)
    model = build_data2vec2(data2vec2_tiny(encoder_layerdrop=0.2)).cuda().train()
    opt = GuardedAdamW(model.parameters(), lr=1e-4)
    wavs = torch.randn(4, 32000, device="cuda")
    lengths = torch.tensor([32000, 24000, 20000, 32000], device="cuda")
    targets = torch.zeros(4, 0, dtype=torch.long, device="cuda")
    gen = torch.Generator(device="cuda").manual_seed(0)
    model.before_train_step(1)
    _step(model, opt, wavs, lengths, targets, gen)  # warm-up
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        model.before_train_step(2)
        out = _step(model, opt, wavs, lengths, targets, gen)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert torch.isfinite(out.loss) and model.num_updates.item() == 1
