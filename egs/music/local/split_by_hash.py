#!/usr/bin/env python
"""Split one manifest into train/valid by a hash of each row's path (deterministic, stable when
files are added: a file never moves between splits).

    split_by_hash.py IN.tsv OUT_DIR [--valid-percent 5]

Writes OUT_DIR/train.tsv and OUT_DIR/valid.tsv (same root as IN). A row goes to valid when
sha1(relpath) mod 10000 < valid_percent × 100. With at least two rows, neither split is left
empty: the row with the lowest (resp. highest) hash moves over, so tiny corpora still validate.
"""

import argparse
import hashlib
import sys
from pathlib import Path

from audiossl.data.manifest import Manifest, read_manifest, write_manifest


def bucket(relpath: str) -> int:
    """0..9999 from the path's SHA-1 (not Python's salted hash(): stable across runs)."""
    return int.from_bytes(hashlib.sha1(relpath.encode("utf-8")).digest()[:8], "big") % 10000


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("manifest", type=Path, help="input <split>.tsv (labels are not carried over)")
    p.add_argument("out", type=Path, help="directory for train.tsv and valid.tsv")
    p.add_argument("--valid-percent", type=float, default=5.0, help="share of rows in valid, 0-100 (default: 5)")
    args = p.parse_args(argv)
    if not 0 < args.valid_percent < 100:
        p.error(f"--valid-percent {args.valid_percent} must be between 0 and 100 (exclusive)")
    m = read_manifest(args.manifest)
    ranked = sorted(m.rows, key=lambda r: (bucket(r.relpath), r.relpath))
    cut = args.valid_percent * 100
    valid = [r for r in ranked if bucket(r.relpath) < cut]
    train = [r for r in ranked if bucket(r.relpath) >= cut]
    if len(ranked) >= 2:
        if not valid:
            valid, train = train[:1], train[1:]
        if not train:
            valid, train = valid[:-1], valid[-1:]
    for name, rows in (("train", train), ("valid", valid)):
        write_manifest(Manifest(m.root, sorted(rows, key=lambda r: r.relpath)), args.out / f"{name}.tsv")
    print(f"{args.manifest}: {len(train)} train, {len(valid)} valid rows → {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
