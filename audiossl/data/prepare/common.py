"""Shared bits of the corpus preparers: probe audio headers in parallel, skip and report bad
files, write one manifest per split, and summarise what was skipped.

A preparer lists its entries per split (relpath under the corpus root + label strings), then
calls :func:`write_splits`, which checks every distinct file once (header checks by default,
``scan_samples=True`` also decodes), drops the bad ones with their reason, and writes
``OUT/<split>.tsv`` + ``OUT/<split>.<ext>`` through :func:`audiossl.data.manifest.write_manifest`.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping

import soundfile as sf
from tqdm import tqdm

from audiossl.audio.validate import Problem, ValidationConfig, check_file
from audiossl.data.manifest import Manifest, Row, write_manifest
from audiossl.utils.fileio import atomic_write_text

log = logging.getLogger("audiossl.prepare")

SKIPPED_REPORT = "skipped.txt"


class PrepareError(ValueError):
    """Corpus layout or metadata that cannot be used; the message names the file and the fix."""


@dataclass(frozen=True)
class ProbeConfig:
    """Options every preparer accepts (``**common`` in the ``prepare_<corpus>`` signatures)."""

    workers: int = 4
    """Processes reading headers (used when there are more than 256 files)."""
    min_duration: float = 0.1
    """Seconds; shorter files are skipped."""
    max_duration: float | None = None
    """Seconds; longer files are skipped (None: no limit)."""
    sample_rate: int | None = None
    """Expected rate; other rates are reported as warnings (resampled on load)."""
    scan_samples: bool = False
    """Also decode every file (NaN/inf, silence, truncation); header checks only when False."""
    progress: bool = True
    """Show a tqdm progress bar while probing."""

    def validation(self) -> ValidationConfig:
        return ValidationConfig(
            min_duration=self.min_duration,
            max_duration=self.max_duration,
            expected_sample_rate=self.sample_rate,
            expected_channels=None,
            scan_samples=self.scan_samples,
        )


@dataclass(frozen=True)
class Entry:
    """One manifest row to be: ``relpath`` under the split's root and its labels (ext → text)."""

    relpath: str
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass
class PrepareResult:
    out: Path
    manifests: dict[str, Path] = field(default_factory=dict)
    """Split name → written ``.tsv``."""
    counts: dict[str, int] = field(default_factory=dict)
    """Split name → rows written."""
    skipped: list[Problem] = field(default_factory=list)
    """Every file (or utterance) left out, with its reason."""
    extra_files: list[Path] = field(default_factory=list)
    """Other outputs (trial lists, ...)."""
    warnings: Counter = field(default_factory=Counter)
    """Files kept despite a warning (other sample rate, channels, silence), by reason."""

    def summary(self) -> str:
        splits = ", ".join(f"{s}={n}" for s, n in self.counts.items())
        reasons = Counter(p.reason for p in self.skipped)
        text = f"wrote {len(self.manifests)} manifests to {self.out} ({splits}); skipped {len(self.skipped)} files"
        if reasons:
            text += " (" + ", ".join(f"{k}={v}" for k, v in sorted(reasons.items())) + f"; listed in {self.out / SKIPPED_REPORT})"
        if self.warnings:
            text += "; kept with warnings: " + ", ".join(f"{k}={v}" for k, v in sorted(self.warnings.items()))
        return text


def probe_files(paths: Iterable[str], config: ProbeConfig) -> tuple[dict[str, int], list[Problem], Counter]:
    """Check each distinct file once. Returns ``(num_frames per good path, fatal problems,
    warning counts by reason)``.

    ``num_frames`` comes from the header at the file's own sample rate (what fairseq stores).
    Warnings (rate, channels, silence) keep the file; each is logged at debug level and their
    counts end up in the summary.
    """
    unique = list(dict.fromkeys(str(p) for p in paths))
    vcfg = config.validation()
    jobs = [(p, vcfg) for p in unique]
    if config.workers > 1 and len(unique) > 256:
        # Header parsing is CPU-bound Python + libsndfile work: processes scale, threads do not.
        with ProcessPoolExecutor(config.workers) as ex:
            results = list(_progress(ex.map(_probe_one, jobs, chunksize=64), len(jobs), config.progress))
    else:
        results = [_probe_one(j) for j in _progress(jobs, len(jobs), config.progress)]
    frames: dict[str, int] = {}
    fatal: list[Problem] = []
    warnings: Counter = Counter()
    for path, n, problems in results:
        for p in problems:
            if p.fatal:
                fatal.append(p)
            else:
                warnings[p.reason] += 1
                log.debug(str(p))
        if n is not None and not any(p.fatal for p in problems):
            frames[path] = n
    return frames, fatal, warnings


