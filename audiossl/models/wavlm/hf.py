"""transformers layout of our WavLM: config and weight mapping both ways, and ``export_hf`` (a directory
``transformers.WavLMModel.from_pretrained`` loads). The front end and positional conv keys are HuBERT's
(:func:`audiossl.models.hubert.hf.hf_key_map`); per layer::

    ours (unilm names)                               transformers WavLMModel
    encoder.layers.{i}.self_attn.{q,k,v,out}_proj    encoder.layers.{i}.attention.{q,k,v,out}_proj
    encoder.layers.{i}.self_attn.grep_linear         encoder.layers.{i}.attention.gru_rel_pos_linear
    encoder.layers.{i}.self_attn.grep_a              encoder.layers.{i}.attention.gru_rel_pos_const
    encoder.layers.0.self_attn.relative_attention_bias  encoder.layers.0.attention.rel_attn_embed
    encoder.layers.{i}.self_attn_layer_norm / fc1 / fc2 / final_layer_norm
                                                     layer_norm / feed_forward.{intermediate,output}_dense / final_layer_norm
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch

from audiossl.models.hubert.hf import hf_config_to_ours as hubert_config_from_hf, hf_key_map as hubert_key_map, hf_state_dict, ours_to_hf_config as hubert_config_to_hf
from audiossl.models.wavlm.model import WavlmConfig, WavlmModel
from audiossl.utils.fileio import atomic_dir

_LAYER = {
    "self_attn.q_proj": "attention.q_proj", "self_attn.k_proj": "attention.k_proj", "self_attn.v_proj": "attention.v_proj",
    "self_attn.out_proj": "attention.out_proj", "self_attn.grep_linear": "attention.gru_rel_pos_linear",
    "self_attn_layer_norm": "layer_norm", "fc1": "feed_forward.intermediate_dense", "fc2": "feed_forward.output_dense",
    "final_layer_norm": "final_layer_norm",
}
# HF config fields shared with HuBERT's (ours_to_hf_config of HuBERT builds them)
_SHARED_HF_FIELDS = (
    "conv_dim", "conv_kernel", "conv_stride", "num_feat_extract_layers", "feat_extract_norm", "feat_extract_activation",
    "conv_bias", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "hidden_act",
    "do_stable_layer_norm", "num_conv_pos_embeddings", "num_conv_pos_embedding_groups", "hidden_dropout",
    "attention_dropout", "activation_dropout", "feat_proj_dropout", "layerdrop", "layer_norm_eps",
)


def hf_config_to_ours(c, num_classes: int = 500) -> WavlmConfig:
    """A transformers ``WavLMConfig`` → our :class:`WavlmConfig`."""
    base = hubert_config_from_hf(c, num_classes)
    d = base.to_dict()
    return WavlmConfig.from_dict({**d, "num_buckets": int(c.num_buckets), "max_distance": int(c.max_bucket_distance)})


def ours_to_hf_config(cfg: WavlmConfig):
    """Our :class:`WavlmConfig` → ``transformers.WavLMConfig`` (refuses an ungated bias: HF always gates)."""
    import transformers  # lazy: optional dependency (transformers, the `bench` extra)

    if not cfg.gru_rel_pos:
        raise ValueError("a WavLM without the bias gate (gru_rel_pos=False) has no transformers equivalent")
    shared = hubert_config_to_hf(cfg)
    return transformers.WavLMConfig(**{k: getattr(shared, k) for k in _SHARED_HF_FIELDS},
                                    num_buckets=cfg.num_buckets, max_bucket_distance=cfg.max_distance)


def hf_key_map(cfg: WavlmConfig) -> dict[str, str]:
    """Every parameter of our :class:`WavlmModel`: our name → HF ``WavLMModel`` name."""
    m = hubert_key_map(replace(cfg, num_layers=0))  # front end, projection, mask_emb, pos conv, encoder LN
    for i in range(cfg.num_layers):
        for ours, hf in _LAYER.items():
            for p in ("weight", "bias"):
                m[f"encoder.layers.{i}.{ours}.{p}"] = f"encoder.layers.{i}.{hf}.{p}"
        m[f"encoder.layers.{i}.self_attn.grep_a"] = f"encoder.layers.{i}.attention.gru_rel_pos_const"
    if cfg.num_layers:
        m["encoder.layers.0.self_attn.relative_attention_bias.weight"] = "encoder.layers.0.attention.rel_attn_embed.weight"
    return m


def hf_to_ours(hf_model: torch.nn.Module, num_classes: int = 500) -> WavlmModel:
    """A transformers ``WavLMModel`` → our :class:`WavlmModel` (eval mode)."""
    cfg = hf_config_to_ours(hf_model.config, num_classes)
    sd = hf_state_dict(hf_model)
    model = WavlmModel(cfg)
    out = {ours: sd[hf] for ours, hf in hf_key_map(cfg).items() if hf in sd}
    if "mask_emb" not in out:  # HF drops masked_spec_embed when its mask probs are 0; unused for inference
        out["mask_emb"] = model.mask_emb.detach().clone()
    missing, unexpected = model.load_state_dict(out, strict=False)
    if missing or unexpected:
        raise ValueError(f"HF WavLM → audiossl conversion: missing {missing[:8]}, unexpected {unexpected[:8]}")
    return model.eval()


def ours_to_hf(model: torch.nn.Module):
    """Our :class:`WavlmModel` (or the pretraining model) → ``transformers.WavLMModel`` (eval mode)."""
    import transformers  # lazy: optional dependency (transformers, the `bench` extra)

    encoder = model.encoder if hasattr(model, "label_embs") else model
    cfg = encoder.cfg
    hf = transformers.WavLMModel(ours_to_hf_config(cfg)).eval()
    sd, target = encoder.state_dict(), hf_state_dict(hf)
    new = {hf_k: sd[ours_k] for ours_k, hf_k in hf_key_map(cfg).items() if ours_k in sd and hf_k in target}
    missing = sorted(set(target) - set(new))
    if missing:
        raise ValueError(f"audiossl → HF WavLM conversion left HF parameters unset: {missing[:8]}")
    if "encoder.pos_conv_embed.conv.weight_g" in hf.state_dict():  # legacy weight-norm naming
        for old, new_name in (("weight_g", "original0"), ("weight_v", "original1")):
            new[f"encoder.pos_conv_embed.conv.{old}"] = new.pop(f"encoder.pos_conv_embed.conv.parametrizations.weight.{new_name}")
    hf.load_state_dict(new, strict=True)
    return hf


def export_hf(model: torch.nn.Module, out_dir: str | Path, *, normalize: bool = False) -> Path:
    """Save our WavLM as a transformers ``WavLMModel`` directory (atomic: temp dir + rename)."""
    import transformers  # lazy: optional dependency (transformers, the `bench` extra)

    out_dir = Path(out_dir)
    hf = ours_to_hf(model)
    with atomic_dir(out_dir) as tmp:
        hf.save_pretrained(tmp, safe_serialization=True)
        transformers.Wav2Vec2FeatureExtractor(
            feature_size=1, sampling_rate=16000, padding_value=0.0, do_normalize=normalize,
            return_attention_mask=hf.config.feat_extract_norm == "layer",
        ).save_pretrained(tmp)
    return out_dir
