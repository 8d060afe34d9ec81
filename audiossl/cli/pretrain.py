"""Pretrain HuBERT / BEATs / MERT (``model.family`` in the recipe) on fairseq2's trainer from a manifest directory with frame labels.

    audiossl pretrain --config recipes/hubert/tiny.yaml --manifest-dir data/manifests \\
        --train-split train --valid-split valid --labels km --out runs/tiny [key=value ...]

Reads ``<manifest-dir>/<split>.tsv`` and ``<split>.<labels>`` (+ ``.json`` sidecar with the frame
rate and class count). Label/audio mismatches are refused before step 1. Re-running the same
command resumes from the last checkpoint in OUT. Multi-GPU: ``torchrun --nproc_per_node=8 -m
audiossl.cli.main pretrain ...`` (same arguments). Overrides use dotted keys, e.g.
``optim.lr=2e-4 data.max_tokens=2000000 model.num_classes=500``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "pretrain HuBERT / BEATs / MERT on fairseq2's trainer"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, default=None, help="recipe YAML (recipes/hubert/*.yaml); None = built-in defaults")
    p.add_argument("--manifest-dir", type=Path, required=True, help="directory with <split>.tsv and <split>.<labels>")
    p.add_argument("--train-split", default="train", help="training split name")
    p.add_argument("--valid-split", default=None, help="validation split (loss, masked accuracy, best checkpoint)")
    p.add_argument("--labels", default="km", help="label file extension (<split>.<labels> + .json sidecar); 'none' for models trained on audio alone (tokenizers)")
    p.add_argument("--out", type=Path, required=True, help="run directory (checkpoints, metrics, final checkpoint/)")
    p.add_argument("--max-steps", type=int, default=None, help="override the recipe's max_steps")
    p.add_argument("--peak-tflops", type=float, default=None, help="peak dense TFLOP/s per device for MFU (default: from the GPU name; n/a on CPU)")
    p.add_argument("--export", choices=["last", "best"], default=None, help="only export that checkpoint of --out to --out/export_step_N, no training")
    p.add_argument("overrides", nargs="*", help="key=value config overrides (dotted keys)")


def run(args: argparse.Namespace) -> int:
    import logging
    import os

    from audiossl.data.frame_labels import LabelError
    from audiossl.data.manifest import ManifestError
    from audiossl.pretrain.config import ConfigError, load_config
    from audiossl.pretrain.health import TrainingDiverged

    if args.export:
        from audiossl.pretrain.export import ExportError, export_from_run

        try:
            print(f"exported {export_from_run(args.out, args.export)}")
        except ExportError as e:
            print(f"audiossl pretrain: {e}")
            return 2
        return 0
    if int(os.environ.get("RANK", "0")) > 0:
        logging.getLogger().setLevel(logging.WARNING)  # one copy of the progress log (rank 0)
    overrides = list(args.overrides)
    if args.max_steps is not None:
        overrides.append(f"max_steps={args.max_steps}")
    if args.peak_tflops is not None:
        overrides.append(f"peak_tflops={args.peak_tflops}")
    try:
        cfg = load_config(args.config, overrides)
        from audiossl.pretrain.trainer import RunPaths, run_pretraining

        labels = None if args.labels.lower() == "none" else args.labels
        paths = RunPaths(args.manifest_dir, args.train_split, labels, args.out, args.valid_split)
        result = run_pretraining(cfg, paths)
    except (ConfigError, LabelError, ManifestError) as e:
        print(f"audiossl pretrain: refusing to start:\n{e}")
        return 2
    except TrainingDiverged as e:
        print(f"audiossl pretrain: training diverged:\n{e}")
        return 3
    if result.stopped_by is not None:
        print(f"audiossl pretrain: stopped by {result.stopped_by} after step {result.step_nr} with a checkpoint; "
              f"run the same command to resume")
        return 143 if result.stopped_by == "SIGTERM" else 130
    if result.checkpoint_dir is not None:
        print(f"final model: {result.checkpoint_dir} (step {result.step_nr}); skipped {result.num_skipped} unreadable utterance(s)")
    return 0
