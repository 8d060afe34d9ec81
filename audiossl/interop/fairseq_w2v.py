"""fairseq wav2vec 2.0, WavLM (microsoft/unilm and s3prl layout) and data2vec-audio checkpoints
→ transformers ``Wav2Vec2Model`` / ``WavLMModel`` / ``Data2VecAudioModel``.

The checkpoint is read by :func:`audiossl.models.fairseq_io.read_fairseq_checkpoint` (restricted
unpickling: no fairseq, no code). Key names follow the layouts that transformers' own conversion
scripts read (``convert_wav2vec2_original_pytorch_checkpoint_to_pytorch.py``,
``convert_wavlm_original_pytorch_checkpoint_to_pytorch.py``,
``convert_data2vec_audio_original_pytorch_checkpoint_to_pytorch.py``); the mapping below is our
own table, built per config, in both directions (:func:`fairseq_to_hf_keys`).

fairseq (per layer ``encoder.layers.{i}.``)        transformers
  feature_extractor.conv_layers.{i}.0 (conv)         feature_extractor.conv_layers.{i}.conv
  ...conv_layers.0.2 (GroupNorm, "default" mode)     feature_extractor.conv_layers.0.layer_norm
  ...conv_layers.{i}.2.1 (LayerNorm, "layer_norm")   feature_extractor.conv_layers.{i}.layer_norm
  layer_norm / post_extract_proj                     feature_projection.layer_norm / .projection
  encoder.pos_conv.0.{bias,weight_g,weight_v}        encoder.pos_conv_embed.conv (weight norm)
  encoder.pos_conv.{j}.0 (data2vec, j < depth)       encoder.pos_conv_embed.layers.{j}.conv
  self_attn.{q,k,v,out}_proj                         attention.{q,k,v,out}_proj
  self_attn.grep_linear / grep_a (WavLM)             attention.gru_rel_pos_linear / gru_rel_pos_const
  self_attn.relative_attention_bias (WavLM, layer 0) attention.rel_attn_embed
  self_attn_layer_norm / fc1 / fc2 / final_layer_norm  layer_norm / feed_forward.* / final_layer_norm
  encoder.layer_norm, mask_emb                       encoder.layer_norm, masked_spec_embed

Pretraining-only tensors (quantizer, project_q, final_proj, EMA teacher) and a fine-tuned model's
CTC head are not part of the encoder and are ignored; a fine-tuned checkpoint's
``w2v_encoder.w2v_model.`` prefix and ``w2v_args`` config are unwrapped.
"""

from __future__ import annotations

from pathlib import Path

import torch

from audiossl.models.fairseq_io import FairseqCheckpointError, eval_conv_layers, read_fairseq_checkpoint

KINDS = ("wav2vec2", "wavlm", "data2vec-audio")
FINETUNED_PREFIX = "w2v_encoder.w2v_model."
DEFAULT_CONV = "[(512,10,5)] + [(512,3,2)] * 4 + [(512,2,2)] * 2"


def detect_kind(model_cfg: dict, weights: dict) -> str:
    """``hubert`` | ``wav2vec2`` | ``wavlm`` | ``data2vec-audio`` from the config name and the keys."""
    name = str(model_cfg.get("_name") or "")
    if any(".grep_linear." in k for k in weights) or model_cfg.get("relative_position_embedding"):
        return "wavlm"
    if "data2vec" in name or int(model_cfg.get("pos_conv_depth", 1) or 1) > 1:
        return "data2vec-audio"
    if "hubert" in name or "label_embs_concat" in weights:
        return "hubert"
    return "wav2vec2"


