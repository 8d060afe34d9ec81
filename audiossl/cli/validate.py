"""Check audio files (a manifest, a directory, a wav.scp or single files) and report every bad
file with its reason. Exit status 0 when at least one file is usable (the report is the result),
1 when no file was found or every file would be skipped; ``--strict``: 1 when any file would be skipped."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

HELP = "check audio files and report every bad one with its reason"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("inputs", nargs="+", help="manifest .tsv, directory, wav.scp, or audio files")
    p.add_argument("--min-duration", type=float, default=0.1, help="seconds; shorter files are skipped")
    p.add_argument("--max-duration", type=float, default=None, help="seconds; longer files are skipped")
    p.add_argument("--sample-rate", type=int, default=None, help="expected rate; others are reported (resampled on load)")
    p.add_argument("--channels", type=int, default=1, help="expected channels; others are reported (mixed down)")
    p.add_argument("--silence-dbfs", type=float, default=-70.0, help="peak level below which a file is reported silent")
    p.add_argument("--workers", type=int, default=2, help="parallel processes")
    p.add_argument("--report", type=Path, default=None, help="write all problems as JSON lines here")
    p.add_argument("--strict", action="store_true", help="exit 1 when any file would be skipped (without it: only when every file would be)")


def run(args: argparse.Namespace) -> int:
    from audiossl.audio.validate import ValidationConfig, validate_files
    from audiossl.data.sources import collect_audio_paths

    paths = [p for src in args.inputs for p in collect_audio_paths(src)]
    cfg = ValidationConfig(
        min_duration=args.min_duration,
        max_duration=args.max_duration,
        expected_sample_rate=args.sample_rate,
        expected_channels=args.channels,
        silence_dbfs=args.silence_dbfs,
    )
    report = validate_files(paths, cfg, num_workers=args.workers, progress=True, log_problems=False)
    for prob in report.problems:
        print(prob)
    if args.report:
        from audiossl.utils.fileio import atomic_write_text

        atomic_write_text(
            args.report,
            "".join(json.dumps({"path": p.path, "reason": p.reason, "detail": p.detail, "fatal": p.fatal}) + "\n" for p in report.problems),
        )
    print(f"checked {len(paths)} files: {report.summary()}")
    from audiossl.cli.status import NOTHING_PRODUCED, produced_or_fail

    rc = produced_or_fail("validate", len(paths) - len(report.skipped), len(paths), "audio files")
    return NOTHING_PRODUCED if args.strict and report.skipped else rc
