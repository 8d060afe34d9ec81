"""WavLM (Chen et al., 2022) in plain torch: config, encoder ("upstream"), pretraining model, builders.

WavLM is HuBERT (same conv frontend, masking, loss on k-means units) with two changes:

* **gated relative position bias** in every attention layer (microsoft/unilm ``WavLM.py``): the bucket
  table ``[num_buckets, H]`` lives in layer 0 only and its bias ``[H, T, T]`` is shared by all layers;
  each layer gates it per query and head with ``g = a * (b * grep_a - 1) + 2``, ``(a, b)`` from
  ``sigmoid(grep_linear(x_h))`` where ``x_h`` is the layer's attention *input* split into heads (BEATs
  gates with the projected query instead: ``gate_from_input`` of
  :class:`~audiossl.models.rel_pos.BeatsAttention`). The maths and both attention paths (dense bias
  into SDPA, or flex_attention) are :mod:`audiossl.models.rel_pos`'s.
* **utterance mixing** in pretraining (:mod:`audiossl.models.wavlm.mixing`): part of some inputs is
  overlaid with a segment of another utterance of the batch (or noise); the targets stay the primary's.

Data flow::

    wavs [B, S] ─(training: utterance mixing)─▶ conv frontend ─▶ LN ─▶ Linear ─▶ dropout_input
        ─▶ mask_emb at masked frames ─▶ zero padding ─▶ pos conv (+LN if post-LN)
        ─▶ layers with gated relative bias ─▶ final_proj ─▶ cosine vs label_embs ─▶ CE (masked frames)

Hidden states follow HuBERT's convention (``num_layers + 1`` entries, [0] = input of the first layer,
pre-LN: final LN on [-1]); that is HF ``WavLMModel(output_hidden_states=True)``. LayerDrop may skip
any layer, layer 0 included, since the bias is computed once for the stack (HF never skips layer 0
because its layer 0 computes the bias).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import ClassVar

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from audiossl.models.hubert.model import HubertConfig, HubertModel, HubertPretrainModel, PretrainOutput
from audiossl.models.rel_pos import ATTENTION_IMPLS, BeatsAttention, FlexInputs, attention_inputs
from audiossl.models.transformer import ConvPositionalEmbedding, layerdrop_keep
from audiossl.models.wavlm.mixing import MixConfig, mix_utterances


@dataclass
class WavlmConfig(HubertConfig):
    """HuBERT's fields (same meaning, fairseq names in :class:`HubertConfig`) + relative bias + mixing."""

    family: ClassVar[str] = "wavlm"

    num_buckets: int = 320
    """Relative position buckets (unilm ``num_buckets``, HF ``num_buckets``)."""
    max_distance: int = 800
    """Distance in frames where the log-spaced buckets end (unilm ``max_distance``, HF ``max_bucket_distance``)."""
    gru_rel_pos: bool = True
    """Gate the bias per query and head (unilm ``gru_rel_pos``; every released WavLM has it)."""
    attention_impl: str = "auto"
    """``eager`` | ``flex`` | ``auto`` (flex on CUDA), as BEATs' (:mod:`audiossl.models.rel_pos`)."""
    mix_prob: float = 0.2
    """Probability per item of utterance mixing in training (paper: 0.2); 0 turns mixing off."""
    mix_max_ratio: float = 0.5
    """Longest mixed segment as a fraction of the primary's length (paper: up to 50 %)."""
    mix_noise_share: float = 0.0
    """Share of the mixed items that get Gaussian noise instead of another utterance (paper: DNS noise
    for part of them; with no noise corpus here the default mixes speech only)."""
    mix_energy_db: tuple[float, float] = (-5.0, 5.0)
    """Energy ratio primary / secondary in dB, drawn uniformly in this range (paper: [-5, 5])."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.mix_energy_db = tuple(float(v) for v in self.mix_energy_db)
        problems = [
            (self.attention_impl not in ATTENTION_IMPLS, f"attention_impl must be one of {ATTENTION_IMPLS}, got {self.attention_impl!r}"),
            (self.num_buckets < 4 or self.max_distance <= self.num_buckets // 4,
             f"need num_buckets >= 4 and max_distance > num_buckets / 4, got {self.num_buckets}, {self.max_distance}"),
            (not 0.0 <= self.mix_prob <= 1.0, f"mix_prob must be in [0, 1], got {self.mix_prob}"),
            (not 0.0 <= self.mix_max_ratio <= 1.0, f"mix_max_ratio must be in [0, 1], got {self.mix_max_ratio}"),
            (not 0.0 <= self.mix_noise_share <= 1.0, f"mix_noise_share must be in [0, 1], got {self.mix_noise_share}"),
            (len(self.mix_energy_db) != 2 or self.mix_energy_db[0] > self.mix_energy_db[1],
             f"mix_energy_db must be (low, high) with low <= high, got {self.mix_energy_db}"),
        ]
        for bad, message in problems:
            if bad:
                raise ValueError(message)

    def to_dict(self) -> dict:
        d = super().to_dict()
        d["mix_energy_db"] = list(self.mix_energy_db)
        return d

    @property
    def mix_config(self) -> MixConfig:
        return MixConfig(self.mix_prob, self.mix_max_ratio, self.mix_noise_share, self.mix_energy_db)


class WavlmLayer(nn.Module):
    """unilm WavLM ``TransformerSentenceEncoderLayer``; parameter names are unilm's (``self_attn.*``,
    ``fc1``, ``fc2``, ``self_attn_layer_norm``, ``final_layer_norm``).

    Post-LN: ``x = LN(x + drop(attn(x))); x = LN(x + drop(ffn(x)))``; pre-LN: ``x = x + drop(attn(LN(x)))`` ...
    """

    def __init__(self, cfg: WavlmConfig, *, has_bias_table: bool):
        super().__init__()
        d = cfg.embed_dim
        self.self_attn = BeatsAttention(d, cfg.num_heads, cfg.attention_dropout, has_bias_table=has_bias_table,
                                        num_buckets=cfg.num_buckets, gru_rel_pos=cfg.gru_rel_pos, gate_from_input=True)
        self.self_attn_layer_norm = nn.LayerNorm(d)
        self.fc1, self.fc2 = nn.Linear(d, cfg.ffn_dim), nn.Linear(cfg.ffn_dim, d)
        self.final_layer_norm = nn.LayerNorm(d)
        self.dropout, self.activation_dropout = nn.Dropout(cfg.dropout), nn.Dropout(cfg.activation_dropout)
        self.layer_norm_first = cfg.layer_norm_first

    def _ffn(self, x: Tensor) -> Tensor:
        return self.dropout(self.fc2(self.activation_dropout(F.gelu(self.fc1(x)))))

    def forward(self, x: Tensor, key_mask: Tensor | None, pos_bias: Tensor | None, flex: FlexInputs | None = None) -> Tensor:
        """``x [B, T, D]`` → ``[B, T, D]``; ``key_mask [B, 1, 1, T]``, ``pos_bias [H, T, T]`` / ``flex``: shared inputs."""
        if self.layer_norm_first:
            x = x + self.dropout(self.self_attn(self.self_attn_layer_norm(x), key_mask, pos_bias, flex))
            return x + self._ffn(self.final_layer_norm(x))
        x = self.self_attn_layer_norm(x + self.dropout(self.self_attn(x, key_mask, pos_bias, flex)))
        return self.final_layer_norm(x + self._ffn(x))


class WavlmTransformer(nn.Module):
    """Positional conv → (LN if post-LN) → dropout → :class:`WavlmLayer` stack; every hidden state.

    Same call as :class:`audiossl.models.transformer.TransformerEncoder` (so :class:`HubertModel` runs it).
    """

    def __init__(self, cfg: WavlmConfig):
        super().__init__()
        self.cfg = cfg
        self.pos_conv = ConvPositionalEmbedding(cfg.embed_dim, cfg.pos_conv_kernel, cfg.pos_conv_groups)
        self.layer_norm = nn.LayerNorm(cfg.embed_dim)
        self.dropout = nn.Dropout(cfg.dropout)
        self.layers = nn.ModuleList(WavlmLayer(cfg, has_bias_table=i == 0) for i in range(cfg.num_layers))
        self.layer_norm_first = cfg.layer_norm_first
        self.layerdrop = cfg.encoder_layerdrop
        self.layerdrop_generator: torch.Generator | None = None  # see models.transformer.seed_layerdrop
        for m in self.layers.modules():  # unilm init_bert_params: N(0, 0.02), zero bias (grep_a stays 1)
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, mean=0.0, std=0.02)
                if isinstance(m, nn.Linear):
                    nn.init.zeros_(m.bias)

    def forward(self, x: Tensor, padding_mask: Tensor | None = None, num_layers: int | None = None) -> list[Tensor]:
        """``x [B, T, D]`` (padding zeroed), ``padding_mask [B, T]`` (True = pad, None = unpadded) →
        ``num_layers + 1`` × ``[B, T, D]`` (see the module docstring)."""
        n = len(self.layers) if num_layers is None else num_layers
        if not 0 <= n <= len(self.layers):
            raise ValueError(f"num_layers must be in [0, {len(self.layers)}], got {n}")
        cfg = self.cfg
        table = self.layers[0].self_attn.relative_attention_bias if len(self.layers) else None
        key_mask, pos_bias, flex = attention_inputs(table, cfg.num_buckets, cfg.max_distance, cfg.attention_impl,
                                                    padding_mask, x.shape[1], x.device)
        x = x + self.pos_conv(x)
        if not self.layer_norm_first:
            x = self.layer_norm(x)
        x = self.dropout(x)
        hidden = [x]
        keep = layerdrop_keep(len(self.layers), self.layerdrop if self.training else 0.0, self.layerdrop_generator)
        for layer, kept in zip(self.layers[:n], keep):
            if kept:
                x = layer(x, key_mask, pos_bias, flex)
            hidden.append(x)
        if self.layer_norm_first and n == len(self.layers):
            hidden[-1] = self.layer_norm(hidden[-1])
        return hidden


class WavlmModel(HubertModel):
    """The WavLM encoder: HuBERT's front end and interface (``frame_rate``, ``num_frames``,
    ``frame_lengths``, ``layer_states``, ``forward(wavs, lengths, mask_indices=, output_layers=)``)
    over a :class:`WavlmTransformer`."""

    family: ClassVar[str] = "wavlm"

    def build_transformer(self, cfg: WavlmConfig) -> WavlmTransformer:
        return WavlmTransformer(cfg)


class WavlmPretrainModel(HubertPretrainModel):
    """:class:`WavlmModel` + HuBERT's head and loss; in training the input is utterance-mixed first."""

    family: ClassVar[str] = "wavlm"

    def __init__(self, cfg: WavlmConfig):
        nn.Module.__init__(self)
        self.cfg = cfg
        self.encoder = WavlmModel(cfg)
        self.final_proj = nn.Linear(cfg.embed_dim, cfg.final_dim)
        self.label_embs = nn.Parameter(torch.empty(cfg.num_classes, cfg.final_dim).uniform_())

    def forward(self, wavs: Tensor, lengths: Tensor | None, targets: Tensor, *, mask_indices: Tensor | None = None,
                generator: torch.Generator | None = None) -> PretrainOutput:
        """:meth:`HubertPretrainModel.forward` on the mixed input (training only; ``targets`` unchanged:
        they are the primary utterance's units)."""
        if self.training and self.cfg.mix_prob > 0:
            wavs = mix_utterances(wavs, lengths, self.cfg.mix_config, generator=generator).wavs
        return super().forward(wavs, lengths, targets, mask_indices=mask_indices, generator=generator)


