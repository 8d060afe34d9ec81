"""fairseq HuBERT checkpoints: map them onto our HuBERT (read by :func:`audiossl.models.fairseq_io.read_fairseq_checkpoint`)
and write them.

**Mapping** onto :class:`audiossl.models.hubert.model.HubertModel`: fairseq's separate q/k/v projections
are concatenated into our fused ``qkv``; ``label_embs_concat`` rows are reordered so that our row
``c`` is fairseq's dictionary entry for cluster ``c`` (fairseq's 4 special symbols are dropped).

Layer convention: s3prl / fairseq take the *input* of every transformer layer plus the encoder
output, which is exactly our ``hidden_states`` (see :mod:`audiossl.upstream`).

**Writing** (:func:`export_fairseq`): one torch file holding plain dicts/tensors only, with both
the fairseq layout (``cfg``/``model``) and the keys s3prl's ``hubert_local`` upstream reads
(``task_cfg``/``model_cfg``/``model_weight``/``dictionaries_symbols``), so
``s3prl.hub.hubert_local(ckpt=FILE)`` loads it. Gap: fairseq's own
``load_model_ensemble_and_task`` additionally wants ``task_state["dictionaries"]`` as pickled
``fairseq.data.dictionary.Dictionary`` objects, which we do not fabricate; to use the file in
fairseq itself, point its task ``label_dir`` at a folder with ``dict.km.txt`` (we write the
symbols into ``cfg.task.labels`` / ``dictionaries_symbols``).
"""

from __future__ import annotations

from pathlib import Path

import torch

from audiossl.models.fairseq_io import (
    FAIRSEQ_SPECIALS,
    FairseqCheckpointError,
    eval_conv_layers,
    read_fairseq_checkpoint,
)
from audiossl.models.hubert.model import HubertConfig, HubertModel, HubertPretrainModel
from audiossl.utils.fileio import atomic_open


def config_from_fairseq(model_cfg: dict, task_cfg: dict, num_classes: int):
    """fairseq HuBERT model/task config dicts → :class:`HubertConfig`."""
    g = model_cfg.get
    for key, want in (("activation_fn", "gelu"), ("layer_type", "transformer")):
        if g(key, want) != want:
            raise FairseqCheckpointError(f"fairseq {key}={g(key)!r} is not supported (only {want!r})")
    if int(g("pos_conv_depth", 1) or 1) != 1:
        raise FairseqCheckpointError("fairseq pos_conv_depth > 1 (data2vec-style) is not supported for HuBERT")
    conv = eval_conv_layers(g("conv_feature_layers", "[(512,10,5)] + [(512,3,2)] * 4 + [(512,2,2)] * 2"))
    mode = g("extractor_mode", "default")
    return HubertConfig(
        sample_rate=int(task_cfg.get("sample_rate", 16000) or 16000),
        conv_layers=conv,
        extractor_mode="group_norm" if mode == "default" else "layer_norm",
        conv_bias=bool(g("conv_bias", False)),
        embed_dim=int(g("encoder_embed_dim", 768)),
        num_layers=int(g("encoder_layers", 12)),
        num_heads=int(g("encoder_attention_heads", 12)),
        ffn_dim=int(g("encoder_ffn_embed_dim", 3072)),
        layer_norm_first=bool(g("layer_norm_first", False)),
        pos_conv_kernel=int(g("conv_pos", 128)),
        pos_conv_groups=int(g("conv_pos_groups", 16)),
        dropout=float(g("dropout", 0.1)),
        attention_dropout=float(g("attention_dropout", 0.1)),
        activation_dropout=float(g("activation_dropout", 0.0)),
        encoder_layerdrop=float(g("encoder_layerdrop", 0.0)),
        dropout_input=float(g("dropout_input", 0.0)),
        dropout_features=float(g("dropout_features", 0.0)),
        feature_grad_mult=float(g("feature_grad_mult", 1.0)),
        mask_prob=float(g("mask_prob", 0.65)),
        mask_length=int(g("mask_length", 10)),
        final_dim=int(g("final_dim", 0) or g("encoder_embed_dim", 768)),
        logit_temp=float(g("logit_temp", 0.1)),
        num_classes=max(int(num_classes), 1),
    )


def _conv_keys(i: int, mode: str) -> dict[str, str]:
    """Our frontend key suffix → fairseq key suffix for conv layer ``i``."""
    ours, fs = f"frontend.layers.{i}", f"feature_extractor.conv_layers.{i}"
    keys = {f"{ours}.conv.weight": f"{fs}.0.weight", f"{ours}.conv.bias": f"{fs}.0.bias"}
    norm = f"{fs}.2" if mode == "group_norm" else f"{fs}.2.1"
    keys.update({f"{ours}.norm.weight": f"{norm}.weight", f"{ours}.norm.bias": f"{norm}.bias"})
    return keys


