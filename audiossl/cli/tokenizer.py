"""Train acoustic tokenizers and label a corpus with them.

    audiossl tokenizer train beats ...      self-distilled VQ tokenizer for the next BEATs iteration
    audiossl tokenizer train rvq ...        RVQ-VAE acoustic codes for MERT (no pretrained codec needed)
    audiossl tokenizer label <kind> ...     write frame codes (+ .json sidecar) for a manifest

Label kinds: ``random-projection`` (BEATs iteration 1), ``beats`` (a trained BEATs tokenizer),
``rvq`` (a trained RVQ-VAE), ``encodec`` (an EnCodec model from a local directory). Each writes
``<split>.<ext>`` + ``.json`` with the frame rate and codes per frame, which `audiossl pretrain`
checks against the model before step 1. Run ``audiossl tokenizer <train|label> <kind> --help``.
"""

from __future__ import annotations

import argparse
import importlib

HELP = "train acoustic tokenizers (BEATs VQ, MERT RVQ) and label a corpus with them"

# action → kind → (module, help). Each module defines add_<action>_arguments(p, kind) and run_<action>(args).
KINDS: dict[str, dict[str, tuple[str, str]]] = {
    "train": {
        "beats": ("audiossl.cli.tokenizer_beats", "self-distilled VQ tokenizer from a BEATs teacher (iteration n → n+1)"),
        "rvq": ("audiossl.cli.tokenizer_rvq", "RVQ-VAE on your audio: 8 residual codebooks at the student's frame rate"),
    },
    "label": {
        "random-projection": ("audiossl.cli.tokenizer_beats", "BEST-RQ style frozen random-projection codes of fbank patches"),
        "beats": ("audiossl.cli.tokenizer_beats", "codes from a trained BEATs tokenizer"),
        "rvq": ("audiossl.cli.tokenizer_rvq", "codes from a trained RVQ-VAE tokenizer"),
        "encodec": ("audiossl.cli.tokenizer_rvq", "codes from a transformers EncodecModel in a local directory"),
    },
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    actions = p.add_subparsers(dest="action", required=True, metavar="{train,label}")
    for action, kinds in KINDS.items():
        ap = actions.add_parser(action, help=f"{action} a tokenizer", formatter_class=p.formatter_class)
        sub = ap.add_subparsers(dest="kind", required=True, metavar="{" + ",".join(kinds) + "}")
        for kind, (module_name, help_) in kinds.items():
            kp = sub.add_parser(kind, help=help_, description=help_, formatter_class=p.formatter_class)
            getattr(importlib.import_module(module_name), f"add_{action}_arguments")(kp, kind)


def run(args: argparse.Namespace) -> int | None:
    module = importlib.import_module(KINDS[args.action][args.kind][0])
    return getattr(module, f"run_{args.action}")(args)