def wavlm_tiny(**overrides) -> WavlmConfig:
    """CPU-sized WavLM for tests and demo runs: 64-channel conv, 2 × 128-dim layers (as ``hubert_tiny``)."""
    cfg = WavlmConfig(
        conv_layers=((64, 10, 5),) + ((64, 3, 2),) * 4 + ((64, 2, 2),) * 2,
        embed_dim=128, num_layers=2, num_heads=2, ffn_dim=512, pos_conv_kernel=32, pos_conv_groups=8,
        encoder_layerdrop=0.0, final_dim=64, num_classes=100,
    )
    return replace(cfg, **overrides)


def wavlm_base(**overrides) -> WavlmConfig:
    """WavLM Base (unilm ``WavLM-Base.pt``, HF ``microsoft/wavlm-base``): HuBERT Base + gated relative bias, post-LN."""
    return replace(WavlmConfig(), **overrides)


def wavlm_base_plus(**overrides) -> WavlmConfig:
    """WavLM Base+ (``microsoft/wavlm-base-plus``): Base's architecture, trained on 94k h with mixing."""
    return replace(WavlmConfig(), **overrides)


def wavlm_large(**overrides) -> WavlmConfig:
    """WavLM Large (``microsoft/wavlm-large``): 24 × 1024, pre-LN, layer-norm front end without conv bias (as the
    released config); the pretraining dropouts are HuBERT Large's (the paper does not list them)."""
    cfg = WavlmConfig(
        extractor_mode="layer_norm", conv_bias=False, embed_dim=1024, num_layers=24, num_heads=16, ffn_dim=4096,
        layer_norm_first=True, dropout=0.0, attention_dropout=0.0, encoder_layerdrop=0.0, dropout_input=0.0,
        dropout_features=0.0, feature_grad_mult=1.0, final_dim=768,
    )
    return replace(cfg, **overrides)


def build_wavlm(cfg: WavlmConfig) -> WavlmPretrainModel:
    """The pretraining model for ``cfg`` (use ``.encoder`` for the upstream)."""
    return WavlmPretrainModel(cfg)


CONFIGS = {"tiny": wavlm_tiny, "base": wavlm_base, "base_plus": wavlm_base_plus, "large": wavlm_large}
