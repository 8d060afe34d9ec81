"""Released BEATs tokenizer checkpoints (microsoft/unilm ``beats/Tokenizers.py``) ↔ our :class:`BeatsTokenizer`.

A released tokenizer (``Tokenizer_iter*.pt``) is ``torch.save({"cfg": {TokenizersConfig fields},
"model": state_dict})``, read here with ``torch.load(weights_only=True)`` (no code from the file
runs). It loads as the ``beats_tokenizer:<file>`` upstream spec and labels audio with
``audiossl tokenizer label beats beats_tokenizer:<file> MANIFEST``; ``audiossl export CKPT --to
beats OUT.pt`` writes a trained tokenizer of ours (``encoder_type: beats``) in the same layout.

Key names (ours = unilm's under ``encoder.``, except):

* the positional conv: unilm's weight-normed ``encoder.pos_conv.0.{weight_g, weight_v, bias}`` ↔
  our ``encoder.pos_conv.conv.{parametrizations.weight.original0, .original1, bias}``;
* a relative position table (``relative_position_embedding``) is tied across unilm's layers and
  repeated under each in its state dict; we keep layer 0's (written under every layer on export);
* the quantizer (``NormEMAVectorQuantizer``): ``quantize.embedding.weight`` ↔ ``quantizer.codebook``,
  ``quantize.cluster_size`` (EMA of code counts) ↔ ``quantizer.ema_count``,
  ``quantize.embedding.embed_avg`` ↔ ``quantizer.ema_sum``, ``quantize.embedding.initted`` ``[1]``
  float ↔ ``quantizer.initialised`` (bool). ``quantize.embedding.cluster_size`` (the k-means
  initialisation's cluster sizes; unilm never reads it again) is read and dropped; export writes
  ``ema_count`` there.

unilm releases no estimator: a loaded tokenizer labels audio (and can be trained further from a
freshly initialised estimator); export drops ours.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import torch
from torch import Tensor

from audiossl.models.checkpoint import CheckpointError, load_state_into
from audiossl.models.torch_file import read_cfg_model
from audiossl.tokenizers.beats.model import BeatsTokenizer, BeatsTokenizerConfig
from audiossl.tokenizers.beats.family import BeatsTokenizerUpstream, load_pretrain_checkpoint
from audiossl.utils.fileio import atomic_open

log = logging.getLogger(__name__)

CFG_FIELDS = {
    "input_patch_size": "patch", "embed_dim": "patch_embed_dim", "conv_bias": "conv_bias", "encoder_layers": "num_layers",
    "encoder_embed_dim": "embed_dim", "encoder_ffn_embed_dim": "ffn_dim", "encoder_attention_heads": "num_heads",
    "layer_norm_first": "layer_norm_first", "deep_norm": "deep_norm", "dropout": "dropout",
    "attention_dropout": "attention_dropout", "activation_dropout": "activation_dropout", "encoder_layerdrop": "encoder_layerdrop",
    "dropout_input": "dropout_input", "conv_pos": "pos_conv_kernel", "conv_pos_groups": "pos_conv_groups",
    "relative_position_embedding": "relative_position_embedding", "num_buckets": "num_buckets", "max_distance": "max_distance",
    "gru_rel_pos": "gru_rel_pos", "quant_n": "codebook_size", "quant_dim": "codebook_dim",
}
"""unilm ``TokenizersConfig`` field → :class:`BeatsTokenizerConfig` field."""

POS_CONV = {
    "encoder.pos_conv.0.weight_g": "encoder.pos_conv.conv.parametrizations.weight.original0",
    "encoder.pos_conv.0.weight_v": "encoder.pos_conv.conv.parametrizations.weight.original1",
    "encoder.pos_conv.0.bias": "encoder.pos_conv.conv.bias",
}
QUANTIZER = {
    "quantize.embedding.weight": "codebook",
    "quantize.cluster_size": "ema_count",
    "quantize.embedding.embed_avg": "ema_sum",
}
INITTED, INIT_SIZES = "quantize.embedding.initted", "quantize.embedding.cluster_size"
REL_BIAS = re.compile(r"^encoder\.layers\.(\d+)\.self_attn\.relative_attention_bias\.weight$")


class BeatsTokenizerCheckpointError(ValueError):
    """A tokenizer file that is unsafe, unreadable, or does not fit its config."""


def read_checkpoint(path: str | Path) -> tuple[dict, dict[str, Tensor]]:
    """``(cfg, state_dict)`` of a released tokenizer ``.pt``, never running code from the file."""
    return read_cfg_model(path, BeatsTokenizerCheckpointError, "BEATs tokenizer checkpoint",
                          advice="Released BEATs tokenizers hold only {'cfg': dict, 'model': state_dict}.")


def config_from_unilm(cfg: dict, source: str | Path = "cfg", **overrides) -> BeatsTokenizerConfig:
    """A ``TokenizersConfig`` dict → :class:`BeatsTokenizerConfig` (``encoder_type="beats"``, unilm codebook update)."""
    if cfg.get("activation_fn", "gelu") != "gelu":
        raise BeatsTokenizerCheckpointError(f"{source}: activation_fn {cfg['activation_fn']!r} is not supported (only 'gelu')")
    unknown = sorted(set(cfg) - set(CFG_FIELDS) - {"activation_fn"})
    if unknown:
        log.warning("%s: ignoring tokenizer config keys this loader does not know: %s", source, unknown)
    fields = {ours: cfg[theirs] for theirs, ours in CFG_FIELDS.items() if theirs in cfg}
    try:
        return BeatsTokenizerConfig(**{"encoder_type": "beats", "codebook_update": "unilm", "dead_code_threshold": 0.0,
                                       **fields, **overrides})
    except (TypeError, ValueError) as e:
        raise BeatsTokenizerCheckpointError(f"{source}: config cannot be built: {e}") from None


def config_to_unilm(cfg: BeatsTokenizerConfig) -> dict:
    """:class:`BeatsTokenizerConfig` → the ``cfg`` dict of a released tokenizer."""
    d = cfg.to_dict()
    return {theirs: d[ours] for theirs, ours in CFG_FIELDS.items()} | {"activation_fn": "gelu"}


def state_from_unilm(state: dict[str, Tensor]) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """unilm keys → ``(encoder state, quantizer state)`` in our key names (see module docstring)."""
    enc, quant, rel = {}, {}, []
    for k, v in state.items():
        if k.startswith("quantize."):
            if k in QUANTIZER:
                quant[QUANTIZER[k]] = v
            elif k == INITTED:
                quant["initialised"] = v.reshape(()).bool()
            elif k != INIT_SIZES:
                quant[k] = v  # reported as unexpected by the loader
            continue
        if m := REL_BIAS.match(k):
            rel.append((int(m.group(1)), v))
            continue
        enc[POS_CONV.get(k, k)] = v
    if rel:
        enc["encoder.layers.0.self_attn.relative_attention_bias.weight"] = min(rel, key=lambda p: p[0])[1]
    return enc, quant


def state_to_unilm(model: BeatsTokenizer) -> dict[str, Tensor]:
    """Our tokenizer's encoder + quantizer → unilm keys (estimator dropped)."""
    back = {v: k for k, v in POS_CONV.items()}
    out: dict[str, Tensor] = {}
    for k, v in model.encoder.state_dict().items():
        v = v.detach().cpu().contiguous()
        if REL_BIAS.match(k):
            for i in range(model.cfg.num_layers):
                out[f"encoder.layers.{i}.self_attn.relative_attention_bias.weight"] = v
        else:
            out[back.get(k, k)] = v
    q = {k: v.detach().cpu().float().contiguous() for k, v in model.quantizer.state_dict().items()}
    for theirs, ours in QUANTIZER.items():
        out[theirs] = q[ours]
    out[INIT_SIZES] = q["ema_count"].clone()
    out[INITTED] = q["initialised"].reshape(1).float()
    return out


