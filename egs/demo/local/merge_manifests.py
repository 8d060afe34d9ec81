#!/usr/bin/env python
"""Merge fairseq manifests that live under different roots into one manifest (audio only).

    merge_manifests.py OUT.tsv IN1.tsv [IN2.tsv ...]

The merged root is the deepest directory common to every input root; each row's relpath is
rewritten relative to it, so nothing is copied. Labels are not carried over (pretraining input).
"""

import os
import sys
from pathlib import Path

from audiossl.data.manifest import Manifest, Row, read_manifest, write_manifest


def main(argv: list[str]) -> int:
    if len(argv) < 2 or argv[0] in {"-h", "--help"}:
        print(__doc__)
        return 0 if argv and argv[0] in {"-h", "--help"} else 2
    out, inputs = Path(argv[0]), [read_manifest(Path(p)) for p in argv[1:]]
    root = Path(os.path.commonpath([str(m.root.resolve()) for m in inputs]))
    rows = [
        Row(str((m.root.resolve() / r.relpath).relative_to(root)), r.num_samples) for m in inputs for r in m.rows
    ]
    write_manifest(Manifest(root, rows), out)
    print(f"{out}: {len(rows)} rows from {len(inputs)} manifests (root {root})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
