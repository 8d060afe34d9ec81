"""Reading audio: anything libsndfile reads, mixed down to mono, resampled to the model's rate.

Audio is returned as a float32 ``torch.Tensor`` of shape ``[time]``. Errors are raised as
:class:`AudioError`, which names the file and the reason, so callers can report and skip.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from typing import TYPE_CHECKING

import numpy as np
import soundfile as sf

from audiossl.utils.fileio import atomic_open
from audiossl.utils.imports import import_module

if TYPE_CHECKING:  # torch is imported where it is used, so `prepare`/`validate` start fast
    import torch


class AudioError(Exception):
    """An audio file that cannot be used; ``reason`` is a short machine-readable code."""

    def __init__(self, path: str | Path, reason: str, detail: str = "") -> None:
        self.path = str(path)
        self.reason = reason
        self.detail = detail
        super().__init__(f"{path}: {reason}" + (f" ({detail})" if detail else ""))


@dataclass(frozen=True)
class AudioInfo:
    path: str
    sample_rate: int
    num_frames: int
    channels: int
    format: str
    truncated: bool = False
    """The header promises more audio data than the file holds (a cut-off download or copy)."""

    @property
    def duration(self) -> float:
        return self.num_frames / self.sample_rate if self.sample_rate else 0.0


def _existing_nonempty(path: str | Path) -> Path:
    path = Path(path)
    if not path.exists():
        raise AudioError(path, "missing", "no such file")
    if path.stat().st_size == 0:
        raise AudioError(path, "empty", "file has 0 bytes")
    return path


def audio_info(path: str | Path) -> AudioInfo:
    """Header information without decoding the samples. Raises :class:`AudioError`."""
    path = _existing_nonempty(path)
    try:
        info = sf.info(str(path))
    except Exception as e:  # libsndfile raises RuntimeError/LibsndfileError on bad headers
        raise AudioError(path, "unreadable", str(e).strip()) from None
    truncated = bool(_TRUNCATED.search(info.extra_info or ""))
    return AudioInfo(str(path), int(info.samplerate), int(info.frames), int(info.channels), info.format, truncated)


# libsndfile notes a data chunk larger than the file as "data : 32000 (should be 10637)".
_TRUNCATED = re.compile(r"^data\s*:\s*\d+\s*\(should be \d+\)", re.MULTILINE)


def to_mono(samples: np.ndarray) -> np.ndarray:
    """``[time, channels]`` or ``[time]`` → ``[time]`` by averaging channels."""
    if samples.ndim == 1:
        return samples
    return samples.mean(axis=1)


@lru_cache(maxsize=32)
def _resampler(orig: int, new: int):
    import torch  # lazy: keeps torch/numpy out of startup (`prepare`, `validate`, `--help` start fast)
    T = import_module("torchaudio.transforms")  # lazy, under audiossl's import lock: torchaudio imports slowly and not thread-safely

    return T.Resample(orig, new, dtype=torch.float32)


def resample(wav: torch.Tensor, orig_sr: int, target_sr: int) -> torch.Tensor:
    """Band-limited sinc resampling (torchaudio); ``[..., time]`` → ``[..., time']``."""
    if orig_sr == target_sr:
        return wav
    g = math.gcd(orig_sr, target_sr)
    return _resampler(orig_sr // g, target_sr // g)(wav)


def load_audio(
    path: str | Path,
    sample_rate: int | None = None,
    *,
    start: int = 0,
    frames: int = -1,
    check_finite: bool = True,
) -> tuple[torch.Tensor, int]:
    """Read ``path`` as mono float32 ``[time]``, resampled to ``sample_rate`` when given.

    ``start``/``frames`` select a span in the file's own sample rate. Returns ``(wav, rate)``.
    Raises :class:`AudioError` (missing, empty, unreadable, truncated, non_finite, no_samples).
    A truncated file (its header promises more data than it holds) is refused rather than read
    short, as :func:`audiossl.audio.validate.check_file` does, so every verb skips the same files.
    """
    path = _existing_nonempty(path)
    try:
        with sf.SoundFile(str(path)) as f:
            if _TRUNCATED.search(f.extra_info or ""):
                raise AudioError(path, "truncated", "header promises more audio data than the file holds")
            sr = f.samplerate
            if start:
                f.seek(start)
            data = f.read(frames, dtype="float32", always_2d=True)
    except AudioError:
        raise
    except Exception as e:
        raise AudioError(path, "unreadable", str(e).strip()) from None
    if data.shape[0] == 0:
        raise AudioError(path, "no_samples", "file decodes to 0 samples")
    import torch  # lazy: keeps torch/numpy out of startup (`prepare`, `validate`, `--help` start fast)

    mono = to_mono(data)
    if check_finite and not np.isfinite(mono).all():
        raise AudioError(path, "non_finite", "NaN or inf samples")
    wav = torch.from_numpy(np.ascontiguousarray(mono, dtype=np.float32))
    if sample_rate is not None and sr != sample_rate:
        wav = resample(wav, sr, sample_rate)
        sr = sample_rate
    return wav, int(sr)


def save_audio(path: str | Path, wav: torch.Tensor | np.ndarray, sample_rate: int, subtype: str = "PCM_16") -> None:
    """Write ``[time]`` (or ``[time, channels]``) audio; atomic (temp file + rename)."""
    if not isinstance(wav, np.ndarray):
        wav = wav.detach().cpu().numpy()
    path = Path(path)
    fmt = path.suffix.lstrip(".").upper() or "WAV"
    with atomic_open(path, "wb") as f:
        sf.write(f, wav, sample_rate, subtype=subtype, format=fmt)
