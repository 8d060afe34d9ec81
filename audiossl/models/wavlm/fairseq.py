"""microsoft/unilm WavLM checkpoints (``WavLM-Base.pt``, ``WavLM-Base+.pt``, ``WavLM-Large.pt``): read onto our
:class:`~audiossl.models.wavlm.model.WavlmModel`, and write.

The file is ``{"cfg": {flat WavLMConfig fields}, "model": state_dict}`` (s3prl's converted layout and a
fairseq ``cfg.model`` are read too: :func:`audiossl.models.fairseq_io.read_fairseq_checkpoint`, restricted
unpickling, ``weights_only=True``). Our encoder keeps unilm's names inside ``encoder.layers.{i}``
(``self_attn.{q,k,v,out}_proj``, ``self_attn.grep_linear``, ``self_attn.grep_a``,
``self_attn.relative_attention_bias`` in layer 0, ``fc1``/``fc2``, the two layer norms), so only the
front end, projection and positional conv are renamed, with HuBERT's table
(:func:`audiossl.models.hubert.fairseq.key_map`).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch

from audiossl.models.checkpoint import CheckpointError, load_state_into
from audiossl.models.fairseq_io import FairseqCheckpointError, read_fairseq_checkpoint
from audiossl.models.hubert.fairseq import config_from_fairseq as hubert_config_from_fairseq, key_map as hubert_key_map
from audiossl.models.wavlm.model import WavlmConfig, WavlmModel
from audiossl.utils.fileio import atomic_open

_FINETUNED_PREFIX = "w2v_encoder.w2v_model."


def config_from_fairseq(model_cfg: dict, task_cfg: dict, num_classes: int = 500) -> WavlmConfig:
    """unilm / fairseq WavLM config dict → :class:`WavlmConfig` (refuses a WavLM without relative bias)."""
    if not model_cfg.get("relative_position_embedding", False):
        raise FairseqCheckpointError("relative_position_embedding is off: this is not a WavLM checkpoint "
                                     "(load wav2vec 2.0 / HuBERT files with the 'fairseq:' upstream)")
    base = hubert_config_from_fairseq(model_cfg, task_cfg, num_classes).to_dict()
    g = model_cfg.get
    return WavlmConfig.from_dict({**base, "num_buckets": int(g("num_buckets", 320)), "max_distance": int(g("max_distance", 1280)),
                                  "gru_rel_pos": bool(g("gru_rel_pos", False))})


def _top_keys(cfg: WavlmConfig) -> dict[str, str]:
    """Front end, projection, mask embedding, positional conv, encoder LN: our name → unilm name."""
    return hubert_key_map(replace(cfg, num_layers=0))


def fairseq_to_state_dict(fs: dict[str, torch.Tensor], cfg: WavlmConfig) -> dict[str, torch.Tensor]:
    """unilm WavLM state dict → our :class:`WavlmModel` state dict."""
    out = {ours: fs[theirs] for ours, theirs in _top_keys(cfg).items() if theirs in fs}
    out.update({k: v for k, v in fs.items() if k.startswith("encoder.layers.")})
    if "post_extract_proj.weight" not in fs:  # no projection when the conv width equals the model width: identity
        c = cfg.conv_layers[-1][0]
        if c != cfg.embed_dim:
            raise FairseqCheckpointError(f"post_extract_proj missing although conv width {c} != embed dim {cfg.embed_dim}")
        out["post_extract_proj.weight"], out["post_extract_proj.bias"] = torch.eye(c), torch.zeros(c)
    return out


def state_dict_to_fairseq(sd: dict[str, torch.Tensor], cfg: WavlmConfig) -> dict[str, torch.Tensor]:
    """Our :class:`WavlmModel` state dict → unilm WavLM keys (inverse of :func:`fairseq_to_state_dict`)."""
    out = {theirs: sd[ours] for ours, theirs in _top_keys(cfg).items() if ours in sd}
    out.update({k: v for k, v in sd.items() if k.startswith("encoder.layers.")})
    return {k: v.detach().clone().contiguous() for k, v in out.items()}


def unilm_config(cfg: WavlmConfig, normalize: bool = False) -> dict:
    """The flat ``cfg`` dict of a unilm WavLM checkpoint for ``cfg`` (field names of unilm's ``WavLMConfig``)."""
    return {
        "extractor_mode": "default" if cfg.extractor_mode == "group_norm" else "layer_norm",
        "encoder_layers": cfg.num_layers, "encoder_embed_dim": cfg.embed_dim, "encoder_ffn_embed_dim": cfg.ffn_dim,
        "encoder_attention_heads": cfg.num_heads, "activation_fn": "gelu", "layer_norm_first": cfg.layer_norm_first,
        "conv_feature_layers": repr([tuple(layer) for layer in cfg.conv_layers]), "conv_bias": cfg.conv_bias,
        "feature_grad_mult": cfg.feature_grad_mult, "normalize": normalize, "dropout": cfg.dropout,
        "attention_dropout": cfg.attention_dropout, "activation_dropout": cfg.activation_dropout,
        "encoder_layerdrop": cfg.encoder_layerdrop, "dropout_input": cfg.dropout_input, "dropout_features": cfg.dropout_features,
        "mask_length": cfg.mask_length, "mask_prob": cfg.mask_prob, "conv_pos": cfg.pos_conv_kernel,
        "conv_pos_groups": cfg.pos_conv_groups, "relative_position_embedding": True, "num_buckets": cfg.num_buckets,
        "max_distance": cfg.max_distance, "gru_rel_pos": cfg.gru_rel_pos,
    }


def load_fairseq_wavlm(path: str | Path) -> tuple[WavlmModel, bool]:
    """A unilm / fairseq WavLM ``.pt`` → (our encoder in eval mode, the checkpoint's ``normalize`` flag)."""
    ck = read_fairseq_checkpoint(path)
    mc, weights = ck["model_cfg"], ck["model"]
    if any(k.startswith(_FINETUNED_PREFIX) for k in weights):  # a fine-tuned model: its pretrained encoder
        mc = dict(((mc.get("w2v_args") or {}).get("model")) or mc)
        weights = {k[len(_FINETUNED_PREFIX):]: v for k, v in weights.items() if k.startswith(_FINETUNED_PREFIX)}
    try:
        cfg = config_from_fairseq(mc, ck["task_cfg"])
    except FairseqCheckpointError as e:
        raise FairseqCheckpointError(f"{path}: {e}") from None
    with torch.device("meta"):
        model = WavlmModel(cfg)
    state = fairseq_to_state_dict(weights, cfg)
    if "mask_emb" not in state:
        state["mask_emb"] = torch.zeros(cfg.embed_dim)  # used only to mask inputs in pretraining
    try:
        load_state_into(model, state, path, "the WavLM config in its 'cfg'")
    except CheckpointError as e:
        raise FairseqCheckpointError(str(e)) from None
    normalize = bool(mc.get("normalize") or ck["task_cfg"].get("normalize"))
    return model.eval(), normalize


def export_fairseq(model: torch.nn.Module, out_file: str | Path, *, normalize: bool = False) -> Path:
    """Write our WavLM (encoder or pretraining model) as a unilm ``WavLM-*.pt`` (plain dicts and tensors)."""
    encoder = model.encoder if hasattr(model, "label_embs") else model
    out_file = Path(out_file)
    out_file.parent.mkdir(parents=True, exist_ok=True)
    payload = {"cfg": unilm_config(encoder.cfg, normalize), "model": state_dict_to_fairseq(encoder.state_dict(), encoder.cfg)}
    with atomic_open(out_file, "wb") as f:
        torch.save(payload, f)
    return out_file