_LAYER_KEYS = {  # ours → fairseq, inside encoder.layers.{i}
    "self_attn.out_proj": "self_attn.out_proj",
    "self_attn_layer_norm": "self_attn_layer_norm",
    "ffn.fc1": "fc1",
    "ffn.fc2": "fc2",
    "final_layer_norm": "final_layer_norm",
}
_TOP_KEYS = {
    "layer_norm.weight": "layer_norm.weight",
    "layer_norm.bias": "layer_norm.bias",
    "post_extract_proj.weight": "post_extract_proj.weight",
    "post_extract_proj.bias": "post_extract_proj.bias",
    "mask_emb": "mask_emb",
    "encoder.pos_conv.conv.bias": "encoder.pos_conv.0.bias",
    "encoder.pos_conv.conv.parametrizations.weight.original0": "encoder.pos_conv.0.weight_g",
    "encoder.pos_conv.conv.parametrizations.weight.original1": "encoder.pos_conv.0.weight_v",
    "encoder.layer_norm.weight": "encoder.layer_norm.weight",
    "encoder.layer_norm.bias": "encoder.layer_norm.bias",
}


def key_map(cfg) -> dict[str, str]:
    """Every encoder parameter: our name → fairseq name (q/k/v handled separately)."""
    m = dict(_TOP_KEYS)
    for i in range(len(cfg.conv_layers)):
        m.update(_conv_keys(i, cfg.extractor_mode))
    for i in range(cfg.num_layers):
        for ours, fs in _LAYER_KEYS.items():
            for p in ("weight", "bias"):
                m[f"encoder.layers.{i}.{ours}.{p}"] = f"encoder.layers.{i}.{fs}.{p}"
    return m


def fairseq_to_state_dict(fs: dict[str, torch.Tensor], cfg) -> dict[str, torch.Tensor]:
    """fairseq HuBERT state dict → our :class:`HubertModel` state dict (encoder keys only)."""
    out = {}
    for ours, theirs in key_map(cfg).items():
        if theirs in fs:
            out[ours] = fs[theirs]
    if "post_extract_proj.weight" not in fs:
        # fairseq has no projection when the conv width equals encoder_embed_dim: identity
        c = cfg.conv_layers[-1][0]
        if c != cfg.embed_dim:
            raise FairseqCheckpointError(f"post_extract_proj missing although conv width {c} != embed dim {cfg.embed_dim}")
        out["post_extract_proj.weight"], out["post_extract_proj.bias"] = torch.eye(c), torch.zeros(c)
    for i in range(cfg.num_layers):
        p = f"encoder.layers.{i}.self_attn"
        for kind in ("weight", "bias"):
            parts = [fs.get(f"{p}.{n}_proj.{kind}") for n in ("q", "k", "v")]
            if all(t is not None for t in parts):
                out[f"{p}.qkv.{kind}"] = torch.cat(parts, dim=0)
    return out


def state_dict_to_fairseq(sd: dict[str, torch.Tensor], cfg) -> dict[str, torch.Tensor]:
    """Our :class:`HubertModel` state dict → fairseq HuBERT keys (inverse of :func:`fairseq_to_state_dict`)."""
    out = {theirs: sd[ours] for ours, theirs in key_map(cfg).items() if ours in sd}
    if cfg.conv_layers[-1][0] == cfg.embed_dim:
        # fairseq builds no post_extract_proj at equal widths, so only an identity can be expressed
        w, b = out.pop("post_extract_proj.weight"), out.pop("post_extract_proj.bias")
        if not (torch.equal(w, torch.eye(cfg.embed_dim, dtype=w.dtype)) and not b.any()):
            raise FairseqCheckpointError(
                f"conv width == embed_dim ({cfg.embed_dim}): fairseq has no post_extract_proj there, so this "
                f"model's learned projection cannot be exported to fairseq format; export to HF instead"
            )
    for i in range(cfg.num_layers):
        p = f"encoder.layers.{i}.self_attn"
        for kind in ("weight", "bias"):
            q, k, v = sd[f"{p}.qkv.{kind}"].chunk(3, dim=0)
            out.update({f"{p}.q_proj.{kind}": q, f"{p}.k_proj.{kind}": k, f"{p}.v_proj.{kind}": v})
    return {k: v.detach().clone().contiguous() for k, v in out.items()}


def _cluster_rows(symbols: list[str]) -> list[int] | None:
    """Row of fairseq's ``label_embs_concat`` for cluster 0..K-1, or None if symbols are not clusters."""
    clusters = [s for s in symbols if s not in FAIRSEQ_SPECIALS]
    if not clusters or not all(s.isdigit() for s in clusters) or sorted(map(int, clusters)) != list(range(len(clusters))):
        return None
    index = {s: i for i, s in enumerate(symbols)}
    return [index[str(c)] for c in range(len(clusters))]


