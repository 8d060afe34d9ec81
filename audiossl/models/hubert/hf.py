"""transformers layout of our HuBERT: config and weight mapping both ways, and ``export_hf``
(a directory ``transformers.HubertModel.from_pretrained`` loads, written to a temporary sibling and
renamed into place). MERT reuses the key map. The ``hf:<dir>`` upstream is :mod:`audiossl.interop.hf`.
"""

from __future__ import annotations

from pathlib import Path

import torch

from audiossl.models.hubert import HubertConfig, HubertModel
from audiossl.utils.fileio import atomic_dir


# ---------------------------------------------------------------- config + weight mapping (HuBERT)


def hf_config_to_ours(c, num_classes: int = 500):
    """A transformers ``HubertConfig`` / ``Wav2Vec2Config`` → our :class:`HubertConfig`."""
    if c.hidden_act != "gelu" or c.feat_extract_activation != "gelu":
        raise ValueError(f"only GELU models are supported, got {c.hidden_act}/{c.feat_extract_activation}")
    if getattr(c, "conv_pos_batch_norm", False) or getattr(c, "feat_proj_layer_norm", True) is False:
        raise ValueError("HF configs with conv_pos_batch_norm or without feat_proj_layer_norm are not supported")
    return HubertConfig(
        conv_layers=tuple(zip(c.conv_dim, c.conv_kernel, c.conv_stride)),
        extractor_mode="group_norm" if c.feat_extract_norm == "group" else "layer_norm",
        conv_bias=bool(c.conv_bias),
        embed_dim=c.hidden_size,
        num_layers=c.num_hidden_layers,
        num_heads=c.num_attention_heads,
        ffn_dim=c.intermediate_size,
        layer_norm_first=bool(c.do_stable_layer_norm),
        pos_conv_kernel=c.num_conv_pos_embeddings,
        pos_conv_groups=c.num_conv_pos_embedding_groups,
        dropout=c.hidden_dropout,
        attention_dropout=c.attention_dropout,
        activation_dropout=c.activation_dropout,
        encoder_layerdrop=c.layerdrop,
        dropout_input=getattr(c, "feat_proj_dropout", 0.0),
        num_classes=num_classes,
    )


def ours_to_hf_config(cfg):
    """Our :class:`HubertConfig` → ``transformers.HubertConfig``."""
    import transformers  # lazy: optional dependency (transformers, the `bench` extra)

    return transformers.HubertConfig(
        conv_dim=[c for c, _, _ in cfg.conv_layers],
        conv_kernel=[k for _, k, _ in cfg.conv_layers],
        conv_stride=[s for _, _, s in cfg.conv_layers],
        num_feat_extract_layers=len(cfg.conv_layers),
        feat_extract_norm="group" if cfg.extractor_mode == "group_norm" else "layer",
        feat_extract_activation="gelu",
        conv_bias=cfg.conv_bias,
        hidden_size=cfg.embed_dim,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        intermediate_size=cfg.ffn_dim,
        hidden_act="gelu",
        do_stable_layer_norm=cfg.layer_norm_first,
        num_conv_pos_embeddings=cfg.pos_conv_kernel,
        num_conv_pos_embedding_groups=cfg.pos_conv_groups,
        hidden_dropout=cfg.dropout,
        attention_dropout=cfg.attention_dropout,
        activation_dropout=cfg.activation_dropout,
        feat_proj_dropout=cfg.dropout_input,
        layerdrop=cfg.encoder_layerdrop,
        feat_proj_layer_norm=True,
        layer_norm_eps=1e-5,
    )


def hf_key_map(cfg) -> dict[str, str]:
    """Our encoder parameter name → HF name (q/k/v handled separately)."""
    m = {
        "layer_norm.weight": "feature_projection.layer_norm.weight",
        "layer_norm.bias": "feature_projection.layer_norm.bias",
        "post_extract_proj.weight": "feature_projection.projection.weight",
        "post_extract_proj.bias": "feature_projection.projection.bias",
        "mask_emb": "masked_spec_embed",
        "encoder.pos_conv.conv.bias": "encoder.pos_conv_embed.conv.bias",
        "encoder.pos_conv.conv.parametrizations.weight.original0": "encoder.pos_conv_embed.conv.parametrizations.weight.original0",
        "encoder.pos_conv.conv.parametrizations.weight.original1": "encoder.pos_conv_embed.conv.parametrizations.weight.original1",
        "encoder.layer_norm.weight": "encoder.layer_norm.weight",
        "encoder.layer_norm.bias": "encoder.layer_norm.bias",
    }
    for i in range(len(cfg.conv_layers)):
        for p in ("weight", "bias"):
            m[f"frontend.layers.{i}.conv.{p}"] = f"feature_extractor.conv_layers.{i}.conv.{p}"
            m[f"frontend.layers.{i}.norm.{p}"] = f"feature_extractor.conv_layers.{i}.layer_norm.{p}"
    layer = {
        "self_attn.out_proj": "attention.out_proj",
        "self_attn_layer_norm": "layer_norm",
        "ffn.fc1": "feed_forward.intermediate_dense",
        "ffn.fc2": "feed_forward.output_dense",
        "final_layer_norm": "final_layer_norm",
    }
    for i in range(cfg.num_layers):
        for ours, hf in layer.items():
            for p in ("weight", "bias"):
                m[f"encoder.layers.{i}.{ours}.{p}"] = f"encoder.layers.{i}.{hf}.{p}"
    return m


