"""BEATs' input: normalised 128-bin Kaldi fbank cut into 16 × 16 (time × mel) patches.

Shared by the BEATs model (:mod:`audiossl.models.beats.model`) and its tokenizers (random projection,
self-distilled VQ), so the model and its targets see the same patches in the same order.

* ``fbank``: ``torchaudio.compliance.kaldi.fbank`` of ``wav * 2**15`` (BEATs feeds int16-scaled
  audio), 25 ms window, 10 ms shift, 128 mel bins, then ``(x - mean) / (2 * std)`` with the
  corpus statistics of the released models (mean 15.41663, std 6.55582).
* Patches are ordered time-major: patch ``t * F_p + f`` covers fbank frames ``16t .. 16t+15`` and
  mel bins ``16f .. 16f+15`` (what ``Conv2d(kernel=16, stride=16)`` + ``flatten`` yields on a
  ``[B, 1, T, 128]`` input); trailing frames that do not fill a patch are dropped.
* One time step of patches is 16 fbank frames = 2,560 samples at 16 kHz, so the patch rate is
  6.25 Hz and a crop that starts at a multiple of 2,560 samples sees exactly the same patches.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

FBANK_MEAN = 15.41663
FBANK_STD = 6.55582
SAMPLE_RATE = 16000
NUM_MEL_BINS = 128
PATCH = 16
WINDOW = 400  # 25 ms at 16 kHz
SHIFT = 160  # 10 ms at 16 kHz
FFT_SIZE = 512  # WINDOW rounded up to a power of two (Kaldi round_to_power_of_two)
PREEMPHASIS = 0.97
PATCH_RATE = SAMPLE_RATE / SHIFT / PATCH  # 6.25 Hz


def num_fbank_frames(num_samples: int) -> int:
    return 0 if num_samples < WINDOW else 1 + (num_samples - WINDOW) // SHIFT


def num_patch_frames(num_samples: int, patch: int = PATCH) -> int:
    """Time steps of patches for ``num_samples`` of 16 kHz audio."""
    return num_fbank_frames(num_samples) // patch


def fbank_frame_lengths(lengths: Tensor) -> Tensor:
    """``[B]`` sample counts → ``[B]`` Kaldi fbank frames (vectorised :func:`num_fbank_frames`, same device)."""
    return torch.where(lengths >= WINDOW, 1 + torch.div(lengths - WINDOW, SHIFT, rounding_mode="floor"), 0)


def patch_frame_lengths(lengths: Tensor, patch: int = PATCH) -> Tensor:
    """``[B]`` sample counts → ``[B]`` patch time steps (vectorised :func:`num_patch_frames`)."""
    return torch.div(fbank_frame_lengths(lengths), patch, rounding_mode="floor")


def kaldi_mel_banks(num_mel_bins: int, device: torch.device | str | None = None) -> Tensor:
    """``[num_mel_bins, FFT_SIZE // 2]`` triangular mel filters, built on ``device``.

    The same arithmetic as ``torchaudio.compliance.kaldi.get_mel_banks(num_mel_bins, 512, 16000,
    low_freq=20, high_freq=0 (Nyquist), vtln_warp=1)``, which builds on the CPU only: copying its
    result to a GPU every step would be a pageable host-to-device copy, i.e. a stream sync.
    """
    # torchaudio.compliance.kaldi's mel_scale(_scalar), written out: traced code cannot take the import lock
    def mel_scale_scalar(freq: float) -> float:
        return 1127.0 * math.log(1.0 + freq / 700.0)

    def mel_scale(freq: Tensor) -> Tensor:
        return 1127.0 * (1.0 + freq / 700.0).log()

    mel_low, mel_high = mel_scale_scalar(20.0), mel_scale_scalar(SAMPLE_RATE / 2)
    delta = (mel_high - mel_low) / (num_mel_bins + 1)
    b = torch.arange(num_mel_bins, device=device).unsqueeze(1)  # [bins, 1]
    left, center, right = mel_low + b * delta, mel_low + (b + 1.0) * delta, mel_low + (b + 2.0) * delta
    mel = mel_scale(SAMPLE_RATE / FFT_SIZE * torch.arange(FFT_SIZE // 2, device=device, dtype=torch.float32)).unsqueeze(0)
    up, down = (mel - left) / (center - left), (right - mel) / (right - center)  # [bins, 256]
    return torch.clamp_min(torch.minimum(up, down), 0.0)


_CPU_CHUNK_FRAMES = 1024  # frames per CPU chunk: ~2 MB intermediates; measured best of 512..4096


def _log_mel(frames: Tensor, window: Tensor, banks: Tensor) -> Tensor:
    """Kaldi log mel energies of raw frames: ``[..., 400]`` fp32 → ``[..., bins]`` (``banks [bins, 257]``)."""
    frames = frames - frames.mean(dim=-1, keepdim=True)  # remove_dc_offset
    previous = torch.cat([frames[..., :1], frames[..., :-1]], dim=-1)  # Kaldi replicates the first sample
    frames = frames - PREEMPHASIS * previous
    spectrum = torch.fft.rfft(F.pad(frames * window, (0, FFT_SIZE - WINDOW)))  # [..., 257] complex
    power = spectrum.abs().pow(2.0)  # as torchaudio rounds it (re² + im² is faster but not bit-equal)
    return torch.matmul(power, banks.T).clamp_min(torch.finfo(torch.float32).eps).log()


def _log_mel_cpu(frames: Tensor, frame_lengths: Tensor, window: Tensor, banks: Tensor) -> Tensor:
    """Eager CPU path of :func:`_log_mel` over ``frames [B, T, 400]`` → ``[B, T, bins]``, a few items at a time.

    Small chunks keep the ``[n, T, 512]`` intermediates in cache (2.5x faster than the whole batch
    at once), and each chunk stops at its longest item (reading a CPU tensor is no device sync);
    frames skipped that way are filled with zeros, the caller zeroes them anyway.
    """
    batch, num_frames, _ = frames.shape
    out = frames.new_zeros(batch, num_frames, banks.shape[0])
    step = max(1, _CPU_CHUNK_FRAMES // num_frames)
    for start in range(0, batch, step):
        n = int(frame_lengths[start : start + step].max())
        if n > 0:
            out[start : start + step, :n] = _log_mel(frames[start : start + step, :n], window, banks)
    return out


def beats_fbank(
    wavs: Tensor, lengths: Tensor | None = None, *, num_mel_bins: int = NUM_MEL_BINS, mean: float = FBANK_MEAN, std: float = FBANK_STD
) -> tuple[Tensor, Tensor]:
    """``wavs [B, S]`` (zero padded, 16 kHz) → ``(fbank [B, num_fbank_frames(S), num_mel_bins], frame_lengths [B])``.

    Batched and free of host syncs (fine inside ``torch.compile(fullgraph=True)`` / CUDA graphs):
    every 400-sample frame of the padded batch goes through the per-frame steps of
    ``torchaudio.compliance.kaldi.fbank`` (defaults: no dither, DC removal, 0.97 pre-emphasis with
    the frame's first sample replicated, Povey window, 512-point power spectrum, Kaldi mel banks,
    log floored at float eps); all those steps stay inside a frame, so a frame that lies within
    ``lengths[b]`` samples equals the per-item torchaudio result. Frames past an item's
    ``frame_lengths[b]`` are zero, including the extra ones when ``S > max(lengths)``.
    ``lengths`` above ``S`` count as ``S``. fp32 whatever the autocast state; no gradient needed.
    """
    batch, num_samples = wavs.shape
    device = wavs.device
    if lengths is None:
        lengths = torch.full((batch,), num_samples, dtype=torch.long, device=device)
    frame_lengths = fbank_frame_lengths(lengths.to(device=device, dtype=torch.long).clamp(max=num_samples))
    num_frames = num_fbank_frames(num_samples)  # static: from the padded width, never from the data
    if num_frames == 0:
        return wavs.new_zeros(batch, 0, num_mel_bins, dtype=torch.float32), frame_lengths
    with torch.autocast(device_type=device.type, enabled=False):
        frames = (wavs.float() * 2**15).unfold(1, WINDOW, SHIFT)  # [B, T, 400] (a view)
        window = torch.hann_window(WINDOW, periodic=False, device=device, dtype=torch.float32).pow(0.85)  # Povey
        banks = F.pad(kaldi_mel_banks(num_mel_bins, device), (0, 1))  # [bins, 257]: Nyquist bin unused
        if device.type == "cpu" and not torch.compiler.is_compiling():
            log_mel = _log_mel_cpu(frames, frame_lengths, window, banks)
        else:
            log_mel = _log_mel(frames, window, banks)  # [B, T, bins]
        valid = torch.arange(num_frames, device=device)[None, :] < frame_lengths[:, None]  # [B, T]
        feats = torch.where(valid[..., None], (log_mel - mean) / (2 * std), 0.0)
    return feats, frame_lengths


def patchify(fbank: Tensor, patch: int = PATCH) -> Tensor:
    """``fbank [B, T, F]`` → ``patches [B, T // patch, F // patch, patch * patch]``.

    Each patch is flattened time-major (``[time, mel]`` → ``time * patch + mel``).
    """
    batch, frames, bins = fbank.shape
    tp, fp = frames // patch, bins // patch
    x = fbank[:, : tp * patch, : fp * patch].reshape(batch, tp, patch, fp, patch)
    return x.permute(0, 1, 3, 2, 4).reshape(batch, tp, fp, patch * patch)


def unpatchify(patches: Tensor) -> Tensor:
    """Inverse of :func:`patchify`: ``[B, Tp, Fp, p*p]`` → ``[B, Tp*p, Fp*p]``."""
    batch, tp, fp, pp = patches.shape
    p = int(round(pp**0.5))
    return patches.reshape(batch, tp, fp, p, p).permute(0, 1, 3, 2, 4).reshape(batch, tp * p, fp * p)

