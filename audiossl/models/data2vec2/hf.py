"""transformers layout of the data2vec 2.0 encoder: ``transformers.Data2VecAudioModel`` ↔ our
:class:`~audiossl.models.data2vec2.model.Data2Vec2Model`, config and weights both ways, and
``export_hf`` (a directory ``Data2VecAudioModel.from_pretrained`` loads; atomic temp dir + rename).

HF's Data2VecAudio has no ALiBi, so only encoders with ``use_alibi=False`` can be exported; the
paper's Base/Large (ALiBi on) are refused with a message rather than silently changed.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch

from audiossl.models.data2vec2.model import Data2Vec2Config, Data2Vec2Model, data2vec2_base
from audiossl.utils.fileio import atomic_dir


def hf_config_to_ours(c) -> Data2Vec2Config:
    """A ``transformers.Data2VecAudioConfig`` → our config (``use_alibi=False``)."""
    if c.hidden_act != "gelu" or c.feat_extract_activation != "gelu":
        raise ValueError(f"only GELU models are supported, got {c.hidden_act}/{c.feat_extract_activation}")
    return replace(
        data2vec2_base(),
        conv_layers=tuple(zip(c.conv_dim, c.conv_kernel, c.conv_stride)),
        extractor_mode="layer_norm", conv_bias=bool(c.conv_bias), embed_dim=c.hidden_size,
        num_layers=c.num_hidden_layers, num_heads=c.num_attention_heads, ffn_dim=c.intermediate_size,
        pos_conv_depth=c.num_conv_pos_embeddings, pos_conv_kernel=c.conv_pos_kernel_size,
        pos_conv_groups=c.num_conv_pos_embedding_groups, use_alibi=False, dropout=c.hidden_dropout,
        attention_dropout=c.attention_dropout, activation_dropout=c.activation_dropout, context_dropout=c.hidden_dropout,
        encoder_layerdrop=c.layerdrop, average_top_k_layers=min(8, c.num_hidden_layers),
    )


def ours_to_hf_config(cfg: Data2Vec2Config):
    """Our config → ``transformers.Data2VecAudioConfig`` (refuses ALiBi, which HF cannot express)."""
    import transformers  # lazy: optional dependency (transformers, the `bench` extra)

    if cfg.use_alibi:
        raise ValueError(
            "this data2vec2 encoder uses ALiBi attention biases (use_alibi=True, the paper's audio setting), which "
            "transformers.Data2VecAudioModel does not have; an HF export would compute something else. Use the "
            "audiossl checkpoint directly (load_upstream), or pretrain with model.use_alibi=false for HF export."
        )
    if cfg.extractor_mode != "layer_norm":
        raise ValueError("transformers.Data2VecAudioModel has a layer_norm conv frontend only (extractor_mode='layer_norm')")
    return transformers.Data2VecAudioConfig(
        conv_dim=[c for c, _, _ in cfg.conv_layers], conv_kernel=[k for _, k, _ in cfg.conv_layers],
        conv_stride=[s for _, _, s in cfg.conv_layers], conv_bias=cfg.conv_bias, hidden_size=cfg.embed_dim,
        num_hidden_layers=cfg.num_layers, num_attention_heads=cfg.num_heads, intermediate_size=cfg.ffn_dim,
        num_conv_pos_embeddings=cfg.pos_conv_depth, conv_pos_kernel_size=cfg.pos_conv_kernel,
        num_conv_pos_embedding_groups=cfg.pos_conv_groups, hidden_dropout=cfg.dropout,
        attention_dropout=cfg.attention_dropout, activation_dropout=cfg.activation_dropout, feat_proj_dropout=0.0,
        layerdrop=cfg.encoder_layerdrop, layer_norm_eps=1e-5, mask_time_prob=0.0, mask_feature_prob=0.0,
        hidden_act="gelu", feat_extract_activation="gelu",
    )


def hf_key_map(cfg: Data2Vec2Config) -> dict[str, str]:
    """Our encoder name → HF name (the fused q/k/v projection is split separately)."""
    m = {
        "layer_norm.weight": "feature_projection.layer_norm.weight",
        "layer_norm.bias": "feature_projection.layer_norm.bias",
        "post_extract_proj.weight": "feature_projection.projection.weight",
        "post_extract_proj.bias": "feature_projection.projection.bias",
        "context.layer_norm.weight": "encoder.layer_norm.weight",
        "context.layer_norm.bias": "encoder.layer_norm.bias",
    }
    for i in range(len(cfg.conv_layers)):
        for p in ("weight", "bias"):
            m[f"frontend.layers.{i}.conv.{p}"] = f"feature_extractor.conv_layers.{i}.conv.{p}"
            m[f"frontend.layers.{i}.norm.{p}"] = f"feature_extractor.conv_layers.{i}.layer_norm.{p}"
    for i in range(cfg.pos_conv_depth):
        for p in ("weight", "bias"):
            m[f"context.pos_conv.layers.{i}.conv.{p}"] = f"encoder.pos_conv_embed.layers.{i}.conv.{p}"
    layer = {
        "self_attn.out_proj": "attention.out_proj", "self_attn_layer_norm": "layer_norm",
        "ffn.fc1": "feed_forward.intermediate_dense", "ffn.fc2": "feed_forward.output_dense",
        "final_layer_norm": "final_layer_norm",
    }
    for i in range(cfg.num_layers):
        for ours, hf in layer.items():
            for p in ("weight", "bias"):
                m[f"context.layers.{i}.{ours}.{p}"] = f"encoder.layers.{i}.{hf}.{p}"
    return m


def hf_to_ours(hf_model: torch.nn.Module) -> Data2Vec2Model:
    """A ``transformers.Data2VecAudioModel`` → our encoder (eval mode)."""
    cfg = hf_config_to_ours(hf_model.config)
    sd = hf_model.state_dict()
    out = {ours: sd[hf] for ours, hf in hf_key_map(cfg).items() if hf in sd}
    for i in range(cfg.num_layers):
        p = f"encoder.layers.{i}.attention"
        for kind in ("weight", "bias"):
            out[f"context.layers.{i}.self_attn.qkv.{kind}"] = torch.cat([sd[f"{p}.{n}_proj.{kind}"] for n in ("q", "k", "v")], dim=0)
    model = Data2Vec2Model(cfg)
    missing, unexpected = model.load_state_dict(out, strict=False)
    if missing or unexpected:
        raise ValueError(f"HF → audiossl data2vec2 conversion: missing {missing[:8]}, unexpected {unexpected[:8]}")
    return model.eval()


def ours_to_hf(model: torch.nn.Module):
    """Our encoder (or the pretraining model, whose student ``.encoder`` is taken) → ``Data2VecAudioModel``."""
    import transformers  # lazy: optional dependency (transformers, the `bench` extra)

    encoder = model.encoder if hasattr(model, "teacher") else model
    cfg = encoder.cfg
    hf = transformers.Data2VecAudioModel(ours_to_hf_config(cfg)).eval()
    sd = encoder.state_dict()
    target = hf.state_dict()
    new = {hf_k: sd[k] for k, hf_k in hf_key_map(cfg).items() if k in sd and hf_k in target}
    for i in range(cfg.num_layers):
        for kind in ("weight", "bias"):
            q, k, v = sd[f"context.layers.{i}.self_attn.qkv.{kind}"].chunk(3, dim=0)
            p = f"encoder.layers.{i}.attention"
            new.update({f"{p}.q_proj.{kind}": q, f"{p}.k_proj.{kind}": k, f"{p}.v_proj.{kind}": v})
    missing = sorted(set(target) - set(new))
    if missing:
        raise ValueError(f"audiossl → HF data2vec2 conversion left HF parameters unset: {missing[:8]}")
    hf.load_state_dict(new, strict=True)
    return hf


def export_hf(model: torch.nn.Module, out_dir: str | Path) -> Path:
    """Save the (student) encoder as a ``transformers.Data2VecAudioModel`` directory, with a feature
    extractor config whose ``do_normalize`` is the model's waveform normalisation."""
    import transformers  # lazy: optional dependency (transformers, the `bench` extra)

    out_dir = Path(out_dir)
    hf = ours_to_hf(model)
    normalize = bool(getattr(model, "cfg").normalize)
    with atomic_dir(out_dir) as tmp:
        hf.save_pretrained(tmp, safe_serialization=True)
        transformers.Wav2Vec2FeatureExtractor(
            feature_size=1, sampling_rate=16000, padding_value=0.0, do_normalize=normalize, return_attention_mask=True,
        ).save_pretrained(tmp)
    return out_dir
