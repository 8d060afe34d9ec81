"""Utterance lengths from audio file headers, without decoding."""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from tqdm import tqdm

from audiossl.audio.io import AudioError, audio_info
from audiossl.data.manifest import Manifest


def probe_lengths(manifest: Manifest, sample_rate: int, num_workers: int = 8, progress: bool = True) -> tuple[np.ndarray, list[AudioError]]:
    """Length of every row at ``sample_rate`` from the file headers (no decoding).

    Returns ``(lengths[N], problems)``; unreadable rows get length -1 and an :class:`AudioError`.
    """
    paths = list(manifest.paths())

    def one(p: Path) -> int | AudioError:
        try:
            info = audio_info(p)
        except AudioError as e:
            return e
        if info.truncated:
            return AudioError(p, "truncated", "header promises more audio data than the file holds")
        if info.num_frames == 0:
            return AudioError(p, "no_samples", "file has 0 frames")
        # torchaudio's sinc resampler returns ceil(n * new / orig) samples.
        return info.num_frames if info.sample_rate == sample_rate else math.ceil(info.num_frames * sample_rate / info.sample_rate)

    lengths = np.full(len(paths), -1, dtype=np.int64)
    problems: list[AudioError] = []
    with ThreadPoolExecutor(max(1, num_workers)) as ex:
        results = ex.map(one, paths)
        for i, r in enumerate(tqdm(results, total=len(paths), desc="probe audio", disable=not progress, leave=False)):
            if isinstance(r, AudioError):
                problems.append(r)
            else:
                lengths[i] = r
    return lengths, problems
