"""Released HF-format MERT checkpoints (``m-a-p/MERT-v1-*`` layout) ↔ our :class:`MertModel`.

Import (``load_mert_upstream(dir)``, the ``mert:<dir>`` upstream spec): ``config.json`` with
``model_type: "mert_model"`` plus ``model.safetensors`` (or ``pytorch_model.bin``, read with
``torch.load(weights_only=True)``). The released repos ship their own modelling code and expect
``trust_remote_code=True``; we never run it. MERT's weights use transformers' ``HubertModel``
names (``feature_extractor.conv_layers.N``, ``feature_projection``, ``encoder.pos_conv_embed``,
``encoder.layers.N.attention.{q,k,v,out}_proj``, ...), so the mapping is
:mod:`audiossl.models.hubert.hf`'s HuBERT one with q/k/v fused into our ``qkv``. MERT-only options:

- ``attention_relax`` (330M): supported (:class:`audiossl.models.mert.model.RelaxedSelfAttention`).
- ``feature_extractor_cqt`` (CQT features concatenated to the conv features), ``conv_pos_batch_norm``
  (BatchNorm in the positional conv), ``deepnorm``, ``feat_proj_layer_norm: false``, non-GELU
  activations: refused with the field named (none of the released MERT-v1 models use them).

``preprocessor_config.json``'s ``do_normalize`` becomes the upstream's waveform normalisation.

Export (``export_mert(ckpt_dir, out)``, ``audiossl export CKPT --to mert OUT``): our checkpoint →
that directory layout (``config.json`` + ``model.safetensors`` + ``preprocessor_config.json``),
written to a temporary sibling and renamed into place. It loads back with ``load_mert_upstream``,
and its weights load into ``transformers.HubertModel`` as they are (no ``trust_remote_code``).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from audiossl.models.checkpoint import load_state_into
from audiossl.models.hubert.hf import ours_to_hf_config, hf_key_map
from audiossl.models.mert.family import load_encoder
from audiossl.models.mert.model import MertConfig, MertModel
from audiossl.utils.fileio import atomic_dir

UNSUPPORTED = {
    "feature_extractor_cqt": "CQT features concatenated to the conv front end",
    "conv_pos_batch_norm": "BatchNorm in the positional convolution",
    "deepnorm": "DeepNorm residual scaling",
}


class MertFormatError(ValueError):
    """A MERT directory this loader cannot read; the message names the file and the field."""


def hf_config_to_mert(c: dict, where: str | Path = "config.json") -> MertConfig:
    """A MERT HF ``config.json`` dict → :class:`MertConfig` (refuses options we do not implement)."""
    for key, what in UNSUPPORTED.items():
        if c.get(key):
            raise MertFormatError(f"{where}: {key}={c[key]!r} ({what}) is not supported by audiossl's MERT")
    if c.get("feat_proj_layer_norm", True) is False:
        raise MertFormatError(f"{where}: feat_proj_layer_norm=false is not supported (our projection has a LayerNorm)")
    for key in ("hidden_act", "feat_extract_activation"):
        if c.get(key, "gelu") != "gelu":
            raise MertFormatError(f"{where}: {key}={c[key]!r}: only GELU models are supported")
    try:
        conv = tuple(zip(c["conv_dim"], c["conv_kernel"], c["conv_stride"]))
        return MertConfig(
            sample_rate=int(c.get("sample_rate", 24000)),
            conv_layers=conv,
            extractor_mode="group_norm" if c.get("feat_extract_norm", "group") == "group" else "layer_norm",
            conv_bias=bool(c.get("conv_bias", False)),
            embed_dim=int(c["hidden_size"]),
            num_layers=int(c["num_hidden_layers"]),
            num_heads=int(c["num_attention_heads"]),
            ffn_dim=int(c["intermediate_size"]),
            layer_norm_first=bool(c.get("do_stable_layer_norm", False)),
            pos_conv_kernel=int(c.get("num_conv_pos_embeddings", 128)),
            pos_conv_groups=int(c.get("num_conv_pos_embedding_groups", 16)),
            dropout=float(c.get("hidden_dropout", 0.1)),
            attention_dropout=float(c.get("attention_dropout", 0.1)),
            activation_dropout=float(c.get("activation_dropout", 0.0)),
            encoder_layerdrop=float(c.get("layerdrop", 0.0)),
            dropout_input=float(c.get("feat_proj_dropout", 0.0)),
            attention_relax=float(c.get("attention_relax", -1.0) or -1.0),
        )
    except KeyError as e:
        raise MertFormatError(f"{where}: missing field {e.args[0]!r}") from None
    except ValueError as e:
        raise MertFormatError(f"{where}: {e}") from None


def mert_to_hf_config(cfg: MertConfig) -> dict:
    """Our config → a MERT ``config.json`` dict (transformers HuBERT fields + MERT's own)."""
    d = ours_to_hf_config(cfg).to_dict()
    for k in ("transformers_version", "_name_or_path"):
        d.pop(k, None)
    d.update(
        model_type="mert_model", architectures=["MERTModel"], sample_rate=cfg.sample_rate,
        attention_relax=cfg.attention_relax, feature_extractor_cqt=False, feature_extractor_cqt_bins=336,
        conv_pos_batch_norm=False, deepnorm=False, feat_proj_layer_norm=True,
    )
    return d


def _normalise_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop a ``mert.`` / ``hubert.`` prefix and map legacy weight-norm names to parametrizations."""
    for prefix in ("mert.", "hubert."):
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    out = {}
    for k, v in state.items():
        k = k.replace("pos_conv_embed.conv.weight_g", "pos_conv_embed.conv.parametrizations.weight.original0")
        k = k.replace("pos_conv_embed.conv.weight_v", "pos_conv_embed.conv.parametrizations.weight.original1")
        out[k] = v
    return out


def hf_state_to_ours(state: dict[str, torch.Tensor], cfg: MertConfig, source: str | Path) -> dict[str, torch.Tensor]:
    """HF-named MERT weights → our :class:`MertModel` state dict (q/k/v fused); unknown keys refused."""
    state = _normalise_keys(state)
    out, used = {}, set()
    for ours, hf in hf_key_map(cfg).items():
        if hf in state:
            out[ours] = state[hf]
            used.add(hf)
    for i in range(cfg.num_layers):
        p = f"encoder.layers.{i}.attention"
        for kind in ("weight", "bias"):
            names = [f"{p}.{n}_proj.{kind}" for n in ("q", "k", "v")]
            missing = [n for n in names if n not in state]
            if missing:
                raise MertFormatError(f"{source}: missing weights {missing} (layer {i} attention)")
            out[f"encoder.layers.{i}.self_attn.qkv.{kind}"] = torch.cat([state[n] for n in names], dim=0)
            used.update(names)
    unexpected = sorted(set(state) - used)
    if unexpected:
        raise MertFormatError(
            f"{source}: weights this MERT config does not use: {unexpected[:10]}"
            + (f" ... ({len(unexpected)} in all)" if len(unexpected) > 10 else "")
        )
    return out


def ours_to_hf_state(model: MertModel) -> dict[str, torch.Tensor]:
    """Our encoder's state dict → HF ``HubertModel`` names (q/k/v split), contiguous CPU tensors."""
    cfg, sd = model.cfg, model.state_dict()
    new = {hf: sd[ours] for ours, hf in hf_key_map(cfg).items() if ours in sd}
    for i in range(cfg.num_layers):
        for kind in ("weight", "bias"):
            q, k, v = sd[f"encoder.layers.{i}.self_attn.qkv.{kind}"].chunk(3, dim=0)
            p = f"encoder.layers.{i}.attention"
            new.update({f"{p}.q_proj.{kind}": q, f"{p}.k_proj.{kind}": k, f"{p}.v_proj.{kind}": v})
    return {k: v.detach().to("cpu").contiguous() for k, v in new.items()}


def _read_weights(directory: Path) -> tuple[Path, dict[str, torch.Tensor]]:
    st, bin_ = directory / "model.safetensors", directory / "pytorch_model.bin"
    if st.is_file():
        return st, load_file(str(st))
    if bin_.is_file():
        try:
            state = torch.load(bin_, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001  (pickle errors come in many types)
            raise MertFormatError(f"{bin_}: cannot be read as plain tensors (weights_only=True): {e}") from None
        return bin_, state
    raise MertFormatError(f"{directory}: neither model.safetensors nor pytorch_model.bin found")


def load_mert_model(directory: str | Path) -> tuple[MertModel, bool]:
    """``(encoder in eval mode, do_normalize)`` from a released HF-format MERT directory."""
    directory = Path(directory)
    cfg_path = directory / "config.json"
    if not cfg_path.is_file():
        raise MertFormatError(f"{directory}: no config.json; 'mert:<dir>' needs a local HF-format MERT checkpoint")
    try:
        c = json.loads(cfg_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise MertFormatError(f"{cfg_path}: not valid JSON (line {e.lineno}): {e.msg}") from None
    if c.get("model_type") != "mert_model":
        raise MertFormatError(f"{cfg_path}: model_type is {c.get('model_type')!r}, expected 'mert_model' (for HuBERT use 'hf:{directory}')")
    cfg = hf_config_to_mert(c, cfg_path)
    path, state = _read_weights(directory)
    ours = hf_state_to_ours(state, cfg, path)
    with torch.device("meta"):
        model = MertModel(cfg)
    if "mask_emb" not in ours:  # HF drops masked_spec_embed when masking is off; unused for inference
        ours["mask_emb"] = torch.zeros(cfg.embed_dim)

    load_state_into(model, ours, path, what=f"the MERT config in {cfg_path}")
    pre = directory / "preprocessor_config.json"
    normalize = bool(json.loads(pre.read_text()).get("do_normalize", False)) if pre.is_file() else False
    return model.eval(), normalize


def export_mert(ckpt_dir: str | Path, out_dir: str | Path) -> Path:
    """Our MERT checkpoint directory → a released-format MERT directory (atomic: temp dir + rename)."""

    encoder = load_encoder(ckpt_dir)
    cfg = encoder.cfg
    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as tmp:
        save_file(ours_to_hf_state(encoder), str(tmp / "model.safetensors"), metadata={"format": "pt"})
        (tmp / "config.json").write_text(json.dumps(mert_to_hf_config(cfg), indent=2) + "\n", encoding="utf-8")
        pre = {
            "feature_extractor_type": "Wav2Vec2FeatureExtractor", "feature_size": 1, "padding_side": "right",
            "padding_value": 0.0, "return_attention_mask": True, "sampling_rate": cfg.sample_rate,
            "do_normalize": bool(cfg.normalize),
        }
        (tmp / "preprocessor_config.json").write_text(json.dumps(pre, indent=2) + "\n", encoding="utf-8")
    return out_dir
