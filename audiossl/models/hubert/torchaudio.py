"""Weight conversion between torchaudio's wav2vec2/HuBERT models and :mod:`audiossl.models.hubert.model`.

Works for ``torchaudio.models.Wav2Vec2Model`` (``hubert_base()``, ``wav2vec2_model(...)``, ...) and
``HuBERTPretrainModel`` (``hubert_pretrain_base()``, ...), in both directions, for state dicts
built locally (no hub download). Our attention uses one fused ``qkv`` Linear; torchaudio's
separate ``q_proj/k_proj/v_proj`` are concatenated in that order.

Layer convention: torchaudio ``extract_features(x)[i]`` is the output of layer ``i + 1`` and equals
our ``hidden_states[i + 1]`` (for pre-LN models except the last, where we also apply the final
LayerNorm that torchaudio's ``forward`` applies). Our ``hidden_states[0]`` has no torchaudio
counterpart in ``extract_features``.
"""

from __future__ import annotations

import re

import torch
from torch import Tensor, nn

from audiossl.models.hubert.model import HubertConfig, HubertModel, HubertPretrainModel

# (torchaudio key, our encoder key); "{n}" = layer number, "{p}" = parameter name
_ENCODER_RULES: list[tuple[str, str]] = [
    ("feature_extractor.conv_layers.{n}.conv.{p}", "frontend.layers.{n}.conv.{p}"),
    ("feature_extractor.conv_layers.{n}.layer_norm.{p}", "frontend.layers.{n}.norm.{p}"),
    ("encoder.feature_projection.layer_norm.{p}", "layer_norm.{p}"),
    ("encoder.feature_projection.projection.{p}", "post_extract_proj.{p}"),
    ("encoder.transformer.pos_conv_embed.conv.{p}", "encoder.pos_conv.conv.{p}"),
    ("encoder.transformer.layer_norm.{p}", "encoder.layer_norm.{p}"),
    ("encoder.transformer.layers.{n}.attention.out_proj.{p}", "encoder.layers.{n}.self_attn.out_proj.{p}"),
    ("encoder.transformer.layers.{n}.layer_norm.{p}", "encoder.layers.{n}.self_attn_layer_norm.{p}"),
    ("encoder.transformer.layers.{n}.feed_forward.intermediate_dense.{p}", "encoder.layers.{n}.ffn.fc1.{p}"),
    ("encoder.transformer.layers.{n}.feed_forward.output_dense.{p}", "encoder.layers.{n}.ffn.fc2.{p}"),
    ("encoder.transformer.layers.{n}.final_layer_norm.{p}", "encoder.layers.{n}.final_layer_norm.{p}"),
]


def _to_regex(template: str) -> re.Pattern:
    return re.compile(re.escape(template).replace(r"\{n\}", r"(?P<n>\d+)").replace(r"\{p\}", r"(?P<p>.+)"))


def _rename(key: str, rules: list[tuple[re.Pattern, str]]) -> str | None:
    for regex, template in rules:
        m = regex.fullmatch(key)
        if m:
            return template.format(**m.groupdict())
    return None


_TA_TO_OURS = [(_to_regex(ta), ours) for ta, ours in _ENCODER_RULES]
_OURS_TO_TA = [(_to_regex(ours), ta) for ta, ours in _ENCODER_RULES]
_QKV = re.compile(r"encoder\.transformer\.layers\.(\d+)\.attention\.([qkv])_proj\.(weight|bias)")
_PRETRAIN_RULES = {
    "mask_generator.mask_embedding": "encoder.mask_emb",
    "logit_generator.label_embeddings": "label_embs",
    "logit_generator.final_proj.weight": "final_proj.weight",
    "logit_generator.final_proj.bias": "final_proj.bias",
}


def _wav2vec2_of(ta_model: nn.Module) -> nn.Module:
    return ta_model.wav2vec2 if hasattr(ta_model, "wav2vec2") else ta_model


def config_from_torchaudio(ta_model: nn.Module, **overrides) -> HubertConfig:
    """Read the architecture of a torchaudio ``Wav2Vec2Model`` / ``HuBERTPretrainModel`` into a config."""
    w2v = _wav2vec2_of(ta_model)
    convs = w2v.feature_extractor.conv_layers
    conv_layers = tuple((c.conv.out_channels, c.conv.kernel_size[0], c.conv.stride[0]) for c in convs)
    mode = "layer_norm" if all(c.layer_norm is not None for c in convs) else "group_norm"
    tr = w2v.encoder.transformer
    layer0 = tr.layers[0]
    pos = tr.pos_conv_embed
    kw = dict(
        conv_layers=conv_layers,
        extractor_mode=mode,
        conv_bias=convs[0].conv.bias is not None,
        embed_dim=pos.embed_dim,
        num_layers=len(tr.layers),
        num_heads=layer0.attention.num_heads,
        ffn_dim=layer0.feed_forward.intermediate_dense.out_features,
        layer_norm_first=layer0.layer_norm_first,
        pos_conv_kernel=pos.kernel_size,
        pos_conv_groups=pos.conv.groups,
        encoder_layerdrop=tr.layer_drop,
    )
    if hasattr(ta_model, "logit_generator"):
        num_classes, final_dim = ta_model.logit_generator.label_embeddings.shape
        kw.update(num_classes=num_classes, final_dim=final_dim)
    kw.update(overrides)
    return HubertConfig(**kw)


