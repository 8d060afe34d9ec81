"""BEATs (Chen et al., 2023) in plain torch: config, encoder ("upstream"), pretraining model, builders.

Data flow (microsoft/unilm ``beats/BEATs.py`` + ``backbone.py``)::

    wavs [B, S] ─beats_fbank─▶ fbank [B, Tf, 128] ─Conv2d 16×16/16─▶ patches [B, T·8, E]
        ─LN─▶ post_extract_proj ─▶ dropout_input ─▶ (pretraining: keep 25 % of the patches)
        ─▶ pos conv (+LN if post-LN) ─▶ layers with gated relative position bias ─▶ hidden states
    pretraining: encoded kept patches + mask tokens at masked positions ─▶ 3-layer predictor
        ─▶ logits [B, T·8, num_classes] ─▶ cross entropy on masked patches

Patch order (as BEATs): time-major, patch ``t * 8 + f`` covers fbank frames ``16t .. 16t+15`` and
mel bins ``16f .. 16f+15`` (``Conv2d`` + ``flatten``): the sequence is ``[B, T * 8, D]`` over ``T``
time steps at :attr:`BeatsModel.frame_rate` = 6.25 Hz; targets ``[B, T, 8]`` (``t * 8 + f`` ↔ ``[:, t, f]``).
Hidden states (``encoder_layers + 1`` × ``[B, T * 8, D]``): [0] is the input of layer 1 (projection
+ pos conv, + the encoder LN for post-LN), [i] the output of layer i; pre-LN: final LN on [-1].

Pretraining follows the BEATs paper (MAE-style, as ESPnet's port): 75 % of each item's valid patches
are dropped from the encoder input; the encoder sees the kept ones compacted in their original order
(so its pos conv and relative bias see compacted distances, as in ESPnet; the paper is silent), the
predictor sees the whole sequence with a learned mask token at the masked positions.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import ClassVar

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from audiossl.models.hubert.model import GradMultiply  # fairseq GradMultiply: identity forward, grad × scale
from audiossl.models.patch_frontend import NUM_MEL_BINS, SAMPLE_RATE, SHIFT, beats_fbank, num_patch_frames, patch_frame_lengths
from audiossl.models.rel_pos import (  # noqa: F401 (BeatsAttention, relative_position_bucket: shared; re-exported)
    ATTENTION_IMPLS, BeatsAttention, FlexInputs, attention_inputs, key_padding_block_mask, relative_bias_by_distance,
    relative_position_bucket, resolve_impl,
)
from audiossl.models.transformer import ConvPositionalEmbedding, layerdrop_keep
from audiossl.utils.config import DictConfig


@dataclass
class BeatsConfig(DictConfig):
    """Encoder fields mirror the unilm ``BEATsConfig`` option of the same name; defaults = BEATs_iter3."""
    family: ClassVar[str] = "beats"

    sample_rate: int = SAMPLE_RATE
    """Audio rate the fbank front end expects (BEATs: 16 kHz only)."""
    input_patch_size: int = 16
    """Patch side in fbank frames and mel bins (``input_patch_size``)."""
    embed_dim: int = 512
    """Patch embedding width (``embed_dim``)."""
    conv_bias: bool = False
    """Bias in the patch embedding Conv2d (``conv_bias``)."""
    encoder_layers: int = 12
    """Transformer layers (``encoder_layers``)."""
    encoder_embed_dim: int = 768
    """Transformer width (``encoder_embed_dim``)."""
    encoder_ffn_embed_dim: int = 3072
    """FFN inner width (``encoder_ffn_embed_dim``)."""
    encoder_attention_heads: int = 12
    """Attention heads (``encoder_attention_heads``)."""
    activation_fn: str = "gelu"
    """FFN activation (``activation_fn``); only ``gelu`` (what every released model uses)."""
    layer_norm_first: bool = False
    """Pre-LN blocks (``layer_norm_first``); cannot be combined with ``deep_norm``."""
    deep_norm: bool = True
    """DeepNorm residual scaling ``(2N)^(1/4)`` and init gain ``(8N)^(-1/4)`` (``deep_norm``)."""
    layer_wise_gradient_decay_ratio: float = 0.6
    """Gradient × this at every layer input, so lower layers learn slower (``layer_wise_gradient_decay_ratio``)."""
    dropout: float = 0.0
    """Residual / block dropout (``dropout``)."""
    attention_dropout: float = 0.0
    """Dropout on attention weights (``attention_dropout``)."""
    activation_dropout: float = 0.0
    """Dropout after the FFN activation (``activation_dropout``)."""
    encoder_layerdrop: float = 0.05
    """Probability of skipping a layer in training (``encoder_layerdrop``)."""
    dropout_input: float = 0.0
    """Dropout after the projection (``dropout_input``)."""
    conv_pos: int = 128
    """Positional conv kernel in patches (``conv_pos``)."""
    conv_pos_groups: int = 16
    """Positional conv groups (``conv_pos_groups``)."""
    relative_position_embedding: bool = True
    """WavLM-style bucketed relative position bias, shared by all layers (``relative_position_embedding``)."""
    num_buckets: int = 320
    """Relative position buckets (``num_buckets``)."""
    max_distance: int = 800
    """Distance (in patches) where the log-spaced buckets end (``max_distance``; BEATs_iter3: 800)."""
    gru_rel_pos: bool = True
    """Gate the relative bias per query and head (``gru_rel_pos``)."""
    attention_impl: str = "auto"
    """``eager`` (dense ``[B, H, T, T]`` bias into SDPA) | ``flex`` (compiled flex_attention, bias from a
    ``score_mod``, padding as a block mask) | ``auto``: flex on CUDA, eager on CPU (:mod:`audiossl.models.rel_pos`)."""
    # --- pretraining (not in the released BEATsConfig; the paper's settings) ---
    mask_prob: float = 0.75
    """Fraction of each item's valid patches hidden from the encoder."""
    num_classes: int = 1024
    """Codebook size of the acoustic tokenizer (targets in ``[0, num_classes)``)."""
    num_codebooks: int = 8
    """Codes per time step = frequency patches = ``128 / input_patch_size``."""
    predictor_layers: int = 3
    """Layers of the label predictor (a transformer over kept + mask-token patches); 3 as ESPnet's
    ``decoder_layers`` default (espnet2/beats/encoder.py); the paper does not give the depth."""
    predictor_embed_dim: int = 768
    """Predictor width."""
    predictor_ffn_embed_dim: int = 3072
    """Predictor FFN inner width."""
    label_smoothing: float = 0.1
    """Label smoothing of the masked-patch cross entropy (ESPnet's default; the paper does not say)."""

    def __post_init__(self) -> None:
        if self.sample_rate != SAMPLE_RATE:
            raise ValueError(f"sample_rate must be {SAMPLE_RATE} (the BEATs fbank is 16 kHz), got {self.sample_rate}")
        if NUM_MEL_BINS % self.input_patch_size or self.num_codebooks != NUM_MEL_BINS // self.input_patch_size:
            raise ValueError(
                f"num_codebooks must be {NUM_MEL_BINS} mel bins / input_patch_size {self.input_patch_size} = "
                f"{NUM_MEL_BINS // self.input_patch_size} (frequency patches per time step), got {self.num_codebooks}"
            )
        for what in ("encoder_embed_dim", "predictor_embed_dim"):
            if getattr(self, what) % self.encoder_attention_heads:
                raise ValueError(f"{what} {getattr(self, what)} is not divisible by encoder_attention_heads {self.encoder_attention_heads}")
        problems = [
            (self.encoder_embed_dim % self.conv_pos_groups != 0, f"encoder_embed_dim {self.encoder_embed_dim} is not divisible by conv_pos_groups {self.conv_pos_groups}"),
            (self.deep_norm and self.layer_norm_first, "deep_norm needs post-LN blocks: set layer_norm_first=False (as BEATs asserts)"),
            (self.activation_fn != "gelu", f"activation_fn {self.activation_fn!r} is not supported (only 'gelu')"),
            (self.attention_impl not in ATTENTION_IMPLS, f"attention_impl must be one of {ATTENTION_IMPLS}, got {self.attention_impl!r}"),
            (not 0.0 <= self.mask_prob < 1.0, f"mask_prob must be in [0, 1), got {self.mask_prob}"),
            (self.relative_position_embedding and (self.num_buckets < 4 or self.max_distance <= self.num_buckets // 4),
             f"need num_buckets >= 4 and max_distance > num_buckets / 4, got {self.num_buckets}, {self.max_distance}"),
        ]
        for bad, message in problems:
            if bad:
                raise ValueError(message)

    def to_dict(self) -> dict:
        return asdict(self)


class BeatsLayer(nn.Module):
    """unilm ``TransformerSentenceEncoderLayer``: post-LN with DeepNorm residual scale, or pre-LN."""

    def __init__(self, cfg: BeatsConfig, dim: int, ffn_dim: int, num_layers: int, *, has_bias_table: bool):
        super().__init__()
        self.self_attn = BeatsAttention(
            dim, cfg.encoder_attention_heads, cfg.attention_dropout, has_bias_table=has_bias_table,
            num_buckets=cfg.num_buckets, gru_rel_pos=cfg.relative_position_embedding and cfg.gru_rel_pos,
        )
        self.self_attn_layer_norm = nn.LayerNorm(dim)
        self.fc1, self.fc2 = nn.Linear(dim, ffn_dim), nn.Linear(ffn_dim, dim)
        self.final_layer_norm = nn.LayerNorm(dim)
        self.dropout, self.activation_dropout = nn.Dropout(cfg.dropout), nn.Dropout(cfg.activation_dropout)
        self.layer_norm_first = cfg.layer_norm_first
        self.alpha = (2.0 * num_layers) ** 0.25 if cfg.deep_norm else 1.0

    def _ffn(self, x: Tensor) -> Tensor:
        return self.dropout(self.fc2(self.activation_dropout(F.gelu(self.fc1(x)))))

    def forward(self, x: Tensor, key_mask: Tensor | None, pos_bias: Tensor | None, flex: FlexInputs | None = None) -> Tensor:
        """``x [B, T, D]`` → ``[B, T, D]``."""
        if self.layer_norm_first:
            x = x + self.dropout(self.self_attn(self.self_attn_layer_norm(x), key_mask, pos_bias, flex))
            return x + self._ffn(self.final_layer_norm(x))
        x = self.self_attn_layer_norm(x * self.alpha + self.dropout(self.self_attn(x, key_mask, pos_bias, flex)))
        return self.final_layer_norm(x * self.alpha + self._ffn(x))


def _init_layers(layers: nn.ModuleList, deep_norm: bool) -> None:
    """BERT init (N(0, 0.02), zero bias) as unilm's ``init_bert_params``, then DeepNorm's xavier gains."""
    for m in layers.modules():
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, mean=0.0, std=0.02)
            if isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)
    if deep_norm:
        beta = (8.0 * len(layers)) ** -0.25
        for layer in layers:
            a = layer.self_attn
            for lin, gain in ((a.k_proj, 1.0), (a.q_proj, 1.0), (a.v_proj, beta), (a.out_proj, beta), (layer.fc1, beta), (layer.fc2, beta)):
                nn.init.xavier_normal_(lin.weight, gain=gain)


