"""Pretraining run → audiossl checkpoint directory (``model.safetensors`` + ``config.json``),
with the label sidecar copied in as ``tokenizer.json`` so the checkpoint names the units it learnt.

:func:`export_model` is called at the end of training; :func:`export_from_run` exports the
``last`` or ``best`` (lowest validation loss) fairseq2 checkpoint of a run directory later.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from audiossl.data.frame_labels import sidecar
from audiossl.models.checkpoint import save_checkpoint
from audiossl.models.families import get_family
from audiossl.utils.fileio import atomic_write_text

TOKENIZER_NAME = "tokenizer.json"


class ExportError(ValueError):
    """A run directory or checkpoint that cannot be exported; the message names the path."""


def export_model(model, model_cfg, out_dir: str | os.PathLike, label_path: str | os.PathLike | None, *, step_nr: int, state: dict | None = None) -> Path:
    """Save ``model`` (or ``state`` loaded into a fresh model of ``model_cfg``) plus the label sidecar."""
    if state is not None:
        model = family_of(model_cfg).build_pretrain_model(model_cfg)
        model.load_state_dict(state, strict=True)
    extra: dict = {"step": step_nr}
    tokenizer_text = None
    if label_path is not None:
        side = sidecar(label_path)
        if side.is_file():
            tokenizer_text = side.read_text(encoding="utf-8")
            meta = json.loads(tokenizer_text)
            extra.update(labels=Path(label_path).name, tokenizer=TOKENIZER_NAME, label_rate=meta.get("frame_rate"), num_classes=meta.get("num_classes"))
    out_dir = Path(out_dir)
    if tokenizer_text is not None:
        # Tokenizer first: save_checkpoint writes config.json last, so a complete config means a complete dir.
        atomic_write_text(out_dir / TOKENIZER_NAME, tokenizer_text)
    return save_checkpoint(model, out_dir, extra=extra)


def family_of(model_cfg):
    """The family module of ``model_cfg`` (its class attribute ``family``; HuBERT when absent)."""
    return get_family(getattr(model_cfg, "family", "hubert"))


def _model_state_file(run_dir: Path, step_nr: int) -> Path:
    model_dir = run_dir / "checkpoints" / f"step_{step_nr}" / "model" / "pp_00" / "tp_00"
    shards = sorted(model_dir.glob("sdp_*.pt"))
    if not shards:
        raise ExportError(f"{model_dir}: no model state in checkpoint step {step_nr}")
    if len(shards) > 1:
        raise ExportError(
            f"{model_dir}: {len(shards)} FSDP shards; sharded checkpoints are not merged here. The final model of an "
            f"FSDP run is exported at the end of training (OUT/checkpoint)."
        )
    return shards[0]


def export_from_run(run_dir: str | os.PathLike, which: str | int = "last", out_dir: str | os.PathLike | None = None) -> Path:
    """Export checkpoint ``which`` (``last``, ``best`` or a step number) of ``run_dir``.

    ``best`` needs validation scores (``--valid-split``); ``out_dir`` defaults to
    ``run_dir/export_step_<N>``.
    """
    from fairseq2.checkpoint import StandardCheckpointManager  # lazy: fairseq2's checkpoint/gang stack; only exporting a training checkpoint needs it
    from fairseq2.device import CPU  # lazy: fairseq2's checkpoint/gang stack; only exporting a training checkpoint needs it
    from fairseq2.file_system import LocalFileSystem  # lazy: fairseq2's checkpoint/gang stack; only exporting a training checkpoint needs it
    from fairseq2.gang import create_fake_gangs  # lazy: fairseq2's checkpoint/gang stack; only exporting a training checkpoint needs it
    from fairseq2.io import _TorchTensorFileDumper, _TorchTensorFileLoader  # lazy: fairseq2's checkpoint/gang stack; only exporting a training checkpoint needs it
    from fairseq2.utils.threading import _StandardThreadPool  # lazy: fairseq2's checkpoint/gang stack; only exporting a training checkpoint needs it

    run_dir = Path(run_dir)
    cfg_path = run_dir / "run_config.json"
    if not cfg_path.is_file():
        raise ExportError(f"{cfg_path} not found: {run_dir} is not an `audiossl pretrain` run directory")
    record = json.loads(cfg_path.read_text(encoding="utf-8"))
    family = get_family(record.get("run", {}).get("model", {}).get("family", "hubert"))
    model_cfg = family.config_from_dict(record["model"])
    fs = LocalFileSystem()
    mgr = StandardCheckpointManager(run_dir, create_fake_gangs(CPU), fs, _TorchTensorFileLoader(fs), _TorchTensorFileDumper(fs), _StandardThreadPool(1))
    steps = mgr.get_step_numbers()
    if not steps:
        raise ExportError(f"{run_dir / 'checkpoints'}: no checkpoints yet")
    if which == "last":
        step_nr = steps[-1]
    elif which == "best":
        scores = mgr.load_scores()
        if not scores:
            raise ExportError(f"{run_dir}: no validation scores (train with --valid-split to rank checkpoints); use 'last'")
        step_nr = scores[0][1]
    else:
        step_nr = int(which)
        if step_nr not in steps:
            raise ExportError(f"{run_dir}: no checkpoint at step {step_nr}; available: {steps}")
    state = torch.load(_model_state_file(run_dir, step_nr), map_location="cpu", weights_only=True)
    label_path = record.get("label_path")
    out = Path(out_dir) if out_dir is not None else run_dir / f"export_step_{step_nr}"
    return export_model(None, model_cfg, out, label_path, step_nr=step_nr, state=state)
