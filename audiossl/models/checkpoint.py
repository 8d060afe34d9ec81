"""Model checkpoints: a directory with ``model.safetensors`` + ``config.json``.

``config.json``::

    {"family": "hubert", "format_version": 1, "config": {<HubertConfig fields>},
     "frame_rate": 50.0, "has_pretrain_head": true, "extra": {...}}

HuBERT weights are always stored with the keys of :class:`HubertPretrainModel` (``encoder.*``, plus
``final_proj.*`` / ``label_embs`` when saved from the pretraining model). Other families (BEATs,
MERT) store their pretraining model's ``state_dict()`` under their ``family`` name and read it back
with :func:`load_family_checkpoint`. Loading reads safetensors
only, so an untrusted checkpoint can never run code. Each file is written atomically; the weights
go first and ``config.json`` last, so a directory with a config always has complete weights. Other
files in the directory (tokenizer, trainer state) are left alone.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save
from torch import Tensor

from audiossl.models.hubert.model import HubertConfig, HubertModel, HubertPretrainModel
from audiossl.utils.fileio import atomic_open, atomic_write_json

FORMAT_VERSION = 1
WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"


class CheckpointError(ValueError):
    """A checkpoint directory is missing, incomplete or does not fit the model."""


def save_checkpoint(model: torch.nn.Module, out_dir: str | os.PathLike, *, extra: dict[str, Any] | None = None) -> Path:
    """Write ``model`` (and JSON-serialisable ``extra``, e.g. step or tokenizer info) to ``out_dir``.

    ``model``: :class:`HubertPretrainModel` / :class:`HubertModel`, or any module with a ``family``
    class attribute, a ``cfg`` with ``to_dict()`` and a ``frame_rate`` (saved as its full state).
    """

    out_dir = Path(out_dir)
    own_family = getattr(type(model), "family", None)
    if isinstance(own_family, str) and own_family != "hubert" and hasattr(model, "cfg"):
        # checked first: some families subclass HuBERT's modules (MERT's encoder is a HubertModel)
        state, has_head, family = model.state_dict(), bool(getattr(model, "has_pretrain_head", True)), own_family
    elif isinstance(model, HubertPretrainModel):
        state, has_head, family = model.state_dict(), True, "hubert"
    elif isinstance(model, HubertModel):
        state, has_head, family = {"encoder." + k: v for k, v in model.state_dict().items()}, False, "hubert"
    else:
        raise TypeError(f"expected an audiossl model (HuBERT, BEATs, MERT), got {type(model).__name__}")
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in state.items()}
    meta = {
        "family": family,
        "format_version": FORMAT_VERSION,
        "config": model.cfg.to_dict(),
        "frame_rate": model.frame_rate,
        "has_pretrain_head": has_head,
        "extra": extra or {},
    }
    json.dumps(meta)  # fail before touching the disk if extra is not serialisable
    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_open(out_dir / WEIGHTS_NAME, "wb") as f:
        f.write(save(tensors, metadata={"format": "pt", "family": family}))
    atomic_write_json(out_dir / CONFIG_NAME, meta)
    return out_dir


def read_meta(ckpt_dir: str | os.PathLike, family: str | None = "hubert", check_version: bool = True) -> dict[str, Any]:
    """The parsed ``config.json`` of a checkpoint, checked for ``family`` (None: any) and format version
    (``check_version`` False: left to the family's loader, for dispatching on ``family`` first)."""
    ckpt_dir = Path(ckpt_dir)
    path = ckpt_dir / CONFIG_NAME
    if not path.is_file():
        raise CheckpointError(
            f"{path} not found: {ckpt_dir} is not an audiossl checkpoint directory (expected "
            f"{CONFIG_NAME} + {WEIGHTS_NAME}, written by audiossl.models.checkpoint.save_checkpoint)"
        )
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path}: not valid JSON (line {e.lineno}, column {e.colno}): {e.msg}") from e
    if "model_type" in meta and "family" not in meta:
        raise CheckpointError(f"{ckpt_dir} looks like a transformers checkpoint; load it as 'hf:{ckpt_dir}'")
    if family is not None and meta.get("family") != family:
        raise CheckpointError(f"{path}: family is {meta.get('family')!r}, this loader reads {family!r} checkpoints")
    version = meta.get("format_version")
    if check_version and (not isinstance(version, int) or version > FORMAT_VERSION):
        raise CheckpointError(
            f"{path}: format_version {version!r} is not supported (this audiossl reads <= {FORMAT_VERSION}); "
            f"upgrade audiossl"
        )
    return meta