def load_fairseq_hubert(path: str | Path, *, pretrain: bool = False):
    """A fairseq HuBERT checkpoint → our ``HubertModel`` (or ``HubertPretrainModel``) and task config."""
    ck = read_fairseq_checkpoint(path)
    fs = ck["model"]
    label_embs = fs.get("label_embs_concat")
    rows = _cluster_rows(ck["dictionaries"][0]) if ck["dictionaries"] and len(ck["dictionaries"]) == 1 else None
    if label_embs is not None and rows is not None and label_embs.shape[0] == len(ck["dictionaries"][0]):
        label_embs = label_embs[rows]
    num_classes = label_embs.shape[0] if label_embs is not None else 1
    cfg = config_from_fairseq(ck["model_cfg"], ck["task_cfg"], num_classes)
    sd = fairseq_to_state_dict(fs, cfg)
    model = HubertPretrainModel(cfg) if pretrain else HubertModel(cfg)
    if pretrain:
        if label_embs is None or "final_proj.weight" not in fs:
            raise FairseqCheckpointError(f"{path}: no final_proj / label_embs_concat (a fine-tuned model?)")
        sd = {f"encoder.{k}": v for k, v in sd.items()}
        sd.update({"final_proj.weight": fs["final_proj.weight"], "final_proj.bias": fs["final_proj.bias"],
                   "label_embs": label_embs})
    missing, unexpected = model.load_state_dict(sd, strict=False)
    if missing or unexpected:
        raise FairseqCheckpointError(
            f"{path}: weights do not match a HuBERT with this config: missing {missing[:8]}, unexpected {unexpected[:8]}"
        )
    return model.eval(), ck["task_cfg"]


def export_fairseq(model, out_file: str | Path, *, normalize: bool = False) -> Path:
    """Write our ``HubertPretrainModel`` (or ``HubertModel``) as a fairseq-layout checkpoint that
    s3prl's ``hubert_local`` loads (see module docstring). Written atomically."""
    encoder = getattr(model, "encoder", model) if hasattr(model, "label_embs") else model
    cfg = encoder.cfg
    fs = state_dict_to_fairseq(encoder.state_dict(), cfg)
    final_dim = cfg.final_dim
    if hasattr(model, "label_embs"):
        fs["final_proj.weight"] = model.final_proj.weight.detach().clone()
        fs["final_proj.bias"] = model.final_proj.bias.detach().clone()
        k = model.label_embs.shape[0]
        specials = torch.zeros(len(FAIRSEQ_SPECIALS), final_dim)
        fs["label_embs_concat"] = torch.cat([specials, model.label_embs.detach()], 0).contiguous()
    else:
        k = cfg.num_classes
        fs["final_proj.weight"] = torch.zeros(final_dim, cfg.embed_dim)
        fs["final_proj.bias"] = torch.zeros(final_dim)
        fs["label_embs_concat"] = torch.zeros(len(FAIRSEQ_SPECIALS) + k, final_dim)
    symbols = list(FAIRSEQ_SPECIALS) + [str(c) for c in range(k)]
    conv = "[" + ", ".join(f"({c}, {kk}, {s})" for c, kk, s in cfg.conv_layers) + "]"
    model_cfg = {
        "_name": "hubert",
        "label_rate": float(encoder.frame_rate),
        "extractor_mode": "default" if cfg.extractor_mode == "group_norm" else "layer_norm",
        "encoder_layers": cfg.num_layers, "encoder_embed_dim": cfg.embed_dim,
        "encoder_ffn_embed_dim": cfg.ffn_dim, "encoder_attention_heads": cfg.num_heads,
        "activation_fn": "gelu", "layer_type": "transformer",
        "dropout": cfg.dropout, "attention_dropout": cfg.attention_dropout,
        "activation_dropout": cfg.activation_dropout, "encoder_layerdrop": cfg.encoder_layerdrop,
        "dropout_input": cfg.dropout_input, "dropout_features": cfg.dropout_features,
        "final_dim": final_dim, "untie_final_proj": False, "layer_norm_first": cfg.layer_norm_first,
        "conv_feature_layers": conv, "conv_bias": cfg.conv_bias, "logit_temp": cfg.logit_temp,
        "target_glu": False, "feature_grad_mult": cfg.feature_grad_mult,
        "mask_length": cfg.mask_length, "mask_prob": cfg.mask_prob,
        "conv_pos": cfg.pos_conv_kernel, "conv_pos_groups": cfg.pos_conv_groups,
    }
    task_cfg = {"_name": "hubert_pretraining", "label_rate": float(encoder.frame_rate),
                "sample_rate": cfg.sample_rate, "normalize": normalize, "labels": ["km"]}
    state = {
        "cfg": {"model": model_cfg, "task": task_cfg, "_name": None},
        "model": fs,
        "args": None,
        "model_cfg": model_cfg,
        "task_cfg": task_cfg,
        "model_weight": fs,  # same object: torch.save stores the tensors once
        "dictionaries_symbols": [symbols],
    }
    out_file = Path(out_file)
    with atomic_open(out_file, "wb") as f:
        torch.save(state, f)
    return out_file
