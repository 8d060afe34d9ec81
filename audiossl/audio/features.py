"""Frame features of one waveform: Kaldi MFCC (+Δ, ΔΔ), Kaldi fbank, log-magnitude CQT.

Every function takes a mono float32 ``[time]`` tensor and returns float32 ``[frames, dim]``:

============  =====================  ===================================  ==========================
name          dim                    frame rate                           frames for S samples
============  =====================  ===================================  ==========================
``mfcc``      39 (13 + Δ + ΔΔ)       100 Hz (25 ms window, 10 ms shift)   ``1 + (S - win) // shift``
``fbank``     ``num_mel_bins``       100 Hz (25 ms window, 10 ms shift)   ``1 + (S - win) // shift``
``cqt``       ``n_bins``             ``sample_rate / hop_length``         ``1 + S // hop_length``
============  =====================  ===================================  ==========================

(``win``/``shift`` = 400/160 samples at 16 kHz; Kaldi's ``snip_edges`` framing, no padding.)
Input shorter than one analysis window raises :class:`FeatureError` naming the requirement.

:func:`get_feature` binds a kind and its parameters into a :class:`FeatureSpec` whose ``dim``,
``frame_rate`` and ``min_samples`` are known before any audio is read (for store metadata and
disk-space estimates). Layer features of a trained checkpoint are built the same way by
:func:`audiossl.features.dump.model_feature`.
"""

from __future__ import annotations

import inspect
import math
import warnings
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Callable

import torch

from audiossl.utils.imports import import_module


class FeatureError(ValueError):
    """Input a feature cannot be computed from (too short); the message names the requirement."""

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        super().__init__(message)


def _kaldi_window(sample_rate: int, frame_length_ms: float = 25.0, frame_shift_ms: float = 10.0) -> tuple[int, int]:
    # Same rounding as torchaudio.compliance.kaldi._get_waveform_and_window_properties.
    return int(sample_rate * frame_length_ms * 0.001), int(sample_rate * frame_shift_ms * 0.001)


def _check_wav(wav: torch.Tensor, name: str, min_samples: int, sample_rate: int, what: str) -> torch.Tensor:
    if not isinstance(wav, torch.Tensor):
        wav = torch.as_tensor(wav)
    if wav.dim() != 1:
        raise ValueError(f"{name}: expected a mono waveform [time], got shape {tuple(wav.shape)}")
    if wav.numel() < min_samples:
        raise FeatureError(
            "too_short",
            f"{name} needs at least {min_samples} samples ({what} at {sample_rate} Hz), "
            f"got {wav.numel()} ({wav.numel() / sample_rate * 1000:.1f} ms)",
        )
    return wav.to(torch.float32)


def mfcc(wav: torch.Tensor, sample_rate: int = 16000) -> torch.Tensor:
    """Kaldi MFCC + deltas + delta-deltas exactly as fairseq's HuBERT recipe
    (``examples/hubert/simple_kmeans/dump_mfcc_feature.py``).

    Args:
        wav: ``[time]`` mono waveform, float in [-1, 1] (not rescaled to int16 range, as fairseq).
        sample_rate: rate of ``wav`` in Hz.
    Returns:
        ``[frames, 39]`` at 100 Hz; frames = ``1 + (S - 400) // 160`` at 16 kHz.
    """
    kaldi = import_module("torchaudio.compliance.kaldi")  # lazy, under audiossl's import lock: torchaudio imports slowly and not thread-safely
    functional = import_module("torchaudio.functional")

    win, _ = _kaldi_window(sample_rate)
    x = _check_wav(wav, "mfcc", win, sample_rate, "one 25 ms window")
    with torch.no_grad():
        feats = kaldi.mfcc(waveform=x[None], sample_frequency=sample_rate, use_energy=False)  # [T, 13]
        feats = feats.transpose(0, 1)  # [13, T]
        deltas = functional.compute_deltas(feats)
        ddeltas = functional.compute_deltas(deltas)
        return torch.cat([feats, deltas, ddeltas], dim=0).transpose(0, 1).contiguous()  # [T, 39]


