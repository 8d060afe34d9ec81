"""Constant-Q transform in torch, for MERT's CQT reconstruction target (on the device, in the forward).

What it computes: nnAudio's ``CQT1992v2`` magnitude with MERT's settings (``mert_model.py``'s
``model_cqt_pred``: ``nnAudio.features.cqt.CQT(sr, hop_length=sr // label_rate, fmin=32.7,
n_bins=336, bins_per_octave=n_bins // 7, filter_scale=1, norm=1, window='hann', center=True,
pad_mode='constant', output_format='Magnitude')``), to float32 rounding — pinned by
``tests/test_cqt_torch.py::test_matches_nnaudio_cqt1992v2`` against PyPI ``nnAudio``. The filters
follow nnAudio's definition: bin ``k`` at ``f_k = fmin·2^(k/bpo)`` is a periodic-Hann-windowed
complex exponential of ``l_k = ceil(Q·sr/f_k)`` taps (``Q = filter_scale / (2^(1/bpo) − 1)``),
L1-normalised, placed centred in a kernel of ``2^ceil(log2 max l)`` taps; the input is zero
padded by half that width on both sides (``center=True, pad_mode='constant'``), so frame ``i`` is
centred on sample ``i·hop``; each bin's output is scaled by ``√l_k`` (nnAudio's "librosa"
normalisation). nnAudio is not a runtime dependency (only the ``parity`` extra for the test).

How, faster than nnAudio: nnAudio convolves every bin with the full-width kernel (65 536 taps for
32.7 Hz at 24 kHz, 336 × 2 × 65 536 MACs per frame). Here the bins are grouped by
``group_bins`` neighbours and each group's kernel is cut to the taps where its filters are
non-zero, so the same sums are formed with ~5× fewer MACs (the cut taps are exact zeros).

Why on the device and inside the model's forward: the target comes from the clean crop the data
loader already delivers (no feature store to keep in sync with crops), and the noise mixture is
applied after it, so the target is clean by construction (:mod:`audiossl.audio.mixing`).

``center_offset`` (not in MERT) shifts frame ``i`` to sample ``i·hop + center_offset``;
:func:`audiossl.models.mert.model.build_cqt` uses it only for the ``cqt_target: log_norm`` option.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F


def cqt_filters(sample_rate: int, n_bins: int, bins_per_octave: int, fmin: float, filter_scale: float = 1.0):
    """nnAudio-style CQT filters: ``(filters complex64 [n_bins, width], lengths [n_bins], width)``."""
    from scipy.signal import get_window  # lazy: scipy imports slowly; only this path needs it

    q = float(filter_scale) / (2.0 ** (1.0 / bins_per_octave) - 1.0)
    freqs = fmin * 2.0 ** (np.arange(n_bins) / float(bins_per_octave))
    lengths = np.ceil(q * sample_rate / freqs)
    width = int(2 ** math.ceil(math.log2(lengths.max())))
    filters = np.zeros((n_bins, width), dtype=np.complex64)
    for k, (f, l) in enumerate(zip(freqs, lengths)):
        n = int(l)
        start = math.ceil(width / 2.0 - l / 2.0) - (n % 2)  # odd lengths sit one tap left of centre
        t = np.arange(-((n + 1) // 2), n - (n + 1) // 2)  # sample index relative to the filter centre
        sig = get_window("hann", n, fftbins=True) * np.exp(2j * np.pi * f * t / sample_rate) / l
        filters[k, start : start + n] = sig / np.abs(sig).sum()
    return filters, lengths, width


class TorchCQT(nn.Module):
    """Magnitude CQT ``[batch, sample] → [batch, frame, bin]`` = nnAudio ``CQT1992v2`` (see module doc).

    Args:
        sample_rate: input rate (MERT: 24000).
        hop_length: samples per frame (MERT: ``sample_rate // label_rate`` = 320).
        n_bins: number of bins (MERT: 336).
        bins_per_octave: MERT: ``n_bins // 7`` = 48.
        fmin: lowest bin frequency (MERT: 32.7 Hz).
        center_offset: frame ``i`` is centred on sample ``i * hop_length + center_offset`` (MERT: 0).
        group_bins: neighbouring bins sharing one trimmed kernel (speed only; the output is the same).
    """

    def __init__(
        self,
        sample_rate: int = 24000,
        hop_length: int = 320,
        n_bins: int = 336,
        bins_per_octave: int = 48,
        fmin: float = 32.7,
        center_offset: int = 0,
        group_bins: int = 12,
    ):
        super().__init__()
        self.sample_rate, self.hop_length, self.n_bins = int(sample_rate), int(hop_length), int(n_bins)
        self.bins_per_octave, self.fmin, self.center_offset = int(bins_per_octave), float(fmin), int(center_offset)
        top = fmin * 2.0 ** ((n_bins - 1) / bins_per_octave)
        if top > sample_rate / 2:
            raise ValueError(
                f"CQT top bin {top:.0f} Hz is above the Nyquist frequency {sample_rate / 2:.0f} Hz; "
                f"lower n_bins ({n_bins}) or fmin ({fmin})"
            )
        filters, lengths, self.width = cqt_filters(self.sample_rate, self.n_bins, self.bins_per_octave, self.fmin)
        self.register_buffer("scale", torch.from_numpy(np.sqrt(lengths).astype(np.float32)), persistent=False)
        self.groups: list[tuple[int, int, int, int]] = []  # (first bin, bins, first tap, taps)
        for g, lo in enumerate(range(0, n_bins, group_bins)):
            hi = min(n_bins, lo + group_bins)
            nz = np.flatnonzero(np.abs(filters[lo:hi]).sum(0) > 0)
            first, taps = int(nz[0]), int(nz[-1] - nz[0] + 1)
            part = filters[lo:hi, first : first + taps]
            kern = np.concatenate([part.real, part.imag])[:, None, :].astype(np.float32)  # [2 * bins, 1, taps]
            self.register_buffer(f"kernel_{g}", torch.from_numpy(kern), persistent=False)
            self.groups.append((lo, hi - lo, first, taps))

    def num_frames(self, num_samples: int) -> int:
        """Frames whose centre lies inside ``num_samples`` samples."""
        return max(0, (int(num_samples) - 1 - self.center_offset) // self.hop_length + 1)

    def forward(self, wavs: Tensor, num_frames: int | None = None) -> Tensor:
        """``wavs [batch, sample]`` → magnitudes ``[batch, num_frames, n_bins]`` (fp32, no grad).

        ``num_frames`` defaults to :meth:`num_frames`; frames reaching past the end see zeros (so an
        item gives the same frames alone and inside a zero-padded batch).
        """
        t = self.num_frames(wavs.shape[-1]) if num_frames is None else int(num_frames)
        with torch.no_grad(), torch.autocast(device_type=wavs.device.type, enabled=False):
            left = self.width // 2 - self.center_offset  # frame 0 reads padded samples [0, width)
            x = wavs.float()[:, None, max(0, -left) :]
            need = (t - 1) * self.hop_length + self.width
            x = F.pad(x, (max(0, left), max(0, need - max(0, left) - x.shape[-1])))
            out = x.new_empty(x.shape[0], t, self.n_bins)
            for g, (lo, nb, first, taps) in enumerate(self.groups):
                y = x[..., first : first + (t - 1) * self.hop_length + taps]
                c = F.conv1d(y, getattr(self, f"kernel_{g}"), stride=self.hop_length)  # [B, 2 * nb, t]
                s = self.scale[lo : lo + nb, None]
                re, im = c[:, :nb] * s, c[:, nb:] * s
                out[:, :, lo : lo + nb] = torch.sqrt(re.pow(2) + im.pow(2)).transpose(1, 2)
            return out


def log_cqt_target(mag: Tensor, frame_lengths: Tensor | None = None, eps: float = 1e-5) -> Tensor:
    """``log(|C| + eps)`` standardised per utterance over its valid frames and all bins (the
    ``cqt_target: log_norm`` option; MERT regresses the raw magnitude).

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
