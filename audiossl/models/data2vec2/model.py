"""data2vec 2.0 audio (Baevski et al., 2022): config, builders and the encoder ("upstream").

The encoder is the data2vec audio encoder (fairseq ``examples/data2vec/models/modalities/audio.py``;
the same maths as ``transformers.Data2VecAudioModel`` when ALiBi is off)::

    wavs [B, S] ─conv frontend (layer_norm mode)─▶ [B, T, C] ─LN─▶ Linear ─▶ x [B, T, D] (padding zeroed)
        ─▶ x + StackedConvPositionalEncoder(x) ─▶ LN ─▶ dropout ─▶ post-LN layers (+ ALiBi bias)

Hidden-state convention (``num_layers + 1`` entries, as HF ``output_hidden_states``): [0] is the
input of the first layer (after pos conv and LN), [i] the output of layer i.

The student of the pretraining model (:mod:`audiossl.models.data2vec2.pretrain`) runs the same
:class:`ContextEncoder` on the kept frames only (``ids_keep``); the EMA teacher is a copy of the
:class:`ContextEncoder` (pos conv, LN, layers, ALiBi scales) fed with the student's local features
(fairseq ``ema_encoder_only=false, ema_local_encoder=false``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import Tensor, nn

from audiossl.models.conv_frontend import ConvFrameGeometry, ConvFrontend, fairseq_init
from audiossl.models.encoder_config import ConvEncoderConfig
from audiossl.models.conv_pos import StackedConvPositionalEncoder
from audiossl.models.data2vec2.alibi import alibi_bias, alibi_slopes, attention_bias
from audiossl.models.data2vec2.attention import AlibiFlex, alibi_flex_inputs, self_attention
from audiossl.models.rel_pos import ATTENTION_IMPLS, resolve_impl
from audiossl.models.transformer import EncoderLayer, layerdrop_keep



@dataclass
class Data2Vec2Config(ConvEncoderConfig):
    """Fields mirror fairseq ``Data2VecMultiConfig`` / ``D2vAudioConfig`` (named in each docstring);
    defaults are ``examples/data2vec/config/v2/base_audio_only_task.yaml``. The encoder's fields are
    those of :class:`~audiossl.models.encoder_config.ConvEncoderConfig` (fairseq data2vec names:
    ``feature_encoder_spec`` = ``conv_layers``, ``depth`` = ``num_layers``, ``embed_dim * mlp_ratio`` =
    ``ffn_dim``, ``encoder_dropout`` = ``dropout``, ``layerdrop`` = ``encoder_layerdrop``)."""

    family = "data2vec2"  # class attribute, not a field

    normalize: bool = True
    """Zero-mean / unit-variance waveform per utterance (task ``normalize: true``)."""
    extractor_mode: str = "layer_norm"
    """Conv frontend norm (``extractor_mode``; data2vec audio uses ``layer_norm``)."""
    pos_conv_depth: int = 5
    """Positional conv blocks (``conv_pos_depth``)."""
    pos_conv_kernel: int = 19
    """Kernel of each block (``max(3, conv_pos_width // conv_pos_depth)`` = 95 // 5)."""
    use_alibi: bool = True
    """ALiBi attention biases with a learned per-head scale (``use_alibi_encoder``,
    ``learned_alibi_scale_per_head``). Off = exactly ``transformers.Data2VecAudioModel``."""
    attention_impl: str = "auto"
    """How the ALiBi attention runs (not in fairseq): ``eager`` (a dense float ``[B, H, T, T]`` bias as the SDPA
    mask) | ``flex`` (flex_attention with the bias as a ``score_mod`` and key padding as a block mask: nothing
    quadratic in ``T``; :mod:`audiossl.models.data2vec2.attention`) | ``auto``: flex on CUDA, eager elsewhere
    (:func:`audiossl.models.rel_pos.resolve_impl`). flex has no attention dropout, so a stack in training with
    ``attention_dropout > 0`` runs eager; without ALiBi the attention is always eager (a bool key-padding mask)."""
    context_dropout: float = 0.1
    """Dropout after the encoder LayerNorm (``prenet_dropout``)."""
    clone_batch: int = 8
    """Masked copies of each item per teacher pass (``clone_batch``)."""
    mask_prob: float = 0.5
    """Span-start probability × span length (``mask_prob``)."""
    mask_length: int = 5
    """Span length in frames (``mask_length``)."""
    inverse_mask: bool = False
    """The spans are the *kept* frames (``inverse_mask``; false for audio in the paper's config)."""
    mask_noise_std: float = 0.01
    """Std of the Gaussian mask tokens the decoder gets (``mask_noise_std``)."""
    average_top_k_layers: int = 8
    """Teacher layers averaged into the target (``average_top_k_layers``)."""
    ema_decay: float = 0.999
    """Teacher EMA decay at the start (``ema_decay``)."""
    ema_end_decay: float = 0.99999
    """Teacher EMA decay after the anneal (``ema_end_decay``)."""
    ema_anneal_end_step: int = 75000
    """Updates over which the decay goes linearly from start to end (``ema_anneal_end_step``)."""
    decoder_dim: int = 384
    """Decoder width (``decoder.decoder_dim``)."""
    decoder_kernel: int = 7
    """Decoder conv kernel (``decoder.decoder_kernel``)."""
    decoder_groups: int = 16
    """Decoder conv groups (``decoder.decoder_groups``)."""
    decoder_layers: int = 4
    """Decoder conv blocks (``decoder.decoder_layers``)."""
    decoder_input_dropout: float = 0.1
    """Dropout on the student output before the decoder (``decoder.input_dropout``)."""
    loss_scale: float | None = None
    """Scale of the L2 loss; None = ``1 / sqrt(embed_dim)`` (``loss_scale``)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        for dim, groups in ((self.embed_dim, self.decoder_groups), (self.decoder_dim, self.decoder_groups)):
            if dim % groups:
                raise ValueError(f"{dim} is not divisible by decoder_groups={groups}")
        if self.attention_impl not in ATTENTION_IMPLS:
            raise ValueError(f"attention_impl must be one of {ATTENTION_IMPLS}, got {self.attention_impl!r}")
        if not 1 <= self.average_top_k_layers <= self.num_layers:
            raise ValueError(f"average_top_k_layers={self.average_top_k_layers} must be in [1, num_layers={self.num_layers}]")
        if self.clone_batch < 1:
            raise ValueError(f"clone_batch must be >= 1, got {self.clone_batch}")
        if not 0.0 < self.mask_prob < 1.0:
            raise ValueError(f"mask_prob must be in (0, 1), got {self.mask_prob}")
        if not 0.0 <= self.ema_decay <= self.ema_end_decay <= 1.0:
            raise ValueError(f"need 0 <= ema_decay ({self.ema_decay}) <= ema_end_decay ({self.ema_end_decay}) <= 1")


@dataclass
class Data2Vec2Output:
    """Encoder output. ``T`` = padded frame count."""

    hidden_states: list[Tensor]
    """``num_layers + 1`` (or ``output_layers + 1``) tensors ``[B, T, D]``."""
    lengths: Tensor
    """``[B]`` valid frames per item."""
    padding_mask: Tensor | None
    """``[B, T]`` bool, True = padding; None when nothing is padded."""


def layer_forward(layer: EncoderLayer, x: Tensor, mask: Tensor | None, flex: AlibiFlex | None = None) -> tuple[Tensor, Tensor]:
    """A post-LN :class:`EncoderLayer` that also returns its FFN output (fairseq ``AltBlock``: the
    data2vec 2.0 target of a layer is the FFN output before the residual and the final LN).

    ``x [B, T, D]``, ``mask``: an SDPA mask (:func:`~audiossl.models.data2vec2.alibi.attention_bias`);
    ``flex``: run the attention through flex_attention instead (``mask`` unused).
    Returns ``(block output, FFN output)``, both ``[B, T, D]``.
    """
    h = layer.self_attn_layer_norm(x + layer.dropout(self_attention(layer.self_attn, x, mask, flex)))
    f = layer.ffn(h)
    return layer.final_layer_norm(h + layer.dropout(f)), f


class ContextEncoder(nn.Module):
    """Positional conv → LN → dropout → post-LN layers, on all frames or on the kept frames only."""

    def __init__(self, cfg: Data2Vec2Config):
        super().__init__()
        d = cfg.embed_dim
        self.pos_conv = StackedConvPositionalEncoder(d, cfg.pos_conv_depth, cfg.pos_conv_kernel, cfg.pos_conv_groups)
        self.layer_norm = nn.LayerNorm(d)
        self.dropout = nn.Dropout(cfg.context_dropout)
        self.layers = nn.ModuleList(
            EncoderLayer(d, cfg.num_heads, cfg.ffn_dim, cfg.dropout, cfg.attention_dropout, cfg.activation_dropout, False)
            for _ in range(cfg.num_layers)
        )
        self.alibi_scale: nn.Parameter | None = None
        if cfg.use_alibi:
            self.alibi_scale = nn.Parameter(torch.ones(cfg.num_heads))
            self.register_buffer("alibi_slopes", torch.tensor(alibi_slopes(cfg.num_heads), dtype=torch.float32))
        self.attention_impl, self.attention_dropout = cfg.attention_impl, cfg.attention_dropout
        self.layerdrop = cfg.encoder_layerdrop
        self.layerdrop_generator: torch.Generator | None = None  # see audiossl.models.transformer.seed_layerdrop

    def uses_flex(self, device: torch.device) -> bool:
        """ALiBi through flex_attention (see ``Data2Vec2Config.attention_impl``): ALiBi on, the impl resolves
        to flex on ``device``, and no attention dropout (eval or ``attention_dropout == 0``)."""
        dropout = self.attention_dropout if self.training else 0.0
        return self.alibi_scale is not None and resolve_impl(self.attention_impl, device) == "flex" and dropout == 0

    def attention_inputs(self, x: Tensor, padding_mask: Tensor | None, ids_keep: Tensor | None) -> tuple[Tensor | None, AlibiFlex | None]:
        """``(eager SDPA mask, None)`` or ``(None, flex inputs)`` for ``x [B, K, D]`` (``padding_mask [B, K]``
        already gathered; ``ids_keep [B, K]`` the frames' positions, None = ``0 .. K-1``)."""
        if self.uses_flex(x.device):
            return None, alibi_flex_inputs(ids_keep, self.alibi_slopes, self.alibi_scale, padding_mask)
        bias = None
        if self.alibi_scale is not None:
            positions = ids_keep if ids_keep is not None else torch.arange(x.shape[1], device=x.device)[None, :]
            bias = alibi_bias(positions, self.alibi_slopes, self.alibi_scale)
        dtype = torch.get_autocast_dtype(x.device.type) if torch.is_autocast_enabled(x.device.type) else x.dtype
        return attention_bias(bias, padding_mask, dtype), None

    def forward(
        self,
        x: Tensor,
        padding_mask: Tensor | None = None,
        *,
        ids_keep: Tensor | None = None,
        num_layers: int | None = None,
        ffn_outputs: bool = False,
    ) -> tuple[list[Tensor], list[Tensor]]:
        """Run the stack.

        Args:
            x: ``[B, T, D]`` local features, padding (and masked frames) zeroed.
            padding_mask: ``[B, T]`` bool, True = padding; None = nothing padded.
            ids_keep: ``[B, K]`` frames to keep after the positional conv (the student); None = all.
            num_layers: stop after this many layers (default: all).
            ffn_outputs: also return each layer's FFN output (the teacher's targets).
        Returns:
            ``(hidden, ffn)``: ``n + 1`` tensors ``[B, K or T, D]`` ([0] = input of layer 1), and ``n``
            FFN outputs (empty unless ``ffn_outputs``).
        """
        n = len(self.layers) if num_layers is None else num_layers
        if not 0 <= n <= len(self.layers):
            raise ValueError(f"num_layers must be in [0, {len(self.layers)}], got {n}")
        x = x + self.pos_conv(x, padding_mask)
        if ids_keep is not None:
            x = x.gather(1, ids_keep[..., None].expand(-1, -1, x.shape[-1]))
            if padding_mask is not None:
                padding_mask = padding_mask.gather(1, ids_keep)
        x = self.dropout(self.layer_norm(x))
        mask, flex = self.attention_inputs(x, padding_mask, ids_keep)
        hidden, ffn = [x], []
        keep = layerdrop_keep(len(self.layers), self.layerdrop if self.training else 0.0, self.layerdrop_generator)
        for layer, kept in zip(self.layers[:n], keep):
            if kept:
                x, f = layer_forward(layer, x, mask, flex)
                if ffn_outputs:
                    ffn.append(f)
            elif ffn_outputs:
                ffn.append(torch.zeros_like(x))
            hidden.append(x)
        return hidden, ffn


class Data2Vec2Model(ConvFrameGeometry, nn.Module):
    """The data2vec 2.0 audio encoder (the student's weights): waveform → hidden states of every layer."""

    def __init__(self, cfg: Data2Vec2Config):
        super().__init__()
        self.cfg = cfg
        self.frontend = ConvFrontend(cfg.conv_layers, cfg.extractor_mode, cfg.conv_bias)
        self.layer_norm = nn.LayerNorm(self.frontend.out_dim)
        self.post_extract_proj = nn.Linear(self.frontend.out_dim, cfg.embed_dim)
        self.context = ContextEncoder(cfg)
        fairseq_init(self.frontend, self.context.layers)

    @property
    def num_hidden_states(self) -> int:
        return self.cfg.num_layers + 1

    @property
    def hidden_dim(self) -> int:
        return self.cfg.embed_dim

    def local_features(self, wavs: Tensor, lengths: Tensor | None) -> tuple[Tensor, Tensor, Tensor | None]:
        """``wavs [B, S]`` → (projected features ``[B, T, D]`` with padding zeroed, valid frames ``[B]``,
        padding mask ``[B, T]`` or None when ``lengths`` is None)."""
        if wavs.ndim != 2:
            raise ValueError(f"wavs must be [batch, samples], got shape {list(wavs.shape)}")
        batch, num_samples = wavs.shape
        num_frames = self.num_frames(num_samples)
        if num_frames == 0:
            raise ValueError(
                f"input has {num_samples} samples, fewer than the {self.receptive_field}-sample receptive field of the "
                f"conv frontend, so it yields no frame; drop or pad such utterances"
            )
        x = self.post_extract_proj(self.layer_norm(self.frontend(wavs, lengths)))
        if lengths is None:
            return x, torch.full((batch,), num_frames, device=wavs.device, dtype=torch.long), None
        frame_lengths = self.frame_lengths(lengths.to(wavs.device))
        padding_mask = torch.arange(num_frames, device=wavs.device)[None, :] >= frame_lengths[:, None]
        return x.masked_fill(padding_mask[..., None], 0.0), frame_lengths, padding_mask

    def layer_states(self, wavs: Tensor, lengths: Tensor | None, max_layer: int | None = None) -> tuple[list[Tensor], Tensor]:
        """The :class:`audiossl.models.encoder.Encoder` protocol: hidden states ``[B, T, D]`` up to ``max_layer``."""
        out = self(wavs, lengths, output_layers=max_layer)
        return list(out.hidden_states), out.lengths

    def forward(self, wavs: Tensor, lengths: Tensor | None = None, *, output_layers: int | None = None) -> Data2Vec2Output:
        """Encode ``wavs [B, S]`` (``lengths [B]`` valid samples; None = unpadded, the mask-free path).

        The waveform is taken as given; ``cfg.normalize`` is applied by the upstream wrapper and the
        pretraining model."""
        x, frame_lengths, padding_mask = self.local_features(wavs, lengths)
        hidden, _ = self.context(x, padding_mask, num_layers=output_layers)
        return Data2Vec2Output(hidden, frame_lengths, padding_mask)


def data2vec2_tiny(**overrides) -> Data2Vec2Config:
    """CPU-sized data2vec 2.0 for tests and demo runs: 64-channel conv, 3 × 128-dim layers, 2 copies."""
    cfg = Data2Vec2Config(
        conv_layers=((64, 10, 5),) + ((64, 3, 2),) * 4 + ((64, 2, 2),) * 2,
        embed_dim=128, num_layers=3, num_heads=4, ffn_dim=256,
        pos_conv_depth=2, pos_conv_kernel=5, pos_conv_groups=8,
        encoder_layerdrop=0.0, clone_batch=2, average_top_k_layers=2,
        decoder_dim=64, decoder_kernel=5, decoder_groups=8, decoder_layers=2,
        ema_anneal_end_step=1000,
    )
    return replace(cfg, **overrides)


def data2vec2_base(**overrides) -> Data2Vec2Config:
    """fairseq ``base_audio_only_task`` (93 M encoder parameters)."""
    return replace(Data2Vec2Config(), **overrides)


def data2vec2_large(**overrides) -> Data2Vec2Config:
    """fairseq ``large_audio_only_task``: 8 prenet + 16 main post-LN layers (24 in all), 12 copies."""
    cfg = Data2Vec2Config(
        embed_dim=1024, num_layers=24, num_heads=16, ffn_dim=4096, encoder_layerdrop=0.0, clone_batch=12,
        mask_prob=0.55, average_top_k_layers=16, ema_decay=0.9997, ema_end_decay=1.0, ema_anneal_end_step=300000,
        decoder_dim=768,
    )
    return replace(cfg, **overrides)


CONFIGS = {"tiny": data2vec2_tiny, "base": data2vec2_base, "large": data2vec2_large}