def state_dict_from_torchaudio(sd: dict[str, Tensor]) -> dict[str, Tensor]:
    """torchaudio state dict → ours (pretrain-model keys, ``encoder.`` prefix)."""
    out: dict[str, Tensor] = {}
    qkv: dict[tuple[str, str], dict[str, Tensor]] = {}
    unknown = []
    for key, value in sd.items():
        if key in _PRETRAIN_RULES:
            out[_PRETRAIN_RULES[key]] = value
            continue
        k = key[len("wav2vec2.") :] if key.startswith("wav2vec2.") else key
        m = _QKV.fullmatch(k)
        if m:
            qkv.setdefault((m.group(1), m.group(3)), {})[m.group(2)] = value
            continue
        ours = _rename(k, _TA_TO_OURS)
        if ours is None:
            unknown.append(key)
        else:
            out["encoder." + ours] = value
    if unknown:
        raise KeyError(f"torchaudio keys with no audiossl counterpart (an aux head or WavLM?): {unknown[:10]}")
    for (layer, kind), parts in qkv.items():
        out[f"encoder.encoder.layers.{layer}.self_attn.qkv.{kind}"] = torch.cat([parts["q"], parts["k"], parts["v"]])
    return out


def state_dict_to_torchaudio(sd: dict[str, Tensor], *, pretrain: bool) -> dict[str, Tensor]:
    """Our pretrain-model state dict → torchaudio keys (``wav2vec2.`` prefix when ``pretrain``)."""
    inverse_pre = {v: k for k, v in _PRETRAIN_RULES.items()}
    prefix = "wav2vec2." if pretrain else ""
    out: dict[str, Tensor] = {}
    for key, value in sd.items():
        if key in inverse_pre:
            if pretrain:
                out[inverse_pre[key]] = value
            continue
        m = re.fullmatch(r"encoder\.encoder\.layers\.(\d+)\.self_attn\.qkv\.(weight|bias)", key)
        if m:
            for name, part in zip("qkv", value.chunk(3)):
                out[f"{prefix}encoder.transformer.layers.{m.group(1)}.attention.{name}_proj.{m.group(2)}"] = part
            continue
        ta_key = _rename(key[len("encoder.") :], _OURS_TO_TA) if key.startswith("encoder.") else None
        if ta_key is None:
            raise KeyError(f"audiossl key {key!r} has no torchaudio counterpart")
        out[prefix + ta_key] = value
    return out


def from_torchaudio(ta_model: nn.Module, **config_overrides) -> HubertModel | HubertPretrainModel:
    """Build our model with the weights of a torchaudio model (pretrain model for ``HuBERTPretrainModel``)."""
    cfg = config_from_torchaudio(ta_model, **config_overrides)
    sd = state_dict_from_torchaudio(ta_model.state_dict())
    # built on the meta device: no time spent on a random init that the weights overwrite
    if hasattr(ta_model, "logit_generator"):
        with torch.device("meta"):
            model = HubertPretrainModel(cfg)
        model.load_state_dict(sd, strict=True, assign=True)
        return model
    with torch.device("meta"):
        model = HubertModel(cfg)
    enc_sd = {k[len("encoder.") :]: v for k, v in sd.items()}
    # Wav2Vec2Model has no mask embedding: a fresh one, as fairseq initialises it
    enc_sd.setdefault("mask_emb", torch.empty(cfg.embed_dim).uniform_())
    model.load_state_dict(enc_sd, strict=True, assign=True)
    return model


def to_torchaudio(model: HubertModel | HubertPretrainModel, ta_model: nn.Module) -> nn.Module:
    """Copy our weights into an already-built torchaudio model of the same architecture."""
    pretrain = hasattr(ta_model, "logit_generator")
    if isinstance(model, HubertModel):
        sd = {"encoder." + k: v for k, v in model.state_dict().items()}
    else:
        sd = model.state_dict()
    ta_sd = state_dict_to_torchaudio(sd, pretrain=pretrain)
    if not pretrain:
        ta_sd.pop("encoder.mask_emb", None)
    ta_model.load_state_dict(ta_sd, strict=True)
    return ta_model
