"""Constant-Q transform in torch, for MERT's CQT reconstruction target (on the device, in the forward).

Why on the device and inside the model's forward: the target is computed from the clean crop
the data loader already delivers, so there is no extra pass over the corpus, no multi-GB
feature store to keep in sync with crops and resamples, and the cost on a GPU is a few small
convolutions (about 80 MFLOP per second of audio, 0.2 % of a MERT-95M training step). The noise mixture is applied after
it, so the target is clean by construction (:mod:`audiossl.pretrain.noise_mix`).

Method (librosa's multirate CQT, nnAudio's conv1d kernels): the filters are librosa's
(``librosa.filters.wavelet``: Hann-windowed complex exponentials of length ``Q·sr/f``, L1-norm 1),
built once per octave as ``conv1d`` weights (non-persistent buffers: not in checkpoints). Octave
``k`` is computed at ``sr / 2^d`` with ``d`` as large as its top frequency allows (``f ≤ sr_d / 4``)
and the hop allows (``hop / 2^d`` whole); each halving is a symmetric low-pass FIR with stride 2.
So the longest kernel has ~800 taps instead of the ~50 000 a single-rate kernel needs for 32.7 Hz
at 24 kHz (nnAudio ``CQT1992v2``): 7 × 96 × 800 MACs per frame instead of 336 × 2 × 50 000.

Alignment: frame ``i`` is centred on sample ``i·hop + center_offset``. :class:`TorchCQT` uses
``center_offset = receptive_field // 2`` (200 samples for MERT's conv front end), the centre of
the student's frame ``i``, and returns exactly the student's frame count.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F


def _lowpass_half(num_taps: int = 63) -> np.ndarray:
    """Symmetric FIR, cutoff at a quarter of the input rate (Kaiser β=8): pass ``[0, sr/8]``, stop from ``3sr/8``."""
    from scipy.signal import firwin

    return firwin(num_taps, 0.5, window=("kaiser", 8.0)).astype(np.float32)


class TorchCQT(nn.Module):
    """Magnitude CQT ``[batch, sample] → [batch, frame, bin]`` (librosa ``cqt(scale=False)`` magnitudes).

    Args:
        sample_rate: input rate (24000 for MERT).
        hop_length: samples per frame (320 = 75 Hz at 24 kHz, the student's frame shift).
        n_bins: number of bins (336 = 7 octaves).
        bins_per_octave: 48 (quarter-semitone resolution).
        fmin: lowest bin frequency (32.70 Hz = C1).
        center_offset: frame ``i`` is centred on sample ``i * hop_length + center_offset``.
    """

    def __init__(
        self,
        sample_rate: int = 24000,
        hop_length: int = 320,
        n_bins: int = 336,
        bins_per_octave: int = 48,
        fmin: float = 32.70319566257483,
        center_offset: int = 0,
    ):
        super().__init__()
        import librosa

        self.sample_rate, self.hop_length, self.n_bins = int(sample_rate), int(hop_length), int(n_bins)
        self.bins_per_octave, self.fmin, self.center_offset = int(bins_per_octave), float(fmin), int(center_offset)
        freqs = fmin * 2.0 ** (np.arange(n_bins) / bins_per_octave)
        if freqs[-1] >= sample_rate / 2:
            raise ValueError(
                f"CQT top bin {freqs[-1]:.0f} Hz is above the Nyquist frequency {sample_rate / 2:.0f} Hz; "
                f"lower n_bins ({n_bins}) or fmin ({fmin})"
            )
        max_pow2 = (hop_length & -hop_length).bit_length() - 1  # hop / 2^d must stay whole
        lowpass = _lowpass_half()
        self.register_buffer("lowpass", torch.from_numpy(lowpass)[None, None, :], persistent=False)
        self.octaves: list[tuple[int, int, int, int, int]] = []  # (octave, decimation d, first bin, bins, kernel len)
        num_octaves = math.ceil(n_bins / bins_per_octave)
        for k in range(num_octaves - 1, -1, -1):  # top octave first (least decimated)
            lo, hi = k * bins_per_octave, min(n_bins, (k + 1) * bins_per_octave)
            d = 0
            while d < max_pow2 and sample_rate / 2 ** (d + 1) >= 4 * freqs[hi - 1]:
                d += 1
            sr_d = sample_rate / 2**d
            filters, _ = librosa.filters.wavelet(freqs=freqs[lo:hi], sr=sr_d, window="hann", filter_scale=1, pad_fft=False, norm=1)
            n = filters.shape[1] | 1  # odd length: the centre tap sits on the frame centre
            kern = np.zeros((2 * (hi - lo), 1, n), dtype=np.float32)
            off = (n - filters.shape[1]) // 2
            kern[: hi - lo, 0, off : off + filters.shape[1]] = filters.real
            kern[hi - lo :, 0, off : off + filters.shape[1]] = filters.imag
            self.register_buffer(f"kernel_{k}", torch.from_numpy(kern), persistent=False)
            self.octaves.append((k, d, lo, hi - lo, n))

    def num_frames(self, num_samples: int) -> int:
        """Frames whose centre lies inside ``num_samples`` samples."""
        return max(0, (int(num_samples) - 1 - self.center_offset) // self.hop_length + 1)

    def _decimate(self, x: Tensor) -> Tensor:
        """``[B, 1, S] → [B, 1, ceil(S/2)]``, output ``n`` aligned with input ``2n``."""
        taps = self.lowpass.shape[-1]
        return F.conv1d(x, self.lowpass, stride=2, padding=taps // 2)

    def forward(self, wavs: Tensor, num_frames: int | None = None) -> Tensor:
        """``wavs [batch, sample]`` → magnitudes ``[batch, num_frames, n_bins]`` (fp32, no grad).

        ``num_frames`` defaults to :meth:`num_frames`; frames reaching past the end see zeros.
        """
        t = self.num_frames(wavs.shape[-1]) if num_frames is None else int(num_frames)
        with torch.no_grad(), torch.autocast(device_type=wavs.device.type, enabled=False):
            x = wavs.float()[:, None, self.center_offset :]
            # zeros past the end, so each decimation keeps its filter's tail (as a longer, zero-padded
            # input would): an item gives the same frames alone and inside a padded batch
            max_d = max(d for _, d, _, _, _ in self.octaves)
            x = F.pad(x, (0, self.lowpass.shape[-1] * 2**max_d))
            out = x.new_zeros(x.shape[0], t, self.n_bins)
            level, cur = 0, x
            for k, d, lo, nb, n in self.octaves:
                while level < d:
                    cur, level = self._decimate(cur), level + 1
                hop, half = self.hop_length // 2**d, n // 2
                # exactly the samples the t frames read: half a kernel of zeros left, up to the last
                # frame's right edge on the right (zeros where the signal ends)
                y = cur[..., : (t - 1) * hop + 1 + half]
                y = F.pad(y, (half, (t - 1) * hop + 1 + half - y.shape[-1]))
                c = F.conv1d(y, getattr(self, f"kernel_{k}"), stride=hop)  # [B, 2 * nb, t]
                out[:, :, lo : lo + nb] = torch.sqrt(c[:, :nb] ** 2 + c[:, nb:] ** 2).transpose(1, 2)
            return out


def log_cqt_target(mag: Tensor, frame_lengths: Tensor | None = None, eps: float = 1e-5) -> Tensor:
    """``log(|C| + eps)`` standardised per utterance over its valid frames and all bins.

    Args:
        mag: ``[batch, frame, bin]`` CQT magnitudes.
        frame_lengths: ``[batch]`` valid frames (None: all valid).
    Returns:
        ``[batch, frame, bin]``, zero mean and unit variance over each item's valid frames; one
        scalar per utterance, so the spectral shape and loudness contour are kept and only the
        recording gain is removed.
    """
    logm = torch.log(mag + eps)
    b, t, _ = logm.shape
    if frame_lengths is None:
        valid = torch.ones(b, t, 1, dtype=logm.dtype, device=logm.device)
    else:
        valid = (torch.arange(t, device=logm.device)[None, :] < frame_lengths[:, None]).to(logm.dtype)[..., None]
    count = (valid.sum((1, 2)) * logm.shape[-1]).clamp(min=1.0)
    mean = (logm * valid).sum((1, 2)) / count
    var = (((logm - mean[:, None, None]) * valid) ** 2).sum((1, 2)) / count
    return ((logm - mean[:, None, None]) * torch.rsqrt(var[:, None, None] + 1e-6)) * valid
