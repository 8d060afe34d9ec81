#!/usr/bin/env python
"""Repeat each utterance's label once per reference frame, for frame-level scores (PNMI) against
utterance labels such as the demo's instruments.

    utt_labels_to_frames.py MANIFEST.tsv LABELS.lbl OUT [--rate 100]

Row i of OUT holds LABELS' line i repeated ceil(duration * rate) times (duration from the file header).
"""

import argparse
import math
from pathlib import Path

from audiossl.audio.io import audio_info
from audiossl.data.manifest import read_manifest
from audiossl.utils.fileio import atomic_write_text


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("manifest", type=Path, help="fairseq manifest (num_samples per row)")
    p.add_argument("labels", type=Path, help="one label per manifest row")
    p.add_argument("out", type=Path, help="frame-level reference to write")
    p.add_argument("--rate", type=float, default=100.0, help="reference frame rate in Hz (default: 100)")
    a = p.parse_args()
    m = read_manifest(a.manifest)
    labels = a.labels.read_text().split("\n")[: len(m)]
    if len(labels) != len(m) or any(not x.strip() for x in labels):
        raise SystemExit(f"{a.labels}: expected {len(m)} non-empty lines, one per row of {a.manifest}")
    rows = []
    for path, lab in zip(m.paths(), labels):
        info = audio_info(path)
        rows.append(" ".join([lab.strip().replace(" ", "_")] * math.ceil(info.num_frames / info.sample_rate * a.rate)))
    atomic_write_text(a.out, "".join(r + "\n" for r in rows))
    print(f"{a.out}: {len(rows)} rows at {a.rate:g} Hz")


if __name__ == "__main__":
    main()
