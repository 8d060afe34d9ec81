"""`audiossl tokenizer train rvq` and `audiossl tokenizer label {rvq,encodec}`: MERT's acoustic teacher.

    audiossl tokenizer train rvq --config recipes/mert/rvq_tiny.yaml --manifest-dir data/demo/music/notes \\
        --train-split train --valid-split valid --out runs/rvq_tiny
    audiossl tokenizer label rvq runs/rvq_tiny/checkpoint data/demo/music/notes/train.tsv
    audiossl tokenizer label encodec models/encodec_24khz data/music/train.tsv

Training runs the shared fairseq2 trainer on audio alone (``--labels none``): rerunning resumes.
Labelling resamples to the tokenizer's rate, writes ``<split>.<ext>`` (``[frames, 8]`` codes per
row) + ``.json`` sidecar, reports unreadable files with path and reason (their rows stay empty
and the trainer skips them), and checks the codes against the student (frame rate, codebooks,
classes, frames per utterance) before it returns.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

log = logging.getLogger(__name__)


def add_train_arguments(p: argparse.ArgumentParser, kind: str) -> None:
    p.add_argument("--config", type=Path, default=None, help="recipe YAML (recipes/mert/rvq_tiny.yaml | rvq_base.yaml); None = the base model with default run settings")
    p.add_argument("--manifest-dir", type=Path, required=True, help="directory with <split>.tsv")
    p.add_argument("--train-split", default="train", help="training split name")
    p.add_argument("--valid-split", default=None, help="validation split (reconstruction loss, best checkpoint)")
    p.add_argument("--out", type=Path, required=True, help="run directory (checkpoints, metrics, final checkpoint/)")
    p.add_argument("--max-steps", type=int, default=None, help="override the recipe's max_steps")
    p.add_argument("--peak-tflops", type=float, default=None, help="peak dense TFLOP/s per device for MFU (default: from the GPU name; n/a on CPU)")
    p.add_argument("overrides", nargs="*", help="key=value config overrides (dotted keys, e.g. model.codebook_size=512 optim.lr=3e-4)")


def run_train(args: argparse.Namespace) -> int:
    from audiossl.cli.pretrain import config_overrides, train
    from audiossl.pretrain.config import ConfigError, load_config

    def prepare():
        defaults = [] if args.config else ["model.family=rvq", "model.size=base"]
        cfg = load_config(args.config, defaults + config_overrides(args))
        if cfg.model.family != "rvq":
            raise ConfigError(f"{args.config}: model.family is {cfg.model.family!r}; use an RVQ recipe (recipes/mert/rvq_*.yaml)")
        from audiossl.pretrain.trainer import RunPaths

        return cfg, RunPaths(args.manifest_dir, args.train_split, None, args.out, args.valid_split)

    rc, result = train("tokenizer train rvq", prepare)
    if rc == 0 and result.checkpoint_dir is not None:
        usage = result.last_metrics.get("codebook_usage")
        print(f"final model: {result.checkpoint_dir} (step {result.step_nr}; codebook usage "
              f"{'n/a' if usage is None else f'{100 * float(usage):.1f}%'}); skipped {result.num_skipped} unreadable utterance(s)")
    return rc


def add_label_arguments(p: argparse.ArgumentParser, kind: str) -> None:
    if kind == "rvq":
        p.add_argument("checkpoint", type=Path, help="trained RVQ-VAE checkpoint dir (RUN/checkpoint of `tokenizer train rvq`)")
    else:
        p.add_argument("model_dir", type=Path, help="local transformers EncodecModel directory (config.json + model.safetensors); the hub is never contacted")
        p.add_argument("--bandwidth", type=float, default=6.0, help="EnCodec bandwidth in kbps (24 kHz: 6.0 → 8 codebooks)")
    p.add_argument("manifest", type=Path, help="manifest <split>.tsv to label")
    p.add_argument("--ext", default=kind, help="label extension: writes <split>.<ext> (+ .json) beside the manifest")
    p.add_argument("--out", type=Path, default=None, help="label file to write (default: <manifest dir>/<split>.<ext>)")
    p.add_argument("--batch-size", type=int, default=8, help="audio pieces per forward")
    p.add_argument("--chunk-seconds", type=float, default=30.0, help="longer files are tokenized in pieces of this length (memory bound)")
    p.add_argument("--device", default="cpu", help="torch device (cpu, cuda, cuda:1)")
    p.add_argument("--student-frame-rate", type=float, default=75.0, help="the student's frame rate in Hz; codes at another rate are refused")
    p.add_argument("--student-codebooks", type=int, default=8, help="the student's heads (codes per frame)")
    p.add_argument("--student-classes", type=int, default=1024, help="the student's classes per head")


def run_label(args: argparse.Namespace) -> int:
    from audiossl.data.frame_labels import LabelError, LabelInfo
    from audiossl.data.manifest import ManifestError, read_manifest
    from audiossl.tokenizers.code_streams import StudentSpec, check_info
    from audiossl.tokenizers.labelling import label_codes

    prog = f"audiossl tokenizer label {args.kind}"
    try:
        manifest = read_manifest(args.manifest)
        coder = _load_coder(args)
    except (ManifestError, ValueError, OSError) as e:
        print(f"{prog}: {e}")
        return 2
    sr, hop = coder.sample_rate, coder.hop
    out = args.out or args.manifest.with_suffix(f".{args.ext}")
    info = LabelInfo(sr / hop, coder.codebook_size, coder.tokenizer_info, coder.num_codebooks)
    student = StudentSpec(args.student_frame_rate, args.student_codebooks, args.student_classes, sample_rate=sr)
    try:
        check_info(out, info, student)  # refuse before spending the compute
    except LabelError as e:
        print(f"{prog}: refusing to label:\n{e}")
        return 2
    try:
        problems = label_codes(manifest, coder, out, info, student, batch_size=args.batch_size,
                               chunk_seconds=args.chunk_seconds, desc=f"{args.kind} codes")
    except LabelError as e:
        print(f"{prog}: {e}")
        return 2
    print(f"wrote {out} (+ .json): {len(manifest) - len(problems)} utterances, [frames, {coder.num_codebooks}] codes at "
          f"{sr / hop:g} Hz, {coder.codebook_size} classes; checked against a {args.student_frame_rate:g} Hz student")
    if problems:
        print(f"skipped {len(problems)} unreadable file(s) (their rows are empty; the trainer skips them):")
        for e in problems:
            print(f"  {e.path}: {e.reason}" + (f" ({e.detail})" if e.detail else ""))
    else:
        print("skipped 0 files")
    from audiossl.cli.status import produced_or_fail

    return produced_or_fail(prog.removeprefix("audiossl "), len(manifest) - len(problems), len(manifest), "manifest rows")


def _load_coder(args: argparse.Namespace):
    from audiossl.tokenizers.coders import EncodecCoder, RVQCoder

    if args.kind == "rvq":
        return RVQCoder(args.checkpoint, args.device)
    return EncodecCoder(args.model_dir, args.bandwidth, args.device)