def fbank(wav: torch.Tensor, sample_rate: int = 16000, num_mel_bins: int = 80) -> torch.Tensor:
    """Kaldi-compatible log mel filterbank (``torchaudio.compliance.kaldi.fbank``, 25 ms / 10 ms,
    no dither, no energy).

    Args:
        wav: ``[time]`` mono waveform.
        sample_rate: rate of ``wav`` in Hz.
        num_mel_bins: 80 (SUPERB / ASR baselines) or 128 (BEATs, AST).
    Returns:
        ``[frames, num_mel_bins]`` at 100 Hz; frames = ``1 + (S - 400) // 160`` at 16 kHz.
    """
    kaldi = import_module("torchaudio.compliance.kaldi")  # lazy, under audiossl's import lock: torchaudio imports slowly and not thread-safely

    win, _ = _kaldi_window(sample_rate)
    x = _check_wav(wav, "fbank", win, sample_rate, "one 25 ms window")
    with torch.no_grad():
        return kaldi.fbank(x[None], sample_frequency=sample_rate, num_mel_bins=int(num_mel_bins)).contiguous()


def cqt_min_samples(sample_rate: int, n_bins: int = 84, bins_per_octave: int = 12, fmin: float = 32.70) -> int:
    """Length of the longest (lowest-frequency) CQT filter in samples: one full window."""
    import librosa  # lazy: slow import (numba); only this path needs it

    freqs = librosa.cqt_frequencies(n_bins, fmin=fmin, bins_per_octave=bins_per_octave)
    lengths, _ = librosa.filters.wavelet_lengths(freqs=freqs, sr=sample_rate, filter_scale=1, window="hann")
    return int(math.ceil(float(lengths.max())))


def cqt(
    wav: torch.Tensor,
    sample_rate: int = 24000,
    hop_length: int = 320,
    n_bins: int = 84,
    bins_per_octave: int = 12,
    fmin: float = 32.70,
) -> torch.Tensor:
    """Log-magnitude constant-Q transform (librosa), as MERT's CQT reconstruction target.

    Values are ``20 * log10(max(|C|, 1e-5))`` dB (fixed reference 1.0 and no per-utterance
    ``top_db`` clipping, so values are comparable across utterances).

    Args:
        wav: ``[time]`` mono waveform.
        sample_rate: rate of ``wav`` in Hz; must exceed twice the top bin
            (``fmin * 2 ** (n_bins / bins_per_octave)``, 4186 Hz for the defaults).
        hop_length: samples between frames; frame rate = ``sample_rate / hop_length``
            (75 Hz for the MERT default 24 kHz / 320, 50 Hz at 16 kHz / 320).
        n_bins, bins_per_octave, fmin: librosa's CQT parameters (default C1 = 32.70 Hz, 7 octaves).
    Returns:
        ``[frames, n_bins]`` with frames = ``1 + S // hop_length`` (centered frames).
    Raises:
        FeatureError: input shorter than the longest CQT filter (~0.53 s for fmin = 32.70 Hz).
    """
    import librosa  # lazy: slow import (numba); only this path needs it
    import numpy as np  # lazy: keeps torch/numpy out of startup (`prepare`, `validate`, `--help` start fast)

    fmax = fmin * 2 ** (n_bins / bins_per_octave)
    if fmax >= sample_rate / 2:
        raise ValueError(
            f"cqt: top bin {fmax:.0f} Hz is above Nyquist ({sample_rate / 2:.0f} Hz); lower n_bins or fmin "
            f"or use a higher sample rate"
        )
    need = cqt_min_samples(sample_rate, n_bins, bins_per_octave, fmin)
    x = _check_wav(wav, "cqt", need, sample_rate, f"the longest CQT filter, fmin={fmin} Hz")
    with warnings.catch_warnings():
        # Lower octaves are downsampled below their FFT size for short inputs; librosa zero-pads them.
        warnings.filterwarnings("ignore", message=r"n_fft=\d+ is too large for input signal")
        c = librosa.cqt(
            x.detach().cpu().numpy(),
            sr=sample_rate,
            hop_length=int(hop_length),
            fmin=fmin,
            n_bins=int(n_bins),
            bins_per_octave=int(bins_per_octave),
        )  # [n_bins, T] complex
    db = librosa.amplitude_to_db(np.abs(c), ref=1.0, amin=1e-5, top_db=None)
    return torch.from_numpy(np.ascontiguousarray(db.T, dtype=np.float32))  # [T, n_bins]


