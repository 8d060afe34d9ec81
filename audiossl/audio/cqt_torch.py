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
``method="direct"`` forms those sums with a strided ``conv1d``: still 7.5 M MACs per frame, the
whole CPU cost of a MERT-tiny step's teacher. ``method="fft"`` (default) forms the same strided
correlation in the frequency domain: split signal and kernel into their ``hop`` polyphase
components (``x_r[m] = x[m·hop + r]``), so the stride becomes ``hop`` ordinary correlations of
length ``taps / hop``, summed over ``r``; after an FFT over frames that sum is one batched matmul
per frequency (``[batch, hop] @ [hop, 2·bins]``). Long inputs are cut into blocks of at most
``max_block_frames`` frames stacked on the batch axis, so the kernel spectra (cached per FFT length,
``cache_mib`` at most) do not grow with the input. The sums are the same; the rounding is not:
each polyphase component carries the whole band aliased, and the sum over ``r`` cancels all but the
filter's band, which amplifies fp32 rounding to ~6e-6 of the peak magnitude (1e-9 for ``direct``).
For a regression target that is far below the head's error; ``tests/test_cqt_torch.py`` pins both
paths against nnAudio (fft < 2e-5, direct < 1e-6). ``tools/bench/cqt.py`` times the two against
nnAudio: 4 × 2 s, one thread, 58 ms (fft) vs 206 ms (direct) vs 1.7 s (nnAudio).

Why on the device and inside the model's forward: the target comes from the clean crop the data
loader already delivers (no feature store to keep in sync with crops), and the noise mixture is
applied after it, so the target is clean by construction (:mod:`audiossl.audio.mixing`).

