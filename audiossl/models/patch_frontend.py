"""BEATs' input: normalised 128-bin Kaldi fbank cut into 16 × 16 (time × mel) patches.

Shared by the BEATs model (:mod:`audiossl.models.beats`) and its tokenizers (random projection,
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

import torch
from torch import Tensor

FBANK_MEAN = 15.41663
FBANK_STD = 6.55582
SAMPLE_RATE = 16000
NUM_MEL_BINS = 128
PATCH = 16
WINDOW = 400  # 25 ms at 16 kHz
SHIFT = 160  # 10 ms at 16 kHz
PATCH_RATE = SAMPLE_RATE / SHIFT / PATCH  # 6.25 Hz


def num_fbank_frames(num_samples: int) -> int:
    return 0 if num_samples < WINDOW else 1 + (num_samples - WINDOW) // SHIFT


def num_patch_frames(num_samples: int, patch: int = PATCH) -> int:
    """Time steps of patches for ``num_samples`` of 16 kHz audio."""
    return num_fbank_frames(num_samples) // patch


def patch_frame_lengths(lengths: Tensor, patch: int = PATCH) -> Tensor:
    """``[B]`` sample counts → ``[B]`` patch time steps (vectorised :func:`num_patch_frames`)."""
    frames = torch.where(lengths >= WINDOW, 1 + torch.div(lengths - WINDOW, SHIFT, rounding_mode="floor"), 0)
    return torch.div(frames, patch, rounding_mode="floor")


def beats_fbank(
    wavs: Tensor, lengths: Tensor | None = None, *, num_mel_bins: int = NUM_MEL_BINS, mean: float = FBANK_MEAN, std: float = FBANK_STD
) -> tuple[Tensor, Tensor]:
    """``wavs [B, S]`` (zero padded, 16 kHz) → ``(fbank [B, T, num_mel_bins], frame_lengths [B])``.

    Each item is computed over its own ``lengths[b]`` samples only (padding never leaks into a
    frame); frames past an item's length are zero. fp32 whatever the autocast state.
    """
    from torchaudio.compliance.kaldi import fbank

    batch, num_samples = wavs.shape
    if lengths is None:
        lengths = torch.full((batch,), num_samples, dtype=torch.long, device=wavs.device)
    lens = lengths.tolist()
    max_frames = num_fbank_frames(max(lens) if lens else 0)
    out = wavs.new_zeros(batch, max_frames, num_mel_bins, dtype=torch.float32)
    with torch.autocast(device_type=wavs.device.type, enabled=False):
        for b, n in enumerate(lens):
            t = num_fbank_frames(int(n))
            if t == 0:
                continue
            x = wavs[b, : int(n)].float().unsqueeze(0) * 2**15
            feats = fbank(x, num_mel_bins=num_mel_bins, sample_frequency=SAMPLE_RATE, frame_length=25.0, frame_shift=10.0)
            out[b, :t] = (feats - mean) / (2 * std)
    return out, torch.as_tensor([num_fbank_frames(int(n)) for n in lens], dtype=torch.long, device=wavs.device)


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