def _attn_inputs(layers: nn.ModuleList, cfg: BeatsConfig, padding_mask: Tensor | None, t: int, device: torch.device):
    """``(key_mask, pos_bias, flex)`` for a stack (:func:`~audiossl.models.rel_pos.attention_inputs`), the
    bias table being layer 0's (shared by all layers)."""
    table = layers[0].self_attn.relative_attention_bias if cfg.relative_position_embedding else None
    return attention_inputs(table, cfg.num_buckets, cfg.max_distance, cfg.attention_impl, padding_mask, t, device)


class BeatsTransformer(nn.Module):
    """unilm ``TransformerEncoder``: pos conv → (LN if post-LN) → dropout → layers, every hidden state."""

    def __init__(self, cfg: BeatsConfig):
        super().__init__()
        self.cfg = cfg
        d = cfg.encoder_embed_dim
        self.pos_conv = ConvPositionalEmbedding(d, cfg.conv_pos, cfg.conv_pos_groups)
        self.layers = nn.ModuleList(
            BeatsLayer(cfg, d, cfg.encoder_ffn_embed_dim, cfg.encoder_layers, has_bias_table=cfg.relative_position_embedding and i == 0)
            for i in range(cfg.encoder_layers)
        )
        self.layer_norm = nn.LayerNorm(d)
        self.dropout = nn.Dropout(cfg.dropout)
        _init_layers(self.layers, cfg.deep_norm)
        self.layerdrop_generator: torch.Generator | None = None  # see models.transformer.seed_layerdrop

    @property
    def layerdrop(self) -> float:
        """LayerDrop probability in training (``encoder_layerdrop``)."""
        return self.cfg.encoder_layerdrop

    def forward(self, x: Tensor, padding_mask: Tensor | None = None, num_layers: int | None = None) -> list[Tensor]:
        """``x [B, T, D]`` (padding zeroed), ``padding_mask [B, T]`` (True = pad) → ``num_layers + 1`` × ``[B, T, D]``."""
        n = len(self.layers) if num_layers is None else num_layers
        if not 0 <= n <= len(self.layers):
            raise ValueError(f"num_layers must be in [0, {len(self.layers)}], got {n}")
        key_mask, pos_bias, flex = _attn_inputs(self.layers, self.cfg, padding_mask, x.shape[1], x.device)
        x = x + self.pos_conv(x)
        if not self.cfg.layer_norm_first:
            x = self.layer_norm(x)
        x = self.dropout(x)
        hidden = [x]
        ratio = self.cfg.layer_wise_gradient_decay_ratio
        keep = layerdrop_keep(len(self.layers), self.cfg.encoder_layerdrop if self.training else 0.0, self.layerdrop_generator)
        for layer, kept in zip(self.layers[:n], keep):
            if ratio != 1.0 and torch.is_grad_enabled():
                x = GradMultiply.apply(x, ratio)
            if kept:
                x = layer(x, key_mask, pos_bias, flex)
            hidden.append(x)
        if self.cfg.layer_norm_first and n == len(self.layers):
            hidden[-1] = self.layer_norm(hidden[-1])
        return hidden


