"""Audio validation: report every bad file with its reason, and let the run go on.

Problems are either *fatal* for the file (it is skipped: missing, empty, unreadable, truncated,
too_short, too_long, non_finite, no_samples) or *warnings* (the file is kept and fixed on load:
sample_rate is resampled, channels are mixed down; silent is kept because silence can be
valid data, e.g. Speech Commands' ``_silence_`` class). A run ends with :meth:`ValidationReport.summary`.
"""

from __future__ import annotations

import logging
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import soundfile as sf
from tqdm import tqdm

from audiossl.audio.io import AudioError, audio_info

log = logging.getLogger(__name__)

FATAL = frozenset({"missing", "empty", "unreadable", "truncated", "no_samples", "too_short", "too_long", "non_finite"})
WARNING = frozenset({"sample_rate", "channels", "silent"})


@dataclass(frozen=True)
class Problem:
    path: str
    reason: str
    detail: str

    @property
    def fatal(self) -> bool:
        return self.reason in FATAL

    def __str__(self) -> str:
        kind = "skipped" if self.fatal else "warning"
        return f"{kind}: {self.path}: {self.reason}: {self.detail}"


@dataclass(frozen=True)
class ValidationConfig:
    min_duration: float = 0.1
    """Files shorter than this (seconds, at their own rate) are skipped."""
    max_duration: float | None = None
    """Files longer than this are skipped (None: no limit)."""
    expected_sample_rate: int | None = None
    """A different rate is a warning (the file is resampled on load)."""
    expected_channels: int | None = 1
    """A different channel count is a warning (the file is mixed down on load)."""
    silence_dbfs: float = -70.0
    """Peak level below which a file is reported silent (warning)."""
    scan_samples: bool = True
    """Decode the samples to look for NaN/inf and silence (header checks only when False)."""
    block_frames: int = 1 << 20


@dataclass
class ValidationReport:
    good: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    @property
    def skipped(self) -> list[str]:
        seen: dict[str, None] = {}
        for p in self.problems:
            if p.fatal:
                seen[p.path] = None
        return list(seen)

    def summary(self) -> str:
        fatal = Counter(p.reason for p in self.problems if p.fatal)
        warn = Counter(p.reason for p in self.problems if not p.fatal)
        parts = [f"{len(self.good)} good", f"{len(self.skipped)} skipped"]
        if fatal:
            parts.append("skipped by reason: " + ", ".join(f"{k}={v}" for k, v in sorted(fatal.items())))
        if warn:
            parts.append("warnings: " + ", ".join(f"{k}={v}" for k, v in sorted(warn.items())))
        return "; ".join(parts)


def check_file(path: str | Path, config: ValidationConfig = ValidationConfig()) -> list[Problem]:
    """All problems of one file (empty list = fine). Never raises for bad audio."""
    path = str(path)
    try:
        info = audio_info(path)
    except AudioError as e:
        return [Problem(path, e.reason, e.detail)]
    problems: list[Problem] = []
    if info.num_frames == 0:
        return [Problem(path, "no_samples", "header reports 0 frames")]
    if info.truncated:
        return [Problem(path, "truncated", "header promises more audio data than the file holds")]
    if info.duration < config.min_duration:
        problems.append(Problem(path, "too_short", f"{info.duration:.3f}s < minimum {config.min_duration}s"))
    if config.max_duration is not None and info.duration > config.max_duration:
        problems.append(Problem(path, "too_long", f"{info.duration:.1f}s > maximum {config.max_duration}s"))
    if config.expected_sample_rate is not None and info.sample_rate != config.expected_sample_rate:
        problems.append(
            Problem(path, "sample_rate", f"{info.sample_rate} Hz, expected {config.expected_sample_rate} Hz (will resample)")
        )
    if config.expected_channels is not None and info.channels != config.expected_channels:
        problems.append(
            Problem(path, "channels", f"{info.channels} channels, expected {config.expected_channels} (will mix down)")
        )
    if config.scan_samples and not any(p.fatal for p in problems):
        problems.extend(_scan_samples(path, info.num_frames, config))
    return problems


def _scan_samples(path: str, num_frames: int, config: ValidationConfig) -> list[Problem]:
    peak = 0.0
    decoded = 0
    try:
        with sf.SoundFile(path) as f:
            for block in f.blocks(blocksize=config.block_frames, dtype="float32", always_2d=True):
                if not np.isfinite(block).all():
                    bad = int((~np.isfinite(block)).sum())
                    return [Problem(path, "non_finite", f"{bad} NaN/inf samples")]
                if block.size:
                    peak = max(peak, float(np.abs(block).max()))
                decoded += block.shape[0]
    except Exception as e:
        return [Problem(path, "unreadable", f"decoding failed after {decoded} frames: {str(e).strip()}")]
    if decoded == 0:
        return [Problem(path, "no_samples", "file decodes to 0 samples")]
    if decoded < num_frames:
        return [Problem(path, "unreadable", f"truncated: header says {num_frames} frames, decoded {decoded}")]
    level = 20 * np.log10(peak) if peak > 0 else -np.inf
    if level < config.silence_dbfs:
        return [Problem(path, "silent", f"peak {level:.1f} dBFS < {config.silence_dbfs} dBFS")]
    return []


def _check_one(args):
    path, config = args
    return path, check_file(path, config)


def validate_files(
    paths: Iterable[str | Path],
    config: ValidationConfig = ValidationConfig(),
    *,
    num_workers: int = 1,
    progress: bool = False,
    log_problems: bool = True,
) -> ValidationReport:
    """Check every file; returns good paths (fatal-free, in input order) and all problems."""
    paths = [str(p) for p in paths]
    report = ValidationReport()
    jobs = [(p, config) for p in paths]
    if num_workers > 1 and len(paths) > 64:
        with ProcessPoolExecutor(num_workers) as ex:
            results: Sequence = list(_progress(ex.map(_check_one, jobs, chunksize=32), len(jobs), progress))
    else:
        results = [_check_one(j) for j in _progress(jobs, len(jobs), progress)]
    for path, problems in results:
        report.problems.extend(problems)
        if log_problems:
            for p in problems:
                (log.warning if p.fatal else log.info)(str(p))
        if not any(p.fatal for p in problems):
            report.good.append(path)
    return report


def _progress(it, total, enabled):
    if not enabled:
        return it

    return tqdm(it, total=total, desc="validate", unit="file")