def hf_state_dict(hf_model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """HF state dict with the legacy weight-norm names (``weight_g``/``weight_v``) normalised."""
    sd = dict(hf_model.state_dict())
    for old, new in (("weight_g", "parametrizations.weight.original0"), ("weight_v", "parametrizations.weight.original1")):
        k = f"encoder.pos_conv_embed.conv.{old}"
        if k in sd:
            sd[f"encoder.pos_conv_embed.conv.{new}"] = sd.pop(k)
    return sd


def hf_to_ours(hf_model: torch.nn.Module):
    """A transformers ``HubertModel`` / ``Wav2Vec2Model`` → our ``HubertModel`` (eval mode)."""
    cfg = hf_config_to_ours(hf_model.config)
    sd = hf_state_dict(hf_model)
    out = {}
    for ours, hf in hf_key_map(cfg).items():
        if hf in sd:
            out[ours] = sd[hf]
    for i in range(cfg.num_layers):
        p = f"encoder.layers.{i}.attention"
        for kind in ("weight", "bias"):
            out[f"encoder.layers.{i}.self_attn.qkv.{kind}"] = torch.cat(
                [sd[f"{p}.{n}_proj.{kind}"] for n in ("q", "k", "v")], dim=0
            )
    model = HubertModel(cfg)
    if "mask_emb" not in out:  # HF drops masked_spec_embed when mask probs are 0; unused for inference
        out["mask_emb"] = model.mask_emb.detach().clone()
    missing, unexpected = model.load_state_dict(out, strict=False)
    if missing or unexpected:
        raise ValueError(f"HF → audiossl conversion: missing {missing[:8]}, unexpected {unexpected[:8]}")
    return model.eval()


def ours_to_hf(model):
    """Our ``HubertModel`` (or the pretrain model's ``.encoder``) → ``transformers.HubertModel``."""
    import transformers  # lazy: optional dependency (transformers, the `bench` extra)

    encoder = getattr(model, "encoder", model) if hasattr(model, "label_embs") else model
    cfg = encoder.cfg
    hf = transformers.HubertModel(ours_to_hf_config(cfg)).eval()
    sd = encoder.state_dict()
    target = hf_state_dict(hf)
    new = {hf_k: sd[ours_k] for ours_k, hf_k in hf_key_map(cfg).items() if ours_k in sd and hf_k in target}
    for i in range(cfg.num_layers):
        for kind in ("weight", "bias"):
            q, k, v = sd[f"encoder.layers.{i}.self_attn.qkv.{kind}"].chunk(3, dim=0)
            p = f"encoder.layers.{i}.attention"
            new.update({f"{p}.q_proj.{kind}": q, f"{p}.k_proj.{kind}": k, f"{p}.v_proj.{kind}": v})
    missing = sorted(set(target) - set(new))
    if missing:
        raise ValueError(f"audiossl → HF conversion left HF parameters unset: {missing[:8]}")
    if "encoder.pos_conv_embed.conv.weight_g" in hf.state_dict():  # legacy weight norm naming
        new["encoder.pos_conv_embed.conv.weight_g"] = new.pop("encoder.pos_conv_embed.conv.parametrizations.weight.original0")
        new["encoder.pos_conv_embed.conv.weight_v"] = new.pop("encoder.pos_conv_embed.conv.parametrizations.weight.original1")
    hf.load_state_dict(new, strict=True)
    return hf


def export_hf(model, out_dir: str | Path, *, normalize: bool = False) -> Path:
    """Save our HuBERT as a transformers ``HubertModel`` directory (atomic: temp dir + rename)."""
    import transformers  # lazy: optional dependency (transformers, the `bench` extra)

    out_dir = Path(out_dir)
    hf = ours_to_hf(model)
    with atomic_dir(out_dir) as tmp:
        hf.save_pretrained(tmp, safe_serialization=True)
        fe = transformers.Wav2Vec2FeatureExtractor(
            feature_size=1, sampling_rate=16000, padding_value=0.0, do_normalize=normalize,
            return_attention_mask=hf.config.feat_extract_norm == "layer",
        )
        fe.save_pretrained(tmp)
    return out_dir
