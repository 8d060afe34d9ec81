"""Released BEATs checkpoints (microsoft/unilm ``beats/BEATs.py``) ↔ our :class:`~audiossl.models.beats.model.BeatsModel`.

A released file is ``torch.save({"cfg": {BEATsConfig fields}, "model": state_dict})``. It is read
with ``torch.load(weights_only=True)``: a pickle that would build anything but tensors and plain
containers is refused, so an untrusted file cannot run code.

Key names are the same on both sides except:

* the positional conv: unilm's ``nn.utils.weight_norm`` inside ``nn.Sequential`` stores
  ``encoder.pos_conv.0.{weight_g, weight_v, bias}``; ours (weight-norm parametrization) stores
  ``encoder.pos_conv.conv.{parametrizations.weight.original0, .original1, bias}``;
* the relative position table: unilm ties every layer's ``self_attn.relative_attention_bias`` to
  layer 0's, and its ``state_dict`` repeats it under every layer; we keep it once (layer 0). On
  load we take the last copy (what ``load_state_dict`` leaves in the tied table); on export we
  write it under every layer so unilm's strict ``load_state_dict`` accepts the file;
* fine-tuned checkpoints carry an AudioSet head ``predictor.*`` (``finetuned_model=True``), which
  the upstream does not use: it is dropped on load (and logged).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import torch
from torch import Tensor

from audiossl.models.beats.family import load_pretrain_checkpoint
from audiossl.models.beats.model import BeatsConfig, BeatsModel
from audiossl.models.checkpoint import CheckpointError, load_state_into
from audiossl.models.torch_file import read_cfg_model
from audiossl.utils.fileio import atomic_open

log = logging.getLogger(__name__)

_POS_CONV = {
    "encoder.pos_conv.0.weight_g": "encoder.pos_conv.conv.parametrizations.weight.original0",
    "encoder.pos_conv.0.weight_v": "encoder.pos_conv.conv.parametrizations.weight.original1",
    "encoder.pos_conv.0.bias": "encoder.pos_conv.conv.bias",
}
_REL_BIAS = re.compile(r"^encoder\.layers\.(\d+)\.self_attn\.relative_attention_bias\.weight$")
# BEATsConfig fields that BeatsConfig mirrors under the same name (the released cfg's keys).
CFG_FIELDS = (
    "input_patch_size", "embed_dim", "conv_bias", "encoder_layers", "encoder_embed_dim", "encoder_ffn_embed_dim",
    "encoder_attention_heads", "activation_fn", "layer_wise_gradient_decay_ratio", "layer_norm_first", "deep_norm",
    "dropout", "attention_dropout", "activation_dropout", "encoder_layerdrop", "dropout_input", "conv_pos",
    "conv_pos_groups", "relative_position_embedding", "num_buckets", "max_distance", "gru_rel_pos",
)
_IGNORED_CFG = {"finetuned_model", "predictor_dropout", "predictor_class"}


class BeatsCheckpointError(ValueError):
    """A BEATs file that is unsafe, unreadable, or does not fit its config."""


def read_beats_checkpoint(path: str | Path) -> tuple[dict, dict[str, Tensor]]:
    """``(cfg, state_dict)`` of a released BEATs ``.pt``, never running code from the file."""
    return read_cfg_model(path, BeatsCheckpointError, "BEATs checkpoint", advice=(
        "Released BEATs files hold only {'cfg': dict, 'model': state_dict}; if you trust this file, "
        "re-save those two entries as plain dicts/tensors."))


def config_from_beats(cfg: dict, source: str | Path = "cfg") -> BeatsConfig:
    """A released ``BEATsConfig`` dict → :class:`BeatsConfig` (pretraining fields keep their defaults)."""
    unknown = sorted(set(cfg) - set(CFG_FIELDS) - _IGNORED_CFG)
    if unknown:
        log.warning("%s: ignoring BEATs config keys this loader does not know: %s", source, unknown)
    try:
        return BeatsConfig(**{k: cfg[k] for k in CFG_FIELDS if k in cfg})
    except (TypeError, ValueError) as e:
        raise BeatsCheckpointError(f"{source}: config cannot be built: {e}") from None


def beats_to_state_dict(state: dict[str, Tensor], source: str | Path = "state") -> dict[str, Tensor]:
    """unilm key names → :class:`BeatsModel` key names (see module docstring)."""
    out, rel = {}, []
    for k, v in state.items():
        if k.startswith("predictor.") or k.startswith("predictor_dropout"):
            continue
        m = _REL_BIAS.match(k)
        if m:
            rel.append((int(m.group(1)), v))
            continue
        out[_POS_CONV.get(k, k)] = v
    if rel:
        out["encoder.layers.0.self_attn.relative_attention_bias.weight"] = max(rel, key=lambda p: p[0])[1]
    if any(k.startswith("predictor.") for k in state):
        log.info("%s: dropped the fine-tuned classification head (predictor.*); the upstream uses the encoder only", source)
    return out


def state_dict_to_beats(state: dict[str, Tensor], cfg: BeatsConfig) -> dict[str, Tensor]:
    """:class:`BeatsModel` key names → unilm key names (relative table repeated under every layer)."""
    back = {v: k for k, v in _POS_CONV.items()}
    out = {}
    for k, v in state.items():
        m = _REL_BIAS.match(k)
        if m:
            for i in range(cfg.encoder_layers):
                out[f"encoder.layers.{i}.self_attn.relative_attention_bias.weight"] = v
            continue
        out[back.get(k, k)] = v
    return out


def load_beats_model(path: str | Path) -> BeatsModel:
    """A released BEATs ``.pt`` → our :class:`BeatsModel` (eval mode, fp32, CPU)."""
    cfg_dict, state = read_beats_checkpoint(path)
    cfg = config_from_beats(cfg_dict, path)
    with torch.device("meta"):
        model = BeatsModel(cfg)
    try:
        load_state_into(model, beats_to_state_dict(state, path), path, "its BEATs config")
    except CheckpointError as e:
        raise BeatsCheckpointError(str(e)) from None
    return model.eval()



def beats_checkpoint_dict(model: BeatsModel) -> dict:
    """``{"cfg": ..., "model": ...}`` in the released layout for ``model`` (our encoder)."""
    cfg = model.cfg
    d = cfg.to_dict()
    cfg_out = {k: d[k] for k in CFG_FIELDS}
    cfg_out["finetuned_model"] = False
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    return {"cfg": cfg_out, "model": state_dict_to_beats(state, cfg)}


def export_beats(ckpt_dir: str | Path, out_pt: str | Path) -> Path:
    """Our BEATs checkpoint directory → a ``.pt`` that unilm's ``BEATs(BEATsConfig(cfg))`` loads strictly."""
    model = load_pretrain_checkpoint(ckpt_dir).encoder
    out_pt = Path(out_pt)
    out_pt.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(out_pt, "wb") as f:
        torch.save(beats_checkpoint_dict(model), f)
    return out_pt
