"""Compute frame features for every row of a manifest into a sharded feature store
(``meta.json`` + ``index.tsv`` + memory-mapped ``shard_*.npy``; read it with
``audiossl.data.feature_store.FeatureStore``).

kinds:
  mfcc   Kaldi MFCC + deltas + delta-deltas, 39 dims at 100 Hz (fairseq HuBERT iteration 1)
  fbank  Kaldi log mel filterbank, --num-mel-bins dims at 100 Hz
  cqt    log-magnitude constant-Q transform (librosa), --n-bins dims at sample-rate/--hop-length Hz
  model  layer features of a trained checkpoint: --ckpt CKPT --layer N
  merge  join the parts of a sharded dump: `audiossl features merge OUT` (after every --shard I/N)

Data-parallel: under torchrun each rank dumps rows i % world == rank and rank 0 merges the index
after a barrier; as a Slurm array, `--shard $SLURM_ARRAY_TASK_ID/N` per task, then one
`audiossl features merge OUT`. Parts write disjoint shard files; a part that dies resumes.

Bad audio files are reported with path and reason and skipped; the run ends with a count.
An interrupted run resumes: utterances in finished shards are kept (unless --no-resume).

example:
  audiossl features mfcc data/manifests/train.tsv feats/mfcc --workers 2
"""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "compute MFCC / fbank / CQT (or model layer) features into a sharded store"
KINDS = ("mfcc", "fbank", "cqt", "model", "merge")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("kind", choices=KINDS, help="feature kind (see above)")
    p.add_argument("manifest", type=Path, help="fairseq manifest .tsv (from `audiossl prepare`); merge: the store directory")
    p.add_argument("out", type=Path, nargs="?", default=None, help="output store directory (not for merge)")
    p.add_argument("--shard", default=None, metavar="I/N",
                   help="dump only part I of N (rows i %% N == I; a Slurm array task); join with `features merge OUT`")
    p.add_argument("--workers", type=int, default=2, help="parallel processes, one thread each (model on a GPU: one process)")
    p.add_argument("--sample-rate", type=int, default=None,
                   help="resample audio to this rate; unset = 16000, 24000 for cqt, the checkpoint's rate for model")
    p.add_argument("--num-mel-bins", type=int, default=80, help="fbank: mel bins (80 SUPERB, 128 BEATs)")
    p.add_argument("--hop-length", type=int, default=320, help="cqt: samples between frames")
    p.add_argument("--n-bins", type=int, default=84, help="cqt: number of bins")
    p.add_argument("--bins-per-octave", type=int, default=12, help="cqt: bins per octave")
    p.add_argument("--fmin", type=float, default=32.70, help="cqt: lowest bin frequency in Hz")
    p.add_argument("--ckpt", type=Path, default=None, help="model: checkpoint directory")
    p.add_argument("--layer", type=int, default=None, help="model: hidden-state index (0 = before the first transformer layer)")
    p.add_argument("--device", default=None, help="model: torch device; unset = cuda when available, else cpu")
    p.add_argument("--no-resume", action="store_true", help="start over, deleting shards already in OUT")
    p.add_argument("--shard-mb", type=int, default=256, help="shard size in MB")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    import logging

    log = logging.getLogger("audiossl.features")
    if args.kind == "merge":
        from audiossl.data.feature_store import merge_parts

        try:
            store = merge_parts(args.manifest)
        except (FileNotFoundError, ValueError) as e:
            log.error("%s", e)
            return 1
        print(f"merged {store.meta.get('num_parts')} parts: {len(store)} utterances, {store.num_frames} frames -> {store.path}")
        return 0
    if args.out is None:
        log.error("features %s needs MANIFEST OUT", args.kind)
        return 2
    if args.shard_mb <= 0:
        log.error("--shard-mb must be positive, got %d", args.shard_mb)
        return 2
    from audiossl.data.manifest import ManifestError
    from audiossl.features.dump import dump_features

    kwargs: dict = {}
    sample_rate = args.sample_rate or (24000 if args.kind == "cqt" else 16000)
    if args.kind == "model":
        if args.ckpt is None or args.layer is None:
            log.error("features model needs --ckpt CKPT_DIR and --layer N (0 = before the first transformer layer)")
            return 2
        kwargs.update(ckpt=args.ckpt, layer=args.layer, device=args.device)
        sample_rate = args.sample_rate  # None: the checkpoint's rate
    elif args.kind == "fbank":
        kwargs["num_mel_bins"] = args.num_mel_bins
    elif args.kind == "cqt":
        kwargs.update(hop_length=args.hop_length, n_bins=args.n_bins, bins_per_octave=args.bins_per_octave, fmin=args.fmin)
    from audiossl.data.sharding import current_part

    try:
        part = current_part(args.shard)
        summary = dump_features(
            args.kind, args.manifest, args.out, workers=args.workers, sample_rate=sample_rate,
            resume=not args.no_resume, progress=not args.no_progress, shard_bytes=args.shard_mb << 20,
            part=part, **kwargs,
        )
    except (ManifestError, ValueError, OSError) as e:  # ValueError includes CheckpointError
        log.error("%s", e)
        return 1
    for s in summary.skipped:
        print(s)
    print(f"{summary.num_rows} rows: {summary.summary()}")
    from audiossl.cli.status import produced_or_fail

    return produced_or_fail("features", summary.computed + summary.reused, summary.num_rows, "manifest rows")