@dataclass
class BeatsOutput:
    """Encoder output; ``P = T * num_codebooks`` patches (time-major), ``T`` = padded time steps."""

    hidden_states: list[Tensor]  # encoder_layers + 1 (or output_layers + 1) × [B, P, D]; see module docstring
    lengths: Tensor  # [B] valid time steps (valid patches = lengths * num_codebooks)
    padding_mask: Tensor  # [B, P] bool, True = padding


class BeatsModel(nn.Module):
    """The BEATs encoder: waveform → hidden states of every layer over the patch sequence."""

    family: ClassVar[str] = "beats"

    def __init__(self, cfg: BeatsConfig):
        super().__init__()
        self.cfg = cfg
        p = cfg.input_patch_size
        self.patch_embedding = nn.Conv2d(1, cfg.embed_dim, kernel_size=p, stride=p, bias=cfg.conv_bias)
        self.layer_norm = nn.LayerNorm(cfg.embed_dim)
        self.post_extract_proj = nn.Linear(cfg.embed_dim, cfg.encoder_embed_dim) if cfg.embed_dim != cfg.encoder_embed_dim else None
        self.dropout_input = nn.Dropout(cfg.dropout_input)
        self.encoder = BeatsTransformer(cfg)

    @property
    def frame_rate(self) -> float:
        """Time steps of patches per second (6.25 with 16 × 16 patches)."""
        return self.cfg.sample_rate / SHIFT / self.cfg.input_patch_size

    def num_frames(self, num_samples: int) -> int:
        """Time steps of patches for ``num_samples`` samples (0 below one patch, 2,800 samples)."""
        return num_patch_frames(int(num_samples), self.cfg.input_patch_size)

    def frame_lengths(self, lengths: Tensor) -> Tensor:
        """Valid time steps ``[B]`` for valid samples ``lengths [B]`` (same device)."""
        return patch_frame_lengths(lengths, self.cfg.input_patch_size)

    def patch_features(self, wavs: Tensor, lengths: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
        """``wavs [B, S]`` → ``(patches [B, P, embed_dim] after LN, step_lengths [B], padding_mask [B, P])``.

        ``P = num_frames(S) * num_codebooks``; an item's fbank is computed over its own samples only.
        """
        if wavs.ndim != 2:
            raise ValueError(f"wavs must be [batch, samples], got shape {list(wavs.shape)}")
        batch, num_samples = wavs.shape
        steps = self.num_frames(num_samples)
        if steps == 0:
            need = (self.cfg.input_patch_size - 1) * SHIFT + 400
            raise ValueError(f"input has {num_samples} samples, fewer than the {need} samples ({1000 * need / SAMPLE_RATE:.0f} ms) "
                             f"one {self.cfg.input_patch_size}-frame patch needs; drop or pad such utterances")
        fbank, _ = beats_fbank(wavs, lengths)  # [B, num_fbank_frames(S), 128]: at least need_frames
        need_frames = steps * self.cfg.input_patch_size
        x = self.patch_embedding(fbank[:, None, :need_frames].to(self.patch_embedding.weight.dtype))  # [B, E, T, F]
        x = self.layer_norm(x.flatten(2).transpose(1, 2))  # [B, T*F, E], time-major
        f = self.cfg.num_codebooks
        step_lengths = (torch.full((batch,), steps, dtype=torch.long, device=wavs.device) if lengths is None
                        else self.frame_lengths(lengths.to(wavs.device)))
        padding_mask = torch.arange(steps * f, device=wavs.device)[None, :] >= (step_lengths * f)[:, None]
        return x, step_lengths, padding_mask

    def encode(self, patches: Tensor, padding_mask: Tensor | None, output_layers: int | None = None) -> list[Tensor]:
        """``patches [B, P, embed_dim]`` → projection → transformer; ``padding_mask [B, P]`` or None."""
        x = self.dropout_input(patches if self.post_extract_proj is None else self.post_extract_proj(patches))
        if padding_mask is not None:
            x = x.masked_fill(padding_mask[..., None], 0.0)
        return self.encoder(x, padding_mask, output_layers)

    def forward(self, wavs: Tensor, lengths: Tensor | None = None, *, output_layers: int | None = None) -> BeatsOutput:
        """Encode ``wavs [B, S]`` (16 kHz; ``lengths [B]`` valid samples, None = unpadded) → :class:`BeatsOutput`."""
        x, step_lengths, padding_mask = self.patch_features(wavs, lengths)
        hidden = self.encode(x, padding_mask if lengths is not None else None, output_layers)
        return BeatsOutput(hidden, step_lengths, padding_mask)

    @property
    def num_hidden_states(self) -> int:
        return self.cfg.encoder_layers + 1

    @property
    def hidden_dim(self) -> int:
        return self.cfg.encoder_embed_dim

    def layer_states(self, wavs: Tensor, lengths: Tensor | None, max_layer: int | None = None) -> tuple[list[Tensor], Tensor]:
        """The :class:`audiossl.models.encoder.Encoder` protocol: each layer's ``[B, T * 8, D]`` patch
        sequence averaged over the 8 frequency patches of a time step → ``[B, T, D]`` at 6.25 Hz
        (as the BEATs authors pool patches for clip-level tasks)."""
        out = self(wavs, lengths, output_layers=max_layer)
        batch, f = wavs.shape[0], self.cfg.num_codebooks
        return [h.view(batch, -1, f, h.shape[-1]).mean(2) for h in out.hidden_states], out.lengths


@dataclass
class BeatsPretrainOutput:
    """Loss terms of one BEATs step; every field a tensor (no host sync)."""

    loss: Tensor  # scalar to backpropagate: label-smoothed CE per masked patch
    loss_masked: Tensor  # plain CE per masked patch (comparable across smoothing settings)
    correct_masked: Tensor  # masked labelled patches whose argmax is the target
    num_masked: Tensor  # masked, non-padded patches with a target
    logits: Tensor  # [B, P, num_classes] float32
    mask_indices: Tensor  # [B, P] bool, patches hidden from the encoder


def _f32(x: float) -> float:
    """``x`` rounded to the nearest float32 (ties to even), in plain Python: no tensor, so
    ``torch.compile`` folds it to a constant instead of breaking the graph at an ``.item()``."""
    if x == 0.0:
        return 0.0
    m, e = math.frexp(x)
    return math.ldexp(round(m * 2**24), e - 24)


def _kept_patches(num_patches: int, mask_prob: float) -> int:
    """``round((1 - mask_prob) * num_patches)`` with :func:`random_patch_mask`'s float32 numerics
    (the exact product of two float32 fits a double, so one rounding to float32 gives float32's
    product; Python's ``round`` ties to even as ``torch.round``)."""
    return round(_f32(_f32(float(num_patches)) * _f32(1.0 - mask_prob)))


def random_patch_mask(padding_mask: Tensor, mask_prob: float, generator: torch.Generator | None = None) -> Tensor:
    """``[B, P]`` bool mask of ``P - round((1 - mask_prob) * n)`` random patches among each item's ``n`` valid ones.

    Padding is never masked; on the device of ``padding_mask``, no host sync.
    """
    valid = ~padding_mask
    n_keep = torch.round(valid.sum(1).float() * (1.0 - mask_prob)).long()
    scores = torch.rand(padding_mask.shape, device=padding_mask.device, generator=generator).masked_fill(padding_mask, 2.0)
    rank = scores.argsort(dim=1).argsort(dim=1)
    return valid & (rank >= n_keep[:, None])


class BeatsPredictor(nn.Module):
    """Label predictor: encoded kept patches + mask tokens → transformer → LN → logits."""

    def __init__(self, cfg: BeatsConfig):
        super().__init__()
        self.cfg, d = cfg, cfg.predictor_embed_dim
        self.embed = nn.Linear(cfg.encoder_embed_dim, d)
        self.mask_token = nn.Parameter(torch.empty(d).normal_(std=0.02))
        self.layers = nn.ModuleList(
            BeatsLayer(cfg, d, cfg.predictor_ffn_embed_dim, cfg.predictor_layers, has_bias_table=cfg.relative_position_embedding and i == 0)
            for i in range(cfg.predictor_layers)
        )
        _init_layers(self.layers, cfg.deep_norm)
        self.layer_norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, cfg.num_classes)
        for lin in (self.embed, self.head):  # BERT init (init_bert_params), as ESPnet's predictor; not PyTorch's default
            nn.init.normal_(lin.weight, mean=0.0, std=0.02)
            nn.init.zeros_(lin.bias)

    def forward(self, encoded: Tensor, order: Tensor, kept_pad: Tensor | None, padding_mask: Tensor | None, num_patches: int | None = None) -> Tensor:
        """``encoded [B, K, D]`` of patches ``order [B, K]`` (``kept_pad [B, K]`` True = filler, None = none)
        → logits ``[B, P, C]``; ``padding_mask [B, P]``, or None for an unpadded batch (then ``num_patches`` = P)."""
        x = self.embed(encoded)
        token = self.mask_token.to(x.dtype)
        if kept_pad is not None:
            x = torch.where(kept_pad[..., None], token, x)
        p = padding_mask.shape[1] if padding_mask is not None else num_patches
        full = token.expand(x.shape[0], p, -1).contiguous()
        full = full.scatter(1, order[..., None].expand(-1, -1, x.shape[-1]), x)
        key_mask, pos_bias, flex = _attn_inputs(self.layers, self.cfg, padding_mask, full.shape[1], full.device)
        for layer in self.layers:
            full = layer(full, key_mask, pos_bias, flex)
        return self.head(self.layer_norm(full)).float()


