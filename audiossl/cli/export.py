"""Export an audiossl checkpoint to the format its reference implementation reads.

* HuBERT: ``--to hf`` (a directory that ``transformers.HubertModel.from_pretrained(OUT)`` loads) or
  ``--to fairseq`` (a .pt file that s3prl's ``hubert_local`` upstream loads; see
  audiossl.models.hubert.fairseq for what fairseq itself needs).
* WavLM: ``--to hf`` (``transformers.WavLMModel.from_pretrained(OUT)``) or ``--to fairseq`` (a .pt file in
  the layout of microsoft/unilm's released ``WavLM-*.pt``).
* BEATs: ``--to beats`` (a .pt file in the layout of microsoft/unilm's released BEATs checkpoints;
  for a BEATs tokenizer checkpoint, the layout of its released tokenizers, ``beats/Tokenizers.py``).
* MERT: ``--to mert`` (a directory in the layout of the released HF-format MERT checkpoints).
* data2vec 2.0: ``--to hf`` (the student encoder as a ``transformers.Data2VecAudioModel`` directory;
  only for models trained with ``use_alibi=false``, HF has no ALiBi).
"""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "export a checkpoint to HF transformers or fairseq format"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("ckpt", type=Path, help="audiossl checkpoint directory (model.safetensors + config.json)")
    p.add_argument("--to", required=True, choices=["hf", "fairseq", "beats", "mert"], help="target format (hf: HuBERT, WavLM or data2vec2; fairseq: HuBERT or WavLM; beats: BEATs or a BEATs tokenizer; mert: MERT)")
    p.add_argument("out", type=Path, help="output directory (hf) or .pt file (fairseq)")
    p.add_argument("--normalize", action="store_true",
                   help="mark the model as expecting per-utterance normalised waveforms; when not given, "
                        "the checkpoint's extra.normalize decides")


def run(args: argparse.Namespace) -> int:
    import json

    from audiossl.models.checkpoint import CheckpointError, load_model

    try:
        meta = json.loads((args.ckpt / "config.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError) as e:
        print(f"audiossl export: {args.ckpt}: {e}")
        return 2
    family = meta.get("family", "hubert")
    if args.to == "beats" and family == "beats_tokenizer":  # a released-layout tokenizer .pt (microsoft/unilm Tokenizers)
        from audiossl.tokenizers.beats.checkpoint import export_beats_tokenizer

        print(f"export: wrote {export_beats_tokenizer(args.ckpt, args.out)}")
        return 0
    if args.to == "hf" and family == "data2vec2":
        from audiossl.models.data2vec2.family import load_encoder
        from audiossl.models.data2vec2.hf import export_hf as export_d2v2

        try:
            print(f"export: wrote {export_d2v2(load_encoder(args.ckpt), args.out)}")
        except (CheckpointError, ValueError) as e:
            print(f"audiossl export: {args.ckpt}: {e}")
            return 2
        return 0
    wanted = {"hf": ("hubert", "wavlm"), "fairseq": ("hubert", "wavlm"), "beats": ("beats",), "mert": ("mert",)}[args.to]
    if family not in wanted:
        print(f"audiossl export: {args.ckpt} holds a {family!r} model; --to {args.to} exports {' / '.join(map(repr, wanted))} models")
        return 2
    if family == "wavlm":
        return _export_wavlm(args, meta)
    if args.to == "beats":
        from audiossl.models.beats.checkpoint import export_beats

        print(f"export: wrote {export_beats(args.ckpt, args.out)}")
        return 0
    if args.to == "mert":
        from audiossl.models.mert.hf import export_mert

        print(f"export: wrote {export_mert(args.ckpt, args.out)}")
        return 0
    try:
        model = load_model(args.ckpt, pretrain=bool(meta.get("has_pretrain_head", True)))
    except (CheckpointError, FileNotFoundError, json.JSONDecodeError) as e:
        print(f"audiossl export: {args.ckpt}: {e}")
        return 2
    normalize = args.normalize or bool((meta.get("extra") or {}).get("normalize", False))
    if args.to == "hf":
        from audiossl.models.hubert.hf import export_hf

        out = export_hf(model, args.out, normalize=normalize)
    else:
        from audiossl.models.hubert.fairseq import export_fairseq

        out = export_fairseq(model, args.out, normalize=normalize)
    print(f"export: wrote {out}")
    return 0


def _export_wavlm(args: argparse.Namespace, meta: dict) -> int:
    from audiossl.models.checkpoint import CheckpointError
    from audiossl.models.wavlm.family import load_encoder

    try:
        encoder = load_encoder(args.ckpt)
    except (CheckpointError, FileNotFoundError) as e:
        print(f"audiossl export: {args.ckpt}: {e}")
        return 2
    normalize = args.normalize or bool((meta.get("extra") or {}).get("normalize", False))
    if args.to == "hf":
        from audiossl.models.wavlm.hf import export_hf

        out = export_hf(encoder, args.out, normalize=normalize)
    else:
        from audiossl.models.wavlm.fairseq import export_fairseq

        out = export_fairseq(encoder, args.out, normalize=normalize)
    print(f"export: wrote {out}")
    return 0