def hf_config(kind: str, mc: dict):
    """fairseq model config dict → the transformers config of ``kind`` (dropouts off: inference)."""
    import transformers  # lazy: optional dependency (transformers, the `bench` extra)

    g = mc.get
    if g("activation_fn", "gelu") != "gelu":
        raise FairseqCheckpointError(f"activation_fn={g('activation_fn')!r}: only gelu models are supported")
    conv = eval_conv_layers(g("conv_feature_layers") or DEFAULT_CONV)
    layer_norm_front = g("extractor_mode", "default") == "layer_norm"
    common = dict(
        conv_dim=[c for c, _, _ in conv], conv_kernel=[k for _, k, _ in conv], conv_stride=[s for _, _, s in conv],
        num_feat_extract_layers=len(conv), conv_bias=bool(g("conv_bias", False)),
        hidden_size=int(g("encoder_embed_dim", 768)), num_hidden_layers=int(g("encoder_layers", 12)),
        num_attention_heads=int(g("encoder_attention_heads", 12)), intermediate_size=int(g("encoder_ffn_embed_dim", 3072)),
        num_conv_pos_embedding_groups=int(g("conv_pos_groups", 16)), hidden_act="gelu", feat_extract_activation="gelu",
        layer_norm_eps=1e-5, hidden_dropout=0.0, attention_dropout=0.0, activation_dropout=0.0, feat_proj_dropout=0.0,
        final_dropout=0.0, layerdrop=0.0, mask_time_prob=0.0, mask_feature_prob=0.0,
    )
    if kind == "data2vec-audio":
        if not layer_norm_front or g("layer_norm_first", False):
            raise FairseqCheckpointError("data2vec-audio with a group-norm front end or pre-LN layers has no transformers equivalent")
        depth = int(g("pos_conv_depth", 5) or 5)
        return transformers.Data2VecAudioConfig(**common, num_conv_pos_embeddings=depth,
                                                conv_pos_kernel_size=max(3, int(g("conv_pos", 95)) // depth))
    common.update(feat_extract_norm="layer" if layer_norm_front else "group", do_stable_layer_norm=bool(g("layer_norm_first", False)),
                  num_conv_pos_embeddings=int(g("conv_pos", 128)))
    if kind == "wavlm":
        if not (g("relative_position_embedding", True) and g("gru_rel_pos", True)):
            raise FairseqCheckpointError("WavLM without gated relative position bias has no transformers equivalent")
        return transformers.WavLMConfig(**common, num_buckets=int(g("num_buckets", 320)), max_bucket_distance=int(g("max_distance", 800)))
    return transformers.Wav2Vec2Config(**common)


def fairseq_to_hf_keys(config, hf_keys: set[str]) -> dict[str, str]:
    """fairseq encoder key → transformers key for this config (see module docstring).
    ``hf_keys``: the target model's state-dict keys (legacy vs parametrized weight norm names)."""
    kind = config.model_type
    m: dict[str, str] = {}
    layer_front = kind == "data2vec-audio" or config.feat_extract_norm == "layer"
    for i in range(config.num_feat_extract_layers):
        fs, hf = f"feature_extractor.conv_layers.{i}", f"feature_extractor.conv_layers.{i}"
        m[f"{fs}.0.weight"] = f"{hf}.conv.weight"
        if config.conv_bias:
            m[f"{fs}.0.bias"] = f"{hf}.conv.bias"
        if layer_front or i == 0:
            norm = f"{fs}.2.1" if layer_front else f"{fs}.2"
            for p in ("weight", "bias"):
                m[f"{norm}.{p}"] = f"{hf}.layer_norm.{p}"
    for p in ("weight", "bias"):
        m[f"layer_norm.{p}"] = f"feature_projection.layer_norm.{p}"
        m[f"post_extract_proj.{p}"] = f"feature_projection.projection.{p}"
        m[f"encoder.layer_norm.{p}"] = f"encoder.layer_norm.{p}"
    m["mask_emb"] = "masked_spec_embed"
    if kind == "data2vec-audio":
        for j in range(config.num_conv_pos_embeddings):
            for p in ("weight", "bias"):
                m[f"encoder.pos_conv.{j}.0.{p}"] = f"encoder.pos_conv_embed.layers.{j}.conv.{p}"
    else:
        legacy = "encoder.pos_conv_embed.conv.weight_g" in hf_keys
        m["encoder.pos_conv.0.bias"] = "encoder.pos_conv_embed.conv.bias"
        m["encoder.pos_conv.0.weight_g"] = "encoder.pos_conv_embed.conv." + ("weight_g" if legacy else "parametrizations.weight.original0")
        m["encoder.pos_conv.0.weight_v"] = "encoder.pos_conv_embed.conv." + ("weight_v" if legacy else "parametrizations.weight.original1")
    per_layer = {"self_attn.q_proj": "attention.q_proj", "self_attn.k_proj": "attention.k_proj",
                 "self_attn.v_proj": "attention.v_proj", "self_attn.out_proj": "attention.out_proj",
                 "self_attn_layer_norm": "layer_norm", "fc1": "feed_forward.intermediate_dense",
                 "fc2": "feed_forward.output_dense", "final_layer_norm": "final_layer_norm"}
    if kind == "wavlm":
        per_layer["self_attn.grep_linear"] = "attention.gru_rel_pos_linear"
    for i in range(config.num_hidden_layers):
        for fs, hf in per_layer.items():
            for p in ("weight", "bias"):
                m[f"encoder.layers.{i}.{fs}.{p}"] = f"encoder.layers.{i}.{hf}.{p}"
        if kind == "wavlm":
            m[f"encoder.layers.{i}.self_attn.grep_a"] = f"encoder.layers.{i}.attention.gru_rel_pos_const"
            if i == 0:
                m["encoder.layers.0.self_attn.relative_attention_bias.weight"] = "encoder.layers.0.attention.rel_attn_embed.weight"
    return {fs: hf for fs, hf in m.items() if hf in hf_keys}


def unwrap_finetuned(model_cfg: dict, weights: dict) -> tuple[dict, dict]:
    if not any(k.startswith(FINETUNED_PREFIX) for k in weights):
        return model_cfg, weights
    inner = ((model_cfg.get("w2v_args") or {}).get("model")) or model_cfg
    return dict(inner), {k[len(FINETUNED_PREFIX):]: v for k, v in weights.items() if k.startswith(FINETUNED_PREFIX)}


def load_fairseq_hf_model(path: str | Path):
    """A fairseq wav2vec 2.0 / WavLM / data2vec-audio ``.pt`` → (transformers model in eval mode, normalize flag)."""
    import transformers  # lazy: optional dependency (transformers, the `bench` extra)

    ck = read_fairseq_checkpoint(path)
    mc, weights = unwrap_finetuned(ck["model_cfg"], ck["model"])
    kind = detect_kind(mc, weights)
    if kind == "hubert":
        raise FairseqCheckpointError(f"{path}: a HuBERT checkpoint; load it with audiossl.models.hubert.fairseq")
    config = hf_config(kind, mc)
    cls = {"wav2vec2": transformers.Wav2Vec2Model, "wavlm": transformers.WavLMModel,
           "data2vec-audio": transformers.Data2VecAudioModel}[kind]
    model = cls(config).eval()
    target = model.state_dict()
    sd = {hf: weights[fs] for fs, hf in fairseq_to_hf_keys(config, set(target)).items() if fs in weights}
    if "feature_projection.projection.weight" not in sd and config.conv_dim[-1] == config.hidden_size:
        # fairseq builds no post_extract_proj when the conv width equals the model width: identity
        sd["feature_projection.projection.weight"] = torch.eye(config.hidden_size)
        sd["feature_projection.projection.bias"] = torch.zeros(config.hidden_size)
    missing = sorted(set(target) - set(sd) - {"masked_spec_embed"})
    if missing:
        raise FairseqCheckpointError(
            f"{path}: not a {kind} checkpoint this config describes: missing fairseq tensors for {missing[:6]}"
            f"{' ...' if len(missing) > 6 else ''}. Check that 'cfg' matches the weights (layers, widths, extractor_mode)."
        )
    bad = [k for k, v in sd.items() if tuple(v.shape) != tuple(target[k].shape)]
    if bad:
        raise FairseqCheckpointError(f"{path}: shape mismatch for {bad[:4]}, e.g. {tuple(sd[bad[0]].shape)} vs {tuple(target[bad[0]].shape)}")
    model.load_state_dict(sd, strict=False)
    normalize = bool(mc.get("normalize") or ck["task_cfg"].get("normalize"))
    return model, normalize


def hf_to_fairseq_state_dict(model) -> dict[str, torch.Tensor]:
    """A transformers ``Wav2Vec2Model`` / ``WavLMModel`` / ``Data2VecAudioModel`` → fairseq-layout
    encoder weights (the inverse of the import mapping; parity tests build checkpoints with it)."""
    sd = model.state_dict()
    return {fs: sd[hf].detach().clone() for fs, hf in fairseq_to_hf_keys(model.config, set(sd)).items()}