class BeatsPretrainModel(nn.Module):
    """Encoder + label predictor: masked patch → acoustic-token prediction."""

    family: ClassVar[str] = "beats"

    def __init__(self, cfg: BeatsConfig):
        super().__init__()
        self.cfg, self.encoder, self.predictor = cfg, BeatsModel(cfg), BeatsPredictor(cfg)

    @property
    def frame_rate(self) -> float:
        return self.encoder.frame_rate

    def forward(
        self, wavs: Tensor, lengths: Tensor | None, targets: Tensor, *,
        mask_indices: Tensor | None = None, generator: torch.Generator | None = None,
    ) -> BeatsPretrainOutput:
        """One step. ``wavs [B, S]``; ``targets [B, T', num_codebooks]`` long (-100 = none; ``T'`` is
        truncated / padded to the model's ``T``); ``mask_indices [B, P]`` bool replaces the random mask."""
        cfg = self.cfg
        patches, _, padding_mask = self.encoder.patch_features(wavs, lengths)
        batch, num_patches, _ = patches.shape
        n_keep = None
        if mask_indices is None:
            mask_indices = random_patch_mask(padding_mask, cfg.mask_prob, generator)
            k_max = min(num_patches, int(num_patches * (1.0 - cfg.mask_prob)) + 1)  # bound from the shape: no sync
            if lengths is None:
                # Unpadded batch: every item keeps exactly n_keep patches, computed on the host as
                # random_patch_mask does on the device (float32 round), so the encoder and the
                # predictor run without any mask.
                n_keep = _kept_patches(num_patches, cfg.mask_prob)
                k_max = n_keep if n_keep > 0 else k_max
        elif mask_indices.shape != (batch, num_patches):
            raise ValueError(f"mask_indices must be [batch, patches] = {[batch, num_patches]}, got {list(mask_indices.shape)}")
        else:
            k_max = num_patches
        mask_indices = mask_indices & ~padding_mask
        kept = ~mask_indices & ~padding_mask
        pos = torch.arange(num_patches, device=wavs.device)
        order = torch.where(kept, pos, pos + num_patches).argsort(dim=1)[:, :k_max]  # kept first, in order
        if n_keep:
            kept_pad = None
        else:
            kept_pad = torch.arange(k_max, device=wavs.device)[None, :] >= kept.sum(1, keepdim=True)
        gathered = patches.gather(1, order[..., None].expand(-1, -1, patches.shape[-1]))
        encoded = self.encoder.encode(gathered, kept_pad)[-1]
        logits = self.predictor(encoded, order, kept_pad, padding_mask if lengths is not None else None, num_patches)  # [B, P, C]

        steps, targets = num_patches // cfg.num_codebooks, targets.to(wavs.device).long()
        if targets.ndim != 3 or targets.shape[0] != batch or targets.shape[2] != cfg.num_codebooks:
            raise ValueError(f"targets must be [batch, steps, {cfg.num_codebooks}], got {list(targets.shape)}")
        diff = steps - targets.shape[1]  # patch t*F+f ↔ targets[:, t, f]
        targets = (targets[:, :steps] if diff < 0 else F.pad(targets, (0, 0, 0, diff), value=-100)).reshape(batch, num_patches)
        sel = mask_indices & (targets >= 0)
        logp = logits.log_softmax(-1)
        nll = -logp.gather(-1, targets.clamp(min=0)[..., None])[..., 0]
        eps = cfg.label_smoothing
        smoothed = (1.0 - eps) * nll - eps * logp.mean(-1) if eps > 0 else nll
        num = sel.sum()
        denom = num.clamp(min=1)  # no host sync: an all-unlabelled batch gives loss 0
        correct = ((logits.argmax(-1) == targets) & sel).sum()
        return BeatsPretrainOutput((smoothed * sel).sum() / denom, (nll * sel).sum() / denom, correct, num, logits, mask_indices)


def beats_tiny(**overrides) -> BeatsConfig:
    """CPU-sized BEATs for tests and demo runs: 64-dim patches, 2 × 96-dim layers, 3 × 96-dim predictor."""
    cfg = BeatsConfig(
        embed_dim=64, encoder_layers=2, encoder_embed_dim=96, encoder_ffn_embed_dim=384, encoder_attention_heads=4,
        conv_pos=32, conv_pos_groups=4, encoder_layerdrop=0.0, layer_wise_gradient_decay_ratio=1.0,
        predictor_embed_dim=96, predictor_ffn_embed_dim=384,
    )
    return replace(cfg, **overrides)


def beats_base(**overrides) -> BeatsConfig:
    """The released BEATs_iter3 encoder (12 × 768, ~90 M params) + a 3-layer predictor."""
    return replace(BeatsConfig(), **overrides)


def build_beats(cfg: BeatsConfig) -> BeatsPretrainModel:
    """The pretraining model for ``cfg`` (use ``.encoder`` for the upstream)."""
    return BeatsPretrainModel(cfg)


CONFIGS = {"tiny": beats_tiny, "base": beats_base}