def kaldi_num_frames(num_samples: int, sample_rate: int = 16000) -> int:
    """Frames of Kaldi 25 ms / 10 ms ``snip_edges`` framing (0 when shorter than one window)."""
    win, shift = _kaldi_window(sample_rate)
    return 0 if num_samples < win else 1 + (num_samples - win) // shift


def cqt_num_frames(num_samples: int, hop_length: int, min_samples: int = 1) -> int:
    """Frames of librosa's centered CQT (0 when shorter than ``min_samples``)."""
    return 0 if num_samples < min_samples else 1 + num_samples // hop_length


@dataclass(frozen=True)
class FeatureSpec:
    """A feature kind with its parameters bound: call it on ``[time]`` to get ``[frames, dim]``."""

    name: str
    dim: int
    frame_rate: float
    """Frames per second of the output."""
    sample_rate: int
    """Rate the input waveform must have."""
    min_samples: int
    """Shortest input accepted (one analysis window)."""
    function: Callable[..., torch.Tensor]
    frame_count: Callable[[int], int]
    """Input samples → output frames (0 when too short)."""
    params: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments passed to ``function`` besides ``sample_rate``."""
    identity: dict[str, Any] = field(default_factory=dict)
    """More metadata for :meth:`describe` that ``function`` does not take (e.g. a checkpoint path)."""
    parallel: bool = True
    """False: compute in the calling process only (a loaded model, possibly on a GPU)."""

    def __call__(self, wav: torch.Tensor) -> torch.Tensor:
        return self.function(wav, sample_rate=self.sample_rate, **self.params)

    def num_frames(self, num_samples: int) -> int:
        """Frames produced for ``num_samples`` input samples (0 when too short)."""
        return self.frame_count(int(num_samples))

    def describe(self) -> dict[str, Any]:
        """JSON-able identity (for store metadata)."""
        return {"kind": self.name, "dim": self.dim, "frame_rate": self.frame_rate,
                "sample_rate": self.sample_rate, **self.params, **self.identity}


def _mfcc_spec(sample_rate: int) -> FeatureSpec:
    return FeatureSpec("mfcc", 39, 100.0, sample_rate, _kaldi_window(sample_rate)[0], mfcc,
                       partial(kaldi_num_frames, sample_rate=sample_rate))


def _fbank_spec(sample_rate: int, num_mel_bins: int = 80) -> FeatureSpec:
    return FeatureSpec("fbank", int(num_mel_bins), 100.0, sample_rate, _kaldi_window(sample_rate)[0], fbank,
                       partial(kaldi_num_frames, sample_rate=sample_rate), {"num_mel_bins": int(num_mel_bins)})


def _cqt_spec(sample_rate: int, hop_length: int = 320, n_bins: int = 84, bins_per_octave: int = 12,
              fmin: float = 32.70) -> FeatureSpec:
    import librosa  # lazy: slow import (numba); only this path needs it

    librosa.cqt  # noqa: B018 -- resolve librosa's lazy import (~5 s) once, before workers fork
    params = {"hop_length": int(hop_length), "n_bins": int(n_bins), "bins_per_octave": int(bins_per_octave),
              "fmin": float(fmin)}
    need = cqt_min_samples(sample_rate, n_bins, bins_per_octave, fmin)
    return FeatureSpec("cqt", int(n_bins), sample_rate / int(hop_length), sample_rate, need, cqt,
                       partial(cqt_num_frames, hop_length=int(hop_length), min_samples=need), params)


_REGISTRY: dict[str, Callable[..., FeatureSpec]] = {"mfcc": _mfcc_spec, "fbank": _fbank_spec, "cqt": _cqt_spec}
FEATURES = tuple(_REGISTRY)


def get_feature(name: str, sample_rate: int = 16000, **params: Any) -> FeatureSpec:
    """``get_feature("fbank", 16000, num_mel_bins=128)`` → a bound :class:`FeatureSpec`.

    Unknown names or parameters raise ``ValueError`` listing what is accepted.
    """

    if name not in _REGISTRY:
        raise ValueError(f"unknown feature {name!r}; choose one of {', '.join(FEATURES)}")
    builder = _REGISTRY[name]
    accepted = [p for p in inspect.signature(builder).parameters if p != "sample_rate"]
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise ValueError(
            f"feature {name!r} does not take {', '.join(unknown)}; it accepts {', '.join(accepted) or 'no options'}"
        )
    return builder(int(sample_rate), **params)