def load_beats_tokenizer(path: str | Path, **overrides) -> BeatsTokenizer:
    """A released tokenizer ``.pt`` → :class:`BeatsTokenizer` (eval mode, fp32, CPU; fresh estimator).

    Every key of the file must be used and every encoder / quantizer key filled (else
    :class:`BeatsTokenizerCheckpointError` lists them). ``overrides`` set other config fields (e.g. ``teacher``).
    """
    cfg_dict, state = read_checkpoint(path)
    cfg = config_from_unilm(cfg_dict, path, **overrides)
    model = BeatsTokenizer(cfg)
    enc, quant = state_from_unilm(state)
    try:
        load_state_into(model.encoder, enc, path, "its BEATs tokenizer config (encoder)")
        load_state_into(model.quantizer, quant, path, "its BEATs tokenizer config (quantizer)")
    except CheckpointError as e:
        raise BeatsTokenizerCheckpointError(str(e)) from None
    return model.eval()


def load_beats_tokenizer_upstream(path: str | Path):
    """``beats_tokenizer:<file>`` upstream spec: a released tokenizer's encoder (every layer, 8 bands averaged, 6.25 Hz)."""
    return BeatsTokenizerUpstream(load_beats_tokenizer(path), name=f"beats_tokenizer:{path}")


def beats_tokenizer_checkpoint_dict(model: BeatsTokenizer) -> dict:
    """``{"cfg": ..., "model": ...}`` in the released layout (unilm's ``Tokenizers`` loads it strictly)."""
    if model.cfg.encoder_type != "beats":
        raise BeatsTokenizerCheckpointError(
            f"only encoder_type='beats' tokenizers have unilm's layout; this one is {model.cfg.encoder_type!r}")
    return {"cfg": config_to_unilm(model.cfg), "model": state_to_unilm(model)}


def export_beats_tokenizer(ckpt_dir: str | Path, out_pt: str | Path) -> Path:
    """Our tokenizer checkpoint directory → a ``.pt`` in the released tokenizer layout."""
    d = beats_tokenizer_checkpoint_dict(load_pretrain_checkpoint(ckpt_dir))
    out_pt = Path(out_pt)
    out_pt.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(out_pt, "wb") as f:
        torch.save(d, f)
    return out_pt
