"""Export a manifest (``<split>.tsv`` + label files) to another toolkit's format.

  --to lhotse   a lhotse CutSet (.jsonl.gz): one recording + one supervision (text from .wrd,
                speaker from .spk) per row; ids from .ids when present.

Rows whose audio is missing or unreadable are reported and skipped. Exit status 0 when at least one
row was exported, 1 when none was, 2 when the manifest cannot be read.
"""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "export a manifest to another toolkit's format (lhotse CutSet)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("manifest", type=Path, help="manifest <split>.tsv (label files beside it are picked up)")
    p.add_argument("out", type=Path, help="output file, e.g. cuts_train.jsonl.gz")
    p.add_argument("--to", required=True, choices=["lhotse"], help="target format")


def run(args: argparse.Namespace) -> int:
    import sys

    from audiossl.cli.status import produced_or_fail
    from audiossl.data.manifest import ManifestError
    from audiossl.interop.lhotse_export import export_lhotse

    try:
        out, n, skipped = export_lhotse(args.manifest, args.out)
    except ManifestError as e:
        print(f"audiossl export-manifest: {e}", file=sys.stderr)
        return 2
    for path, reason in skipped:
        print(f"skipped {path}: {reason}")
    if n:
        print(f"export-manifest: wrote {n} cuts to {out}; skipped {len(skipped)}")
    return produced_or_fail("export-manifest", n, n + len(skipped), "manifest rows")
