"""Extract the hidden states of any upstream (specs listed below) for a file, directory, Kaldi
wav.scp or manifest into OUT as npy / HDF5 / Kaldi ark, with an
index.tsv (id, shape, frame rate). Batches by total duration, longest first; long files go in
overlapping chunks stitched to the single-pass frame count; a rerun skips finished utterances; bad
files are reported and skipped, with a final count. Exit status: 0 when anything was written (or
was already there), 1 when every input was skipped or none was found, 2 on bad arguments.

upstream specs:
{specs}
"""

from __future__ import annotations

import argparse
from pathlib import Path

from audiossl.upstream.specs import spec_help, spec_help_long

HELP = "extract hidden states of any upstream to npy / hdf5 / ark"
__doc__ = __doc__.format(specs=spec_help_long())


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("upstream", help=spec_help())
    p.add_argument("input", help="audio file, directory, Kaldi wav.scp, or manifest .tsv")
    p.add_argument("out", type=Path, help="output directory (index.tsv + arrays)")
    p.add_argument("--layers", default="all", help="all | N | N,M | weighted:<featurizer .json/.safetensors>")
    p.add_argument("--pool", default="none", choices=["none", "mean"], help="mean-pool frames per utterance")
    p.add_argument("--format", default="npy", choices=["npy", "hdf5", "ark"], help="output format")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda:0")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"],
                   help="compute dtype (autocast); float16 is also stored as float16")
    p.add_argument("--max-seconds", type=float, default=None,
                   help="total padded audio per batch in seconds (default: 160 on a GPU, 10 on CPU, where big batches are slower)")
    p.add_argument("--chunk-seconds", type=float, default=30.0, help="process longer files in chunks of this length; 0 = never")
    p.add_argument("--overlap-seconds", type=float, default=2.0, help="context on each side of a chunk (seconds)")
    p.add_argument("--prefetch", type=int, default=2,
                   help="batches decoded ahead in a background thread while the model runs; 0 = decode inline (default: 2)")
    p.add_argument("--shard", default=None, metavar="I/N",
                   help="extract only inputs i %% N == I into OUT/part-I-of-N (a Slurm array task); under torchrun "
                        "the rank picks its part (device cuda -> cuda:LOCAL_RANK). Each part is a complete, resumable output")


def run(args: argparse.Namespace) -> int:
    from audiossl.extract.run import extract, ExtractConfig

    cfg = ExtractConfig(
        layers=args.layers, pool=args.pool, format=args.format, device=args.device, dtype=args.dtype,
        max_seconds=args.max_seconds, chunk_seconds=args.chunk_seconds, overlap_seconds=args.overlap_seconds,
        prefetch=args.prefetch,
    )
    out, inputs = args.out, args.input
    try:
        from audiossl.data.sharding import current_part

        part = current_part(args.shard)
        if not part.single:
            import os

            from audiossl.extract.run import list_inputs

            inputs = [p for i, p in enumerate(list_inputs(args.input)) if i % part.count == part.index]
            out = Path(args.out) / f"part-{part.index:05d}-of-{part.count:05d}"
            if part.distributed and cfg.device == "cuda":
                cfg.device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
        report = extract(args.upstream, inputs, out, cfg)
    except (ValueError, FileNotFoundError) as e:
        print(f"audiossl extract: {e}")
        return 2
    for path, reason in report.skipped or []:
        print(f"skipped {path}: {reason}")
    print(f"extract: {report.summary()} → {out}")
    print(f"extract: {report.timing()}")
    from audiossl.cli.status import produced_or_fail

    total = report.written + report.already_done + len(report.skipped or [])
    return produced_or_fail("extract", report.written + report.already_done, total, "audio files")
