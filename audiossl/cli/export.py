"""Export an audiossl HuBERT checkpoint to transformers (a directory that
`transformers.HubertModel.from_pretrained(OUT)` loads) or to a fairseq-layout .pt file that s3prl's
`hubert_local` upstream loads (see audiossl.interop.fairseq_ckpt for what fairseq itself needs)."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "export a checkpoint to HF transformers or fairseq format"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("ckpt", type=Path, help="audiossl checkpoint directory (model.safetensors + config.json)")
    p.add_argument("--to", required=True, choices=["hf", "fairseq"], help="target format")
    p.add_argument("out", type=Path, help="output directory (hf) or .pt file (fairseq)")
    p.add_argument("--normalize", action="store_true",
                   help="mark the model as expecting per-utterance normalised waveforms; when not given, "
                        "the checkpoint's extra.normalize decides")


def run(args: argparse.Namespace) -> int:
    import json

    from audiossl.models.checkpoint import CheckpointError, load_model

    try:
        meta = json.loads((args.ckpt / "config.json").read_text())
        model = load_model(args.ckpt, pretrain=bool(meta.get("has_pretrain_head", True)))
    except (CheckpointError, FileNotFoundError, json.JSONDecodeError) as e:
        print(f"audiossl export: {args.ckpt}: {e}")
        return 2
    normalize = args.normalize or bool((meta.get("extra") or {}).get("normalize", False))
    if args.to == "hf":
        from audiossl.interop.hf import export_hf

        out = export_hf(model, args.out, normalize=normalize)
    else:
        from audiossl.interop.fairseq_ckpt import export_fairseq

        out = export_fairseq(model, args.out, normalize=normalize)
    print(f"export: wrote {out}")
    return 0
