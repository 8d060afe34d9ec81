"""Pretrain HuBERT / BEATs / MERT / data2vec 2.0 (``model.family`` in the recipe) on fairseq2's trainer from a manifest directory with frame labels.

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
import sys
from pathlib import Path
from typing import Callable

HELP = "pretrain HuBERT / BEATs / MERT / data2vec 2.0 on fairseq2's trainer"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, default=None, help="recipe YAML (recipes/hubert/*.yaml); None = built-in defaults")
    p.add_argument("--manifest-dir", type=Path, required=True, help="directory with <split>.tsv and <split>.<labels>")
    p.add_argument("--train-split", default="train", help="training split name")
    p.add_argument("--valid-split", default=None, help="validation split (loss, masked accuracy, best checkpoint)")
    p.add_argument("--labels", default=None, help="label file extension (<split>.<labels> + .json sidecar); 'none' for models trained on audio alone "
                   "(tokenizers, data2vec2); default: 'none' for the audio-only families (data2vec2), else 'km'")
    p.add_argument("--out", type=Path, required=True, help="run directory (checkpoints, metrics, final checkpoint/)")
    p.add_argument("--max-steps", type=int, default=None, help="override the recipe's max_steps")
    p.add_argument("--peak-tflops", type=float, default=None, help="peak dense TFLOP/s per device for MFU (default: from the GPU name; n/a on CPU)")
    p.add_argument("--export", choices=["last", "best"], default=None, help="only export that checkpoint of --out to --out/export_step_N, no training")
    p.add_argument("overrides", nargs="*", help="key=value config overrides (dotted keys)")


def config_overrides(args: argparse.Namespace) -> list[str]:
    """The positional ``key=value`` overrides plus ``--max-steps`` / ``--peak-tflops``."""
    overrides = list(args.overrides)
    if args.max_steps is not None:
        overrides.append(f"max_steps={args.max_steps}")
    if args.peak_tflops is not None:
        overrides.append(f"peak_tflops={args.peak_tflops}")
    return overrides


def train(verb: str, prepare: Callable[[], tuple]) -> tuple[int, object]:
    """Run ``run_pretraining(*prepare())`` for CLI verb ``verb`` and turn its outcomes into exit codes.

    Returns ``(0, RunResult)`` when training ran to its end, else ``(rc, result or None)``:
    2 = refused before step 1 (bad config, labels or manifest), 3 = diverged (K non-finite steps in
    a row), 143 / 130 = stopped by SIGTERM / SIGINT with a checkpoint (rerun to resume).
    """
    from audiossl.data.frame_labels import LabelError
    from audiossl.data.manifest import ManifestError
    from audiossl.pretrain.config import ConfigError
    from audiossl.pretrain.health import TrainingDiverged

    try:
        cfg, paths = prepare()
        from audiossl.pretrain.trainer import run_pretraining

        result = run_pretraining(cfg, paths)
    except (ConfigError, LabelError, ManifestError) as e:
        print(f"audiossl {verb}: refusing to start:\n{e}", file=sys.stderr)
        return 2, None
    except TrainingDiverged as e:
        print(f"audiossl {verb}: training diverged:\n{e}", file=sys.stderr)
        return 3, None
    if result.stopped_by is not None:
        print(f"audiossl {verb}: stopped by {result.stopped_by} after step {result.step_nr} with a checkpoint; "
              f"run the same command to resume", file=sys.stderr)
        return (143 if result.stopped_by == "SIGTERM" else 130), result
    return 0, result


def run(args: argparse.Namespace) -> int:
    import logging
    import os

    from audiossl.pretrain.config import load_config

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

    def prepare():
        from audiossl.pretrain.config import ConfigError
        from audiossl.pretrain.trainer import RunPaths, family_of

        cfg = load_config(args.config, config_overrides(args))
        audio_only = bool(getattr(family_of(cfg), "AUDIO_ONLY", False))
        labels = args.labels if args.labels is not None else ("none" if audio_only else "km")
        if audio_only and labels.lower() != "none":
            raise ConfigError(f"--labels {labels}: model family {cfg.model.family} trains on audio alone; leave --labels out (or pass --labels none)")
        labels = None if labels.lower() == "none" else labels
        return cfg, RunPaths(args.manifest_dir, args.train_split, labels, args.out, args.valid_split)

    rc, result = train("pretrain", prepare)
    if rc == 0 and result.checkpoint_dir is not None:
        print(f"final model: {result.checkpoint_dir} (step {result.step_nr}); skipped {result.num_skipped} unreadable utterance(s)")
    return rc
