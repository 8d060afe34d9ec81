"""Classic feature baselines as upstreams: ``fbank`` (80-bin log-mel) and ``mfcc`` (13 + Δ + ΔΔ = 39).

Both are Kaldi-compatible (25 ms window, 10 ms shift, ``snip_edges`` → ``1 + (S - 400) // 160``
frames at 16 kHz; 0 frames for inputs shorter than one window), computed per utterance on its
valid samples only (so padding never changes a result). They expose one "layer":
``hidden_states == [features]`` with features ``[batch, frame, dim]``. ``fbank:<bins>`` picks
another number of mel bins; a ``+cmvn`` suffix (``fbank+cmvn``, ``mfcc+cmvn``) normalises mean and
variance per utterance. CMVN is off by default: it makes every mean-pooled utterance exactly zero,
which leaves utterance-level heads (KS, SID, ER, music) at chance — SUPERB's FBANK row keeps the
spectrum and lets the head's own normalisation do the rest.
"""

from __future__ import annotations

import torch

from audiossl.audio.features import fbank, mfcc
from audiossl.upstream.base import Upstream, UpstreamOutput
from audiossl.utils.imports import import_module


def _fbank(wav: torch.Tensor, sample_rate: int, num_mel_bins: int) -> torch.Tensor:
    """``[sample]`` → ``[frame, num_mel_bins]`` (100 Hz)."""
    try:
        return fbank(wav, sample_rate, num_mel_bins=num_mel_bins)
    except ImportError:
        kaldi = import_module("torchaudio.compliance.kaldi")  # lazy, under audiossl's import lock: torchaudio imports slowly and not thread-safely

        return kaldi.fbank(wav[None], sample_frequency=sample_rate, num_mel_bins=num_mel_bins)


def _mfcc(wav: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """``[sample]`` → ``[frame, 39]`` (100 Hz): 13 cepstra + deltas + delta-deltas."""
    try:
        return mfcc(wav, sample_rate)
    except ImportError:
        kaldi = import_module("torchaudio.compliance.kaldi")  # lazy, under audiossl's import lock: torchaudio imports slowly and not thread-safely
        F = import_module("torchaudio.functional")

        m = kaldi.mfcc(wav[None], sample_frequency=sample_rate, use_energy=False)  # [frame, 13]
        d = F.compute_deltas(m.T)
        dd = F.compute_deltas(d)
        return torch.cat([m, d.T, dd.T], dim=1)


class FeatureBaseline(Upstream):
    """Kaldi fbank / MFCC (optionally with per-utterance CMVN); one layer, 100 frames per second."""

    padding_invariant = True
    chunkable = False  # whole utterances are cheap; with CMVN the statistics are per utterance

    def __init__(self, kind: str = "fbank", num_mel_bins: int = 80, sample_rate: int = 16000, cmvn: bool = False) -> None:
        super().__init__()
        if kind not in ("fbank", "mfcc"):
            raise ValueError(f"unknown baseline {kind!r}; use 'fbank' or 'mfcc'")
        self.kind = kind
        self.num_mel_bins = num_mel_bins
        self.sample_rate = sample_rate
        self.window = int(round(0.025 * sample_rate))
        self.shift = int(round(0.010 * sample_rate))
        self.frame_rate = sample_rate / self.shift
        self.num_layers = 1
        self.hidden_dim = num_mel_bins if kind == "fbank" else 39
        self.cmvn = cmvn
        self.name = (kind if (kind == "mfcc" or num_mel_bins == 80) else f"fbank:{num_mel_bins}") + ("+cmvn" if cmvn else "")

    def num_frames(self, num_samples: int) -> int:
        return 0 if num_samples < self.window else 1 + (num_samples - self.window) // self.shift

    def _one(self, wav: torch.Tensor) -> torch.Tensor:
        """``[sample]`` → ``[frame, dim]`` (CMVN over the utterance when enabled)."""
        n = self.num_frames(wav.shape[0])
        if n == 0:
            return wav.new_zeros(0, self.hidden_dim)
        feats = _fbank(wav, self.sample_rate, self.num_mel_bins) if self.kind == "fbank" else _mfcc(wav, self.sample_rate)
        feats = feats[:n]
        if not self.cmvn:
            return feats
        mean = feats.mean(0, keepdim=True)
        std = feats.std(0, unbiased=False, keepdim=True) if n > 1 else torch.ones_like(mean)
        return (feats - mean) / (std + 1e-5)

    def _forward(self, wavs: torch.Tensor, lengths: torch.Tensor) -> UpstreamOutput:
        lens = [int(n) for n in lengths.cpu().tolist()]
        frames = [self.num_frames(n) for n in lens]
        out = wavs.new_zeros(wavs.shape[0], max(frames, default=0), self.hidden_dim)
        for i, n in enumerate(lens):
            f = self._one(wavs[i, :n].float().cpu())
            out[i, : f.shape[0]] = f.to(out.device)
        return UpstreamOutput(hidden_states=[out], lengths=torch.tensor(frames, dtype=torch.long, device=wavs.device))


def build_baseline(spec: str) -> FeatureBaseline:
    """``"fbank"``, ``"fbank:<bins>"`` or ``"mfcc"``, each optionally ``+cmvn`` → :class:`FeatureBaseline`."""
    cmvn = spec.endswith("+cmvn")
    kind, _, arg = spec.removesuffix("+cmvn").partition(":")
    if kind == "fbank":
        try:
            bins = int(arg) if arg else 80
        except ValueError:
            raise ValueError(f"bad baseline spec {spec!r}: expected 'fbank:<num_mel_bins>'") from None
        return FeatureBaseline("fbank", num_mel_bins=bins, cmvn=cmvn)
    if kind == "mfcc" and not arg:
        return FeatureBaseline("mfcc", cmvn=cmvn)
    raise ValueError(f"bad baseline spec {spec!r}: use 'fbank', 'fbank:<bins>' or 'mfcc' (optionally +cmvn)")
