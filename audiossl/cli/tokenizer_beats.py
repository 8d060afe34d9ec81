"""BEATs tokenizers from the command line (registered in :mod:`audiossl.cli.tokenizer`).

    # iteration 1: frozen random-projection codes (8 per 160 ms step) for a manifest
    audiossl tokenizer label random-projection data/demo/speech/train.tsv --ext rp --seed 0

    # iteration n → n+1: train a self-distilled tokenizer from a teacher (a BEATs / HuBERT checkpoint)
    audiossl tokenizer train beats --config recipes/beats/tokenizer_tiny.yaml --teacher runs/beats_it1/checkpoint \\
        --manifest-dir data/demo/speech --train-split train --out runs/beats_tok1

    # label the corpus with it (codes for the next BEATs iteration), or with a released unilm tokenizer
    audiossl tokenizer label beats runs/beats_tok1/checkpoint data/demo/speech/train.tsv --ext bt1
    audiossl tokenizer label beats beats_tokenizer:Tokenizer_iter3_plus_AS2M.pt data/demo/speech/train.tsv --ext bt3

Labels go to ``<manifest stem>.<ext>`` beside the manifest (or ``--out``), with a ``.json`` sidecar
(6.25 Hz, num_classes, 8 codes per frame, the tokenizer's identity). Unreadable audio is reported
with path and reason, gets an empty row (the trainer skips it too), and is counted at the end.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from audiossl.upstream.specs import spec_help

log = logging.getLogger("audiossl.tokenizer")


def add_train_arguments(p: argparse.ArgumentParser, kind: str) -> None:
    p.add_argument("--config", type=Path, required=True, help="recipe YAML: recipes/beats/tokenizer_tiny.yaml (CPU) or tokenizer_base.yaml")
    p.add_argument("--teacher", required=True, help="teacher upstream spec (its last layer is the target): " + spec_help())
    p.add_argument("--teacher-layout", choices=["auto", "time", "patch"], default=None, help="override the recipe's teacher_layout: 'time' pools teacher frames onto 6.25 Hz steps; 'patch' takes per-patch outputs of a BEATs teacher; 'auto' = patch for BEATs teachers, else time")
    p.add_argument("--manifest-dir", type=Path, required=True, help="directory with <split>.tsv")
    p.add_argument("--train-split", default="train", help="training split name")
    p.add_argument("--valid-split", default=None, help="validation split (cosine loss, best checkpoint)")
    p.add_argument("--out", type=Path, required=True, help="run directory (checkpoints, metrics, final checkpoint/)")
    p.add_argument("--max-steps", type=int, default=None, help="override the recipe's max_steps")
    p.add_argument("--peak-tflops", type=float, default=None, help="peak dense TFLOP/s per device for MFU (default: from the GPU name; n/a on CPU)")
    p.add_argument("overrides", nargs="*", help="key=value config overrides (dotted keys), e.g. optim.lr=1e-4 model.codebook_decay=0.98")


def add_label_arguments(p: argparse.ArgumentParser, kind: str) -> None:
    if kind == "beats":
        p.add_argument("checkpoint", help="trained tokenizer checkpoint dir (RUN/checkpoint from `tokenizer train beats`), "
                                          "or beats_tokenizer:<file> (a released microsoft/unilm BEATs tokenizer .pt)")
    p.add_argument("manifest", type=Path, help="manifest <split>.tsv to label")
    p.add_argument("--ext", default="rp" if kind == "random-projection" else "bt", help="label extension: writes <manifest stem>.<ext> (+ .json)")
    p.add_argument("--out", type=Path, default=None, help="label file path (default: beside the manifest, see --ext)")
    if kind == "random-projection":
        p.add_argument("--seed", type=int, default=0, help="seed of the projection and the codebook")
        p.add_argument("--num-codes", type=int, default=1024, help="codebook size")
        p.add_argument("--dim", type=int, default=256, help="projection / code dimension")
        p.add_argument("--tokenizer", type=Path, default=None, help="load a saved tokenizer dir instead of --seed/--num-codes/--dim")
        p.add_argument("--save", type=Path, default=None, help="also save the tokenizer (safetensors + json) to this dir")
    p.add_argument("--batch-size", type=int, default=16, help="utterances per forward")
    p.add_argument("--device", default="cpu", help="torch device: cpu, cuda, ...")


def _fail(msg: str) -> int:
    print(f"audiossl tokenizer: {msg}", file=sys.stderr)
    return 2


# ----------------------------------------------------------------------------- train


def _resolve_spec(spec: str) -> str:
    """Absolute path inside an upstream spec, so a resumed run finds the teacher from any directory."""
    if Path(spec).exists():
        return str(Path(spec).resolve())
    prefix, sep, rest = spec.partition(":")
    if sep and rest and Path(rest).exists():
        return f"{prefix}:{Path(rest).resolve()}"
    return spec


def run_train(args: argparse.Namespace) -> int:
    from audiossl.cli.pretrain import config_overrides, train
    from audiossl.pretrain.config import ConfigError, load_config

    def prepare():
        cfg = load_config(args.config, config_overrides(args))
        if cfg.model.family != "beats_tokenizer":
            raise ConfigError(f"{args.config}: model.family is {cfg.model.family!r}; `tokenizer train beats` needs a beats_tokenizer recipe (recipes/beats/tokenizer_*.yaml)")
        teacher = _resolve_spec(args.teacher)
        from audiossl.upstream.load import load_upstream

        try:
            up = load_upstream(teacher)
        except (FileNotFoundError, ValueError) as e:
            raise ConfigError(f"--teacher {args.teacher}: {e}") from None
        cfg.model.overrides.update(teacher=teacher, teacher_dim=int(up.hidden_dim))
        if args.teacher_layout:
            cfg.model.overrides["teacher_layout"] = args.teacher_layout
        log.info("teacher %s: %d layers x %d dims at %.2f Hz", teacher, up.num_layers, up.hidden_dim, up.frame_rate)
        from audiossl.pretrain.trainer import RunPaths

        return cfg, RunPaths(args.manifest_dir, args.train_split, None, args.out, args.valid_split)

    rc, result = train("tokenizer train beats", prepare)
    if rc == 0 and result.checkpoint_dir is not None:
        print(f"tokenizer: {result.checkpoint_dir} (step {result.step_nr}); skipped {result.num_skipped} unreadable utterance(s)")
    return rc


# ----------------------------------------------------------------------------- label


def _report(out: Path, n: int, skipped: dict[str, int]) -> None:
    reasons = ", ".join(f"{k}: {v}" for k, v in sorted(skipped.items())) or "none"
    print(f"labelled {n - sum(skipped.values())} of {n} rows -> {out}; skipped {sum(skipped.values())} ({reasons})")


def run_label(args: argparse.Namespace) -> int:
    import torch

    from audiossl.data.manifest import ManifestError, read_manifest
    from audiossl.tokenizers.labelling import label_manifest

    out = args.out or args.manifest.with_suffix(f".{args.ext}")
    if args.batch_size < 1:
        return _fail(f"--batch-size must be >= 1, got {args.batch_size}")
    try:
        n = len(read_manifest(args.manifest))
        if args.kind == "random-projection":
            from audiossl.tokenizers.beats.random_projection import (
                RandomProjectionConfig, RandomProjectionTokenizer, load_random_projection, save_random_projection,
            )

            if args.tokenizer is not None:
                tok = load_random_projection(args.tokenizer)
            else:
                tok = RandomProjectionTokenizer(RandomProjectionConfig(num_codes=args.num_codes, dim=args.dim, seed=args.seed))
            if args.save is not None:
                save_random_projection(tok, args.save)
            tok = tok.to(args.device)
            ident, num_classes, per_frame, rate = tok.identity(), tok.cfg.num_codes, tok.cfg.codes_per_frame, tok.frame_rate
            tokenize = tok
        else:
            from audiossl.models.checkpoint import CheckpointError
            from audiossl.tokenizers.beats.family import load_pretrain_checkpoint

            scheme, _, released = str(args.checkpoint).partition(":")
            try:
                if scheme == "beats_tokenizer" and released:
                    from audiossl.tokenizers.beats.checkpoint import load_beats_tokenizer

                    model, source = load_beats_tokenizer(released), f"beats_tokenizer:{Path(released).resolve()}"
                else:
                    model, source = load_pretrain_checkpoint(args.checkpoint), str(Path(args.checkpoint).resolve())
            except CheckpointError as e:
                return _fail(str(e))
            model = model.to(args.device)
            cfg = model.cfg
            ident = {"kind": "beats", "checkpoint": source, "codebook_size": cfg.codebook_size,
                     "codebook_dim": cfg.codebook_dim, "teacher": cfg.teacher}
            num_classes, per_frame, rate, tokenize = cfg.codebook_size, cfg.bands, model.frame_rate, model.tokenize
        with torch.inference_mode():
            path, skipped = label_manifest(
                args.manifest, out, tokenize, sample_rate=16000, num_classes=num_classes, tokenizer=ident, frame_rate=rate,
                num_codebooks=per_frame, batch_size=args.batch_size, device=args.device,
            )
    except (FileNotFoundError, ValueError, ManifestError) as e:
        return _fail(str(e))
    _report(path, n, skipped)
    from audiossl.cli.status import produced_or_fail

    return produced_or_fail(f"tokenizer label {args.kind}", n - sum(skipped.values()), n, "manifest rows")
