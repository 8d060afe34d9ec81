"""Batched, sync-free BEATs fbank (:func:`beats_fbank`) against the per-item torchaudio Kaldi fbank."""

from __future__ import annotations

import pytest
import torch
from torchaudio.compliance import kaldi

from audiossl.models import patch_frontend
from audiossl.models.patch_frontend import (
    FBANK_MEAN,
    FBANK_STD,
    beats_fbank,
    fbank_frame_lengths,
    kaldi_mel_banks,
    num_fbank_frames,
    patch_frame_lengths,
    patchify,
)

# very different lengths: 1 s, one sample short of a window (0 frames), exactly one window
# (1 frame), one sample short of a frame boundary, one sample past it; padded width S > max(lengths)
LENGTHS = [16000, 399, 400, 5359, 5361, 9001]
WIDTH = 16700


def _batch(seed: int = 0, lengths=LENGTHS, width: int = WIDTH, pad_value: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """``wavs [B, width]`` (noise + tone per item; ``pad_value`` past each length) and ``lengths [B]``."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(width) / 16000
    wavs = torch.full((len(lengths), width), pad_value)
    for i, n in enumerate(lengths):
        x = 0.2 * torch.sin(2 * torch.pi * (150 + 100 * i) * t) + 0.05 * torch.randn(width, generator=g) + 0.01 * i  # DC offset
        wavs[i, :n] = x[:n]
    return wavs, torch.tensor(lengths)


def _reference(wavs: torch.Tensor, lengths: torch.Tensor, num_mel_bins: int = 128) -> list[torch.Tensor]:
    """The per-item torchaudio loop the batched version replaces: one ``[frames_b, bins]`` per item."""
    out = []
    for b, n in enumerate(lengths.tolist()):
        if n < 400:
            out.append(torch.zeros(0, num_mel_bins))
            continue
        feats = kaldi.fbank(wavs[b : b + 1, :n] * 2**15, num_mel_bins=num_mel_bins, sample_frequency=16000,
                            frame_length=25, frame_shift=10)
        out.append((feats - FBANK_MEAN) / (2 * FBANK_STD))
    return out


def _check_equal(out: torch.Tensor, frames: torch.Tensor, ref: list[torch.Tensor], width: int) -> None:
    assert out.dtype == torch.float32
    assert out.shape[:2] == (len(ref), num_fbank_frames(width))
    assert frames.dtype == torch.long and frames.tolist() == [r.shape[0] for r in ref]
    for b, r in enumerate(ref):
        t = r.shape[0]
        if t:
            torch.testing.assert_close(out[b, :t], r, atol=1e-4, rtol=0)
        assert torch.count_nonzero(out[b, t:]) == 0, f"item {b}: frames past {t} must be zero"


@pytest.mark.parametrize("chunk_frames", [1, 250, 1024])
def test_batched_equals_per_item_torchaudio_loop(monkeypatch, chunk_frames):
    """One item per CPU chunk, two, and the whole batch at once (as compiled / on GPU)."""
    monkeypatch.setattr(patch_frontend, "_CPU_CHUNK_FRAMES", chunk_frames)
    wavs, lengths = _batch()
    out, frames = beats_fbank(wavs, lengths)
    assert frames.tolist() == [98, 0, 1, 31, 32, 54]
    _check_equal(out, frames, _reference(wavs, lengths), WIDTH)
    assert out.shape == (6, num_fbank_frames(WIDTH), 128) and out.shape[1] > max(frames.tolist())


def test_padding_never_leaks_into_a_valid_frame():
    """Non-zero (even non-finite) junk past each length changes nothing."""
    wavs, lengths = _batch()
    junk, _ = _batch(pad_value=float("nan"))
    junk[0, 16000:] = 7.0
    a, fa = beats_fbank(wavs, lengths)
    b, fb = beats_fbank(junk, lengths)
    assert torch.equal(fa, fb)
    assert torch.isfinite(b).all()
    torch.testing.assert_close(a, b, atol=0, rtol=0)


def test_num_mel_bins_and_no_lengths_and_short_input():
    wavs, lengths = _batch(lengths=[4000, 4000], width=4000)
    full, frames = beats_fbank(wavs, None, num_mel_bins=80)
    _check_equal(full, frames, _reference(wavs, lengths, 80), 4000)
    out, frames = beats_fbank(torch.zeros(3, 399), torch.tensor([399, 10, 0]))
    assert out.shape == (3, 0, 128) and out.dtype == torch.float32 and frames.tolist() == [0, 0, 0]
    # lengths past the padded width count as the width
    out, frames = beats_fbank(wavs, torch.tensor([4000, 99999]), num_mel_bins=80)
    assert frames.tolist() == [num_fbank_frames(4000)] * 2 and torch.equal(out, full)


def test_digital_silence_hits_the_eps_floor_like_torchaudio():
    wavs = torch.zeros(2, 2000)
    wavs[1, :1000] = 0.1
    out, frames = beats_fbank(wavs, torch.tensor([2000, 2000]))
    _check_equal(out, frames, _reference(wavs, torch.tensor([2000, 2000])), 2000)


def test_mel_banks_are_torchaudio_kaldi_mel_banks():
    for bins in (128, 80, 23):
        ref, _ = kaldi.get_mel_banks(bins, 512, 16000.0, 20.0, 0.0, 100.0, -500.0, 1.0)
        assert torch.equal(kaldi_mel_banks(bins, "cpu"), ref)


def test_frame_lengths_vectorised():
    n = torch.arange(0, 6000, 7)
    assert fbank_frame_lengths(n).tolist() == [num_fbank_frames(int(k)) for k in n]
    assert patch_frame_lengths(n).tolist() == [num_fbank_frames(int(k)) // 16 for k in n]


def test_inference_mode_and_bf16_autocast_stay_fp32():
    wavs, lengths = _batch()
    ref, _ = beats_fbank(wavs, lengths)
    with torch.inference_mode():
        out, frames = beats_fbank(wavs, lengths)
    assert out.is_inference() and torch.equal(out, ref)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, _ = beats_fbank(wavs.bfloat16().float(), lengths)  # bf16 audio in, fp32 features out
        out2, _ = beats_fbank(wavs.to(torch.bfloat16), lengths)
    assert out.dtype == out2.dtype == torch.float32
    torch.testing.assert_close(out, out2, atol=0, rtol=0)
    _check_equal(out, frames, _reference(wavs.bfloat16().float(), lengths), WIDTH)


def test_traces_into_one_graph_without_host_sync():
    """fullgraph=True fails on ``.tolist()`` / ``.item()`` / data-dependent shapes (the old per-item loop)."""
    torch._dynamo.reset()
    wavs, lengths = _batch(lengths=[3000, 1000, 399], width=3200)
    explain = torch._dynamo.explain(beats_fbank)(wavs, lengths)
    assert explain.graph_count == 1 and explain.graph_break_count == 0, explain.break_reasons
    compiled = torch.compile(beats_fbank, fullgraph=True, backend="aot_eager", dynamic=False)
    out, frames = compiled(wavs, lengths)
    _check_equal(out, frames, _reference(wavs, lengths), 3200)
    torch._dynamo.reset()


def test_patches_of_extra_frames_are_padding():
    """S > max(lengths): the extra patch steps are zero and beyond every item's patch length."""
    wavs, lengths = _batch(lengths=[8000, 5000], width=12000)
    out, _ = beats_fbank(wavs, lengths)
    patches = patchify(out)  # [B, T, 8, 256]
    steps = patch_frame_lengths(lengths)
    assert patches.shape[1] == num_fbank_frames(12000) // 16 > int(steps.max())
    for b, n in enumerate(lengths.tolist()):
        first_empty = -(-num_fbank_frames(n) // 16)  # the first patch step with no valid frame
        assert first_empty <= patches.shape[1] - 1
        assert torch.count_nonzero(patches[b, first_empty:]) == 0
        assert torch.count_nonzero(patches[b, : int(steps[b])]) == patches[b, : int(steps[b])].numel()


def test_callers_ignore_extra_padding_width():
    """BEATs encoder, random-projection and BEATs tokenizers: S > max(lengths) changes no valid output."""
    from audiossl.models.beats.model import beats_tiny, build_beats
    from audiossl.tokenizers.beats.model import beats_tokenizer_tiny, build_beats_tokenizer
    from audiossl.tokenizers.beats.random_projection import RandomProjectionConfig, RandomProjectionTokenizer

    torch.manual_seed(0)
    wavs, lengths = _batch(lengths=[9000, 6000], width=9000)
    wide = torch.nn.functional.pad(wavs, (0, 7000))  # 16000 samples: 6 patch steps instead of 3
    encoder = build_beats(beats_tiny(encoder_layers=2)).encoder.eval()
    rp = RandomProjectionTokenizer(RandomProjectionConfig(seed=1))
    tok = build_beats_tokenizer(beats_tokenizer_tiny()).eval()
    with torch.no_grad():
        a, b = encoder(wavs, lengths), encoder(wide, lengths)
        assert a.lengths.tolist() == b.lengths.tolist() == [3, 2] and b.padding_mask.shape == (2, 6 * 8)
        assert b.padding_mask[:, 3 * 8 :].all()
        for i, t in enumerate(a.lengths.tolist()):
            for ha, hb in zip(a.hidden_states, b.hidden_states):
                torch.testing.assert_close(ha[i, : t * 8], hb[i, : t * 8], rtol=1e-4, atol=1e-5)
        for codes_of in (rp, tok.tokenize):
            (ca, fa), (cb, fb) = codes_of(wavs, lengths), codes_of(wide, lengths)
            assert torch.equal(fa, fb) and cb.shape[1] == 6 and ca.shape[1] == 3
            for i, t in enumerate(fa.tolist()):
                assert torch.equal(ca[i, :t], cb[i, :t])


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gpu_no_sync_and_matches_cpu():
    wavs, lengths = _batch()
    ref, ref_frames = beats_fbank(wavs, lengths)
    wavs, lengths = wavs.cuda(), lengths.cuda()
    beats_fbank(wavs, lengths)  # warm up (cuFFT plan, lazy init)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            out, frames = beats_fbank(wavs, lengths)
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert out.dtype == torch.float32 and out.is_cuda and frames.is_cuda
    torch.testing.assert_close(out.cpu(), ref, atol=1e-3, rtol=0)
    assert torch.equal(frames.cpu(), ref_frames)