def _key_report(missing: list[str], unexpected: list[str]) -> str:
    def show(keys: list[str]) -> str:
        return ", ".join(keys[:20]) + (f", ... ({len(keys)} in all)" if len(keys) > 20 else "") or "none"

    return f"missing keys: {show(missing)}; unexpected keys: {show(unexpected)}"


def read_weights(ckpt_dir: str | os.PathLike, map_location: str | torch.device = "cpu") -> tuple[Path, dict[str, Tensor]]:
    """``(path, state)`` of ``ckpt_dir/model.safetensors`` (never unpickles anything)."""

    weights = Path(ckpt_dir) / WEIGHTS_NAME
    if not weights.is_file():
        raise CheckpointError(f"{weights} not found (the checkpoint has a config but no weights)")
    try:
        return weights, load_file(str(weights), device=str(map_location))
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"{weights}: cannot read safetensors file: {e}") from e


def load_state_into(
    model: torch.nn.Module, state: dict[str, Tensor], source: str | os.PathLike, what: str = "the config",
    hint: Callable[[list[str]], str] | None = None,
) -> torch.nn.Module:
    """``model.load_state_dict(state, assign=True)`` after checking keys and shapes.

    ``model`` may live on the meta device (no random init). Raises :class:`CheckpointError`
    listing missing / unexpected keys and mismatched shapes, naming ``source``; ``hint(missing)``
    is appended to the key report.
    """
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        extra = hint(missing) if hint else ""
        raise CheckpointError(f"{source} does not match {what}: {_key_report(missing, unexpected)}{extra}")
    bad_shapes = [
        f"{k}: checkpoint {list(state[k].shape)} vs model {list(v.shape)}" for k, v in expected.items() if state[k].shape != v.shape
    ]
    if bad_shapes:
        raise CheckpointError(f"{source}: tensor shapes do not match {what}: " + "; ".join(bad_shapes[:10]))
    model.load_state_dict(state, strict=True, assign=True)
    return model


def load_family_checkpoint(
    ckpt_dir: str | os.PathLike,
    family: str,
    config_cls: type,
    build: Callable[[Any], torch.nn.Module],
    *,
    what: str,
    map_location: str | torch.device = "cpu",
    strip_prefix: str | None = None,
    hint: Callable[[list[str]], str] | None = None,
) -> torch.nn.Module:
    """The one loader of our checkpoints, for every family: :func:`read_meta` (checked for ``family``) →
    ``config_cls.from_dict`` → :func:`read_weights` → ``build(cfg)`` on the meta device (no random
    init: every tensor comes from the file) → :func:`load_state_into`.

    ``strip_prefix``: keep only the weights under it, without it (``"encoder."``: the encoder of a
    pretraining checkpoint). Raises :class:`CheckpointError` (bad ``config`` section, missing files,
    keys or shapes that do not fit; ``what`` names the config in the message).
    """
    cfg = load_config_section(ckpt_dir, family, config_cls)
    path, state = read_weights(ckpt_dir, map_location)
    with torch.device("meta"):
        model = build(cfg)
    if strip_prefix:
        state = {k[len(strip_prefix):]: v for k, v in state.items() if k.startswith(strip_prefix)}
    return load_state_into(model, state, path, what, hint)


def load_config_section(ckpt_dir: str | os.PathLike, family: str, config_cls: type):
    """``config_cls.from_dict`` of the ``config`` section of a ``family`` checkpoint's ``config.json``."""
    meta = read_meta(ckpt_dir, family=family)
    try:
        return config_cls.from_dict(meta["config"])
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{Path(ckpt_dir) / CONFIG_NAME}: bad 'config' section: {e}") from e


def load_config(ckpt_dir: str | os.PathLike) -> HubertConfig:
    """The :class:`HubertConfig` stored in a HuBERT checkpoint."""
    return load_config_section(ckpt_dir, "hubert", HubertConfig)


def load_model(
    ckpt_dir: str | os.PathLike, *, pretrain: bool = False, map_location: str | torch.device = "cpu"
) -> HubertModel | HubertPretrainModel:
    """Build the HuBERT model stored in ``ckpt_dir`` (the encoder, or the pretraining model when ``pretrain``).

    Raises:
        CheckpointError: missing files, or weights that do not match the config (lists the keys).
    """

    def hint(missing: list[str]) -> str:
        if pretrain and any(k in ("label_embs", "final_proj.weight") for k in missing):
            return " (this checkpoint holds the encoder only; load it with pretrain=False)"
        return ""

    return load_family_checkpoint(
        ckpt_dir, "hubert", HubertConfig, HubertPretrainModel if pretrain else HubertModel,
        what=f"the HuBERT config in {CONFIG_NAME}", map_location=map_location,
        strip_prefix=None if pretrain else "encoder.", hint=hint,
    )