``center_offset`` (not in MERT) shifts frame ``i`` to sample ``i·hop + center_offset``;
:func:`audiossl.models.mert.model.build_cqt` uses it only for the ``cqt_target: log_norm`` option.
"""

from __future__ import annotations

import math
from collections import OrderedDict

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
        method: ``fft`` (polyphase FFT correlation, default) or ``direct`` (strided ``conv1d``); the
            same sums, see the module doc. Under ``torch.compile`` the ``fft`` path rebuilds its kernel
            spectra every call (a cache would be a recompile guard): ~4× its cached cost on a CPU, where
            ``direct`` is then the faster one; on a GPU both are cheap.
        max_block_frames: ``fft``: frames per FFT block (longer inputs are split into blocks).
        cache_mib: ``fft``: bound on the cached kernel spectra, least recently used dropped first.
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
        method: str = "fft",
        max_block_frames: int = 256,
        cache_mib: float = 512.0,
    ):
        super().__init__()
        if method not in ("fft", "direct"):
            raise ValueError(f"CQT method must be 'fft' or 'direct', got {method!r}")
        self.method, self.max_block_frames, self.cache_bytes = method, int(max_block_frames), int(cache_mib * 2**20)
        self._spectra: OrderedDict[tuple, Tensor] = OrderedDict()
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
            correlate = self._correlate_fft if self.method == "fft" else self._correlate_direct
            for g, (lo, nb, first, taps) in enumerate(self.groups):
                c = correlate(g, x[:, 0, first:], t, taps)  # [B, 2 * nb, t]
                s = self.scale[lo : lo + nb, None]
                re, im = c[:, :nb] * s, c[:, nb:] * s
                out[:, :, lo : lo + nb] = torch.sqrt(re.pow(2) + im.pow(2)).transpose(1, 2)
            return out

    def flops(self, num_frames: int) -> int:
        """FLOPs of :meth:`forward` on one utterance of ``num_frames`` frames, for this ``method`` (the
        magnitude ops aside). ``direct``: 2 × MACs of the strided convolutions. ``fft``: the complex
        matmuls (8 real FLOPs per complex MAC) + the signal rFFT and output irFFT (2.5 · m · log2 m
        each, the usual real-FFT estimate); the kernel spectra are cached, not counted."""
        t, hop, total = int(num_frames), self.hop_length, 0
        if t <= 0:
            return 0
        for _, nb, _, taps in self.groups:
            if self.method == "direct":
                total += 2 * t * 2 * nb * taps
                continue
            blocks = -(-t // self.max_block_frames)
            m = _fft_length(-(-t // blocks) + -(-taps // hop) - 1)
            fft = 2.5 * m * math.log2(max(m, 2))
            total += int(8 * (m // 2 + 1) * blocks * hop * 2 * nb + blocks * (hop + 2 * nb) * fft)
        return total

    def _correlate_direct(self, g: int, x: Tensor, t: int, taps: int) -> Tensor:
        """``c[b, k, i] = Σ_n x[b, i·hop + n] · kernel_g[k, n]`` for ``i < t``: ``x [B, S] → [B, 2·nb, t]``."""
        y = x[:, None, : (t - 1) * self.hop_length + taps]
        return F.conv1d(y, getattr(self, f"kernel_{g}"), stride=self.hop_length)

    def _correlate_fft(self, g: int, x: Tensor, t: int, taps: int) -> Tensor:
        """:meth:`_correlate_direct`'s sums through polyphase FFTs (module doc): ``x [B, S] → [B, 2·nb, t]``.

        With ``q = ceil(taps / hop)`` polyphase taps, a block of ``tb`` frames needs a circular
        correlation of ``m ≥ tb + q − 1`` frames to not wrap.
        """
        hop, b = self.hop_length, x.shape[0]
        blocks = -(-t // self.max_block_frames)
        tb = -(-t // blocks)
        q = -(-taps // hop)
        m = _fft_length(tb + q - 1)
        need = (blocks - 1) * tb * hop + m * hop
        x = F.pad(x, (0, max(0, need - x.shape[-1])))
        y = x.unfold(-1, m * hop, tb * hop)[:, :blocks].reshape(b * blocks, m, hop).transpose(1, 2)  # [B·blocks, hop, m]
        spec = torch.fft.rfft(y, n=m).permute(2, 0, 1)  # [m/2+1, B·blocks, hop]
        c = torch.fft.irfft(torch.bmm(spec, self._kernel_spectrum(g, m, q)).permute(1, 2, 0), n=m)  # [B·blocks, 2nb, m]
        c = c[..., :tb].reshape(b, blocks, -1, tb).permute(0, 2, 1, 3).reshape(b, -1, blocks * tb)
        return c[..., :t]

    def _kernel_spectrum(self, g: int, m: int, q: int) -> Tensor:
        """Conjugate rFFT over ``m`` frames of group ``g``'s polyphase kernel: ``[m/2+1, hop, 2·nb]`` (cached)."""
        kern = getattr(self, f"kernel_{g}")[:, 0]  # [2nb, taps]
        hop = self.hop_length
        poly = F.pad(kern, (0, q * hop - kern.shape[-1])).view(kern.shape[0], q, hop).transpose(1, 2)  # [2nb, hop, q]
        if torch.compiler.is_compiling():
            # inside a compiled graph the cache (a Python dict) would be a guard, and filling it a recompile
            return torch.fft.rfft(poly, n=m).conj().permute(2, 1, 0)
        key = (g, m, kern.device)
        if key in self._spectra:
            self._spectra.move_to_end(key)
            return self._spectra[key]
        spec = torch.fft.rfft(poly, n=m).conj().permute(2, 1, 0).contiguous()
        self._spectra[key] = spec
        while sum(v.numel() * v.element_size() for v in self._spectra.values()) > self.cache_bytes and len(self._spectra) > 1:
            self._spectra.popitem(last=False)
        return spec

    def _apply(self, fn, recurse=True):
        self._spectra.clear()  # moved or cast: the cached spectra belong to the old device
        return super()._apply(fn, recurse)


def _fft_length(n: int) -> int:
    """``n`` rounded up to ``2^a · {8, 9, 10, 12, 14, 15, 16}`` (at most 20 % larger): few distinct
    lengths (cache hits across nearby crop lengths), all 7-smooth (fast FFT sizes)."""
    step = 1 << max(0, (n - 1).bit_length() - 4)
    return next(k * step for k in (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 14, 15, 16) if k * step >= n)


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