def _probe_one(job: tuple[str, ValidationConfig]) -> tuple[str, int | None, list[Problem]]:
    path, vcfg = job
    problems = check_file(path, vcfg)
    if any(p.fatal for p in problems):
        return path, None, problems
    try:
        with sf.SoundFile(path) as f:
            return path, int(f.frames), problems
    except Exception as e:  # the file changed since check_file read it
        return path, None, [Problem(path, "unreadable", str(e).strip())]


def _progress(it, total: int, enabled: bool):
    if not enabled or total < 64:
        return it

    return tqdm(it, total=total, desc="probe audio", unit="file")


def write_splits(
    root: str | Path,
    splits: Mapping[str, list[Entry]],
    out: str | Path,
    config: ProbeConfig,
    *,
    skipped: list[Problem] | None = None,
    sort: bool = True,
) -> PrepareResult:
    """Probe every file of every split, drop bad ones, write ``OUT/<split>.tsv`` + label files.

    ``root`` is the manifest root line (the corpus directory); an ``Entry.relpath`` may also be
    absolute (generated clips outside the corpus). ``skipped`` carries problems the preparer
    found itself (e.g. a listed file without a transcript). Rows are sorted by relpath unless
    ``sort=False``. Returns the :class:`PrepareResult`; :func:`finish` reports it.
    """
    root = Path(root).resolve()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    result = PrepareResult(out, skipped=list(skipped or []))
    all_paths = [str(root / e.relpath) for entries in splits.values() for e in entries]
    frames, problems, result.warnings = probe_files(all_paths, config)
    result.skipped.extend(problems)
    for split, entries in splits.items():
        kinds = sorted({k for e in entries for k in e.labels})
        for e in entries:
            missing = [k for k in kinds if k not in e.labels]
            if missing:
                raise PrepareError(f"internal: entry {e.relpath} of split {split} lacks labels {missing}")
        kept = [e for e in entries if str(root / e.relpath) in frames]
        if sort:
            kept.sort(key=lambda e: e.relpath)
        rows = [Row(e.relpath, frames[str(root / e.relpath)]) for e in kept]
        labels = {k: [e.labels[k] for e in kept] for k in kinds}
        m = Manifest(root, rows, labels)
        result.manifests[split] = write_manifest(m, out / f"{split}.tsv")
        result.counts[split] = len(rows)
        if not rows:
            log.warning("split %s has no usable files; wrote an empty manifest %s", split, out / f"{split}.tsv")
    return result


def finish(result: PrepareResult) -> PrepareResult:
    """Log every skipped file with its reason, write ``OUT/skipped.txt``, log the summary."""
    seen: dict[tuple[str, str], Problem] = {}
    for p in result.skipped:
        seen.setdefault((p.path, p.reason), p)
    result.skipped = sorted(seen.values(), key=lambda p: (p.path, p.reason))
    for p in result.skipped:
        log.warning("skipped: %s: %s: %s", p.path, p.reason, p.detail)
    atomic_write_text(
        result.out / SKIPPED_REPORT,
        "".join(f"{p.path}\t{p.reason}\t{p.detail}\n" for p in result.skipped),
    )
    log.info(result.summary())
    return result


def relpath_under(path: Path, root: Path) -> str:
    """``path`` relative to ``root`` with forward slashes (manifests are POSIX-style)."""
    return Path(os.path.relpath(path, root)).as_posix()


def require_file(path: Path, what: str) -> Path:
    """Raise :class:`PrepareError` naming ``path`` and what it should contain when it is missing."""
    if not path.is_file():
        raise PrepareError(f"{path}: not found; expected {what}.")
    return path


def common_options(options: dict) -> ProbeConfig:
    """Split the shared options off a preparer's ``**options`` (unknown keys → clear TypeError)."""
    names = set(ProbeConfig.__dataclass_fields__)
    unknown = sorted(set(options) - names)
    if unknown:
        raise TypeError(f"unknown preparer option(s) {unknown}; shared options are {sorted(names)}")
    return ProbeConfig(**options)
