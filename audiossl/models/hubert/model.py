"""HuBERT (Hsu et al., 2021) in plain torch: config, encoder ("upstream"), pretraining model, builders.

Data flow (fairseq ``HubertModel``)::

    wavs [B, S] ─conv frontend─▶ features [B, T, C] ─LN─▶ Linear ─▶ dropout_input
        ─▶ mask_emb at masked frames ─▶ zero padding ─▶ pos conv (+LN if post-LN) ─▶ layers
        ─▶ final_proj ─▶ cosine vs label_embs / logit_temp ─▶ cross entropy (masked frames)

Hidden-state convention (``HubertOutput.hidden_states``, ``num_layers + 1`` entries): [0] is the
input of the first transformer layer (projection + pos conv, and the encoder LayerNorm for post-LN
Base), [i] is the output of layer i; for pre-LN (Large/XLarge) the final LayerNorm is applied to
[-1]. This matches HF ``output_hidden_states`` and s3prl's layer numbering.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from audiossl.models.conv_frontend import ConvFrameGeometry, ConvFrontend, fairseq_init
from audiossl.models.encoder_config import ConvEncoderConfig
from audiossl.models.masking import compute_span_mask
from audiossl.models.transformer import TransformerEncoder



@dataclass
class HubertConfig(ConvEncoderConfig):
    """Every field mirrors the fairseq ``HubertConfig`` option named in its docstring; the encoder's
    fields are those of :class:`~audiossl.models.encoder_config.ConvEncoderConfig`."""

    layer_norm_first: bool = False
    """Pre-LN blocks (``layer_norm_first``); False = post-LN (Base)."""
    dropout_input: float = 0.1
    """Dropout after the feature projection (``dropout_input``)."""
    dropout_features: float = 0.1
    """fairseq ``dropout_features``: kept for config compatibility; HuBERT's loss never reads the
    unmasked features it applies to, so it has no effect here."""
    feature_grad_mult: float = 0.1
    """Gradient scale into the conv frontend (``feature_grad_mult``); 0 freezes it."""
    mask_prob: float = 0.8
    """Span-start probability × span length (``mask_prob``)."""
    mask_length: int = 10
    """Span length in frames (``mask_length``)."""
    min_masks: int = 2
    """Minimum spans per utterance (fairseq ``compute_mask_indices(min_masks=2)``)."""
    final_dim: int = 256
    """Projection width for the logits (``final_dim``)."""
    logit_temp: float = 0.1
    """Cosine-similarity temperature (``logit_temp``)."""
    num_classes: int = 500
    """Label vocabulary size (the task's dictionary size, e.g. k-means clusters)."""
    pred_masked_weight: float = 1.0
    """Weight of the masked-frame loss (criterion ``pred_masked_weight``)."""
    pred_nomask_weight: float = 0.0
    """Weight of the unmasked-frame loss (criterion ``pred_nomask_weight``)."""
    feature_pen_weight: float = 10.0
    """Weight of the feature L2 penalty (criterion ``loss_weights=[10]``)."""
    skip_masked: bool = False
    """Do not compute the masked loss (``skip_masked``)."""
    skip_nomask: bool = False
    """Do not compute the unmasked loss (``skip_nomask``); it is also skipped when its weight is 0."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.feature_grad_mult < 0:
            raise ValueError(f"feature_grad_mult must be >= 0, got {self.feature_grad_mult}")


@dataclass
class HubertOutput:
    """Encoder output. ``T`` = padded frame count."""

    hidden_states: list[Tensor]
    """``num_layers + 1`` (or ``output_layers + 1``) tensors ``[B, T, D]``; see module docstring."""
    lengths: Tensor
    """``[B]`` valid frames per item."""
    padding_mask: Tensor
    """``[B, T]`` bool, True = padding."""
    features: Tensor
    """``[B, T, C]`` conv frontend output before LN/projection (feature penalty input)."""


@dataclass
class PretrainOutput:
    """Loss terms of one HuBERT step; every field is a tensor (no host sync).

    ``loss = (pred_masked_weight * CE_sum_masked + pred_nomask_weight * CE_sum_unmasked) / sample_size
    + feature_pen_weight * feature_pen`` with ``sample_size`` = masked frames (unmasked frames when
    the masked weight is 0). That is fairseq's ``hubert`` criterion loss divided by its sample size,
    i.e. the quantity fairseq actually optimises after its gradient normalisation.
    """

    loss: Tensor
    """Scalar to backpropagate."""
    loss_masked: Tensor
    """Mean CE per masked frame (0 when skipped)."""
    loss_unmasked: Tensor
    """Mean CE per unmasked frame (0 when skipped / weight 0)."""
    feature_pen: Tensor
    """Mean of squared conv features over non-padded frames."""
    num_masked: Tensor
    """Masked, non-padded frames with a label."""
    correct_masked: Tensor
    """Of those, frames whose argmax logit is the label."""
    num_unmasked: Tensor
    """Unmasked, non-padded frames with a label (0 when the unmasked loss is skipped)."""
    correct_unmasked: Tensor
    """Of those, frames predicted correctly."""
    num_frames: Tensor
    """Non-padded frames in the batch."""
    sample_size: Tensor
    """Normaliser of the CE part of ``loss`` (see class docstring)."""
    logits: Tensor
    """``[B, T, num_classes]`` cosine logits / temperature (float32)."""
    mask_indices: Tensor
    """``[B, T]`` bool, frames replaced by the mask embedding."""


class GradMultiply(torch.autograd.Function):
    """Identity forward, gradient × ``scale`` backward (fairseq ``GradMultiply``)."""

    @staticmethod
    def forward(ctx, x: Tensor, scale: float) -> Tensor:
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: Tensor):
        return grad * ctx.scale, None


class HubertModel(ConvFrameGeometry, nn.Module):
    """The HuBERT encoder (no label embeddings): waveform → hidden states of every layer."""

    def __init__(self, cfg: HubertConfig):
        super().__init__()
        self.cfg = cfg
        self.frontend = ConvFrontend(cfg.conv_layers, cfg.extractor_mode, cfg.conv_bias)
        self.layer_norm = nn.LayerNorm(self.frontend.out_dim)
        self.post_extract_proj = nn.Linear(self.frontend.out_dim, cfg.embed_dim)
        self.dropout_input = nn.Dropout(cfg.dropout_input)
        self.mask_emb = nn.Parameter(torch.empty(cfg.embed_dim).uniform_())
        self.encoder = self.build_transformer(cfg)
        fairseq_init(self.frontend, self.encoder.layers)

    def build_transformer(self, cfg: HubertConfig) -> nn.Module:
        """The transformer stack (a family with other layers, e.g. WavLM, overrides this): called as
        ``encoder(x [B, T, D], padding_mask [B, T] | None, num_layers) → num_layers + 1 × [B, T, D]``."""
        return TransformerEncoder(
            cfg.embed_dim,
            cfg.num_layers,
            cfg.num_heads,
            cfg.ffn_dim,
            pos_conv_kernel=cfg.pos_conv_kernel,
            pos_conv_groups=cfg.pos_conv_groups,
            dropout=cfg.dropout,
            attention_dropout=cfg.attention_dropout,
            activation_dropout=cfg.activation_dropout,
            layer_norm_first=cfg.layer_norm_first,
            layerdrop=cfg.encoder_layerdrop,
        )

    @property
    def num_hidden_states(self) -> int:
        return self.cfg.num_layers + 1

    @property
    def hidden_dim(self) -> int:
        return self.cfg.embed_dim

    def layer_states(self, wavs: Tensor, lengths: Tensor | None, max_layer: int | None = None) -> tuple[list[Tensor], Tensor]:
        """The :class:`audiossl.models.encoder.Encoder` protocol: hidden states ``[B, T, D]`` up to ``max_layer``."""
        out = self(wavs, lengths, output_layers=max_layer)
        return list(out.hidden_states), out.lengths

    def forward(
        self,
        wavs: Tensor,
        lengths: Tensor | None = None,
        *,
        mask_indices: Tensor | None = None,
        output_layers: int | None = None,
    ) -> HubertOutput:
        """Encode a batch.

        Args:
            wavs: ``[B, S]`` float audio at ``cfg.sample_rate``.
            lengths: ``[B]`` valid samples per item; None = no padding (the mask-free, fastest
                attention path, so pass None for equal-length crops).
            mask_indices: ``[B, T]`` bool, frames to replace by the learned mask embedding.
            output_layers: run only the first N transformer layers (feature extraction).
        Returns:
            :class:`HubertOutput`.
        Raises:
            ValueError: ``wavs`` is not 2-D, or shorter than the receptive field (no frame at all).
        """
        if wavs.ndim != 2:
            raise ValueError(f"wavs must be [batch, samples], got shape {list(wavs.shape)}")
        batch, num_samples = wavs.shape
        num_frames = self.num_frames(num_samples)
        if num_frames == 0:
            raise ValueError(
                f"input has {num_samples} samples, fewer than the {self.receptive_field}-sample receptive "
                f"field of the conv frontend ({1000 * self.receptive_field / self.cfg.sample_rate:.0f} ms at "
                f"{self.cfg.sample_rate} Hz), so it yields no frame; drop or pad such utterances"
            )
        mult = self.cfg.feature_grad_mult
        if mult == 0.0:
            with torch.no_grad():
                features = self.frontend(wavs, lengths)
        else:
            features = self.frontend(wavs, lengths)
            if mult != 1.0 and torch.is_grad_enabled():
                features = GradMultiply.apply(features, mult)

        frames = torch.arange(num_frames, device=wavs.device)
        if lengths is None:
            frame_lengths = torch.full((batch,), num_frames, device=wavs.device, dtype=torch.long)
            padding_mask = torch.zeros(batch, num_frames, dtype=torch.bool, device=wavs.device)
        else:
            frame_lengths = self.frame_lengths(lengths.to(wavs.device))
            padding_mask = frames[None, :] >= frame_lengths[:, None]

        x = self.dropout_input(self.post_extract_proj(self.layer_norm(features)))
        if mask_indices is not None:
            if mask_indices.shape != (batch, num_frames):
                raise ValueError(
                    f"mask_indices must be [batch, frames] = {[batch, num_frames]}, got {list(mask_indices.shape)}"
                )
            x = torch.where(mask_indices[..., None], self.mask_emb.to(x.dtype), x)
        if lengths is not None:
            x = x.masked_fill(padding_mask[..., None], 0.0)
        hidden = self.encoder(x, padding_mask if lengths is not None else None, output_layers)
        return HubertOutput(hidden, frame_lengths, padding_mask, features)


class HubertPretrainModel(nn.Module):
    """Encoder + ``final_proj`` + ``label_embs`` [num_classes, final_dim]: masked unit prediction."""

    def __init__(self, cfg: HubertConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = HubertModel(cfg)
        self.final_proj = nn.Linear(cfg.embed_dim, cfg.final_dim)
        self.label_embs = nn.Parameter(torch.empty(cfg.num_classes, cfg.final_dim).uniform_())

    @property
    def frame_rate(self) -> float:
        return self.encoder.frame_rate

    def compute_logits(self, x: Tensor) -> Tensor:
        """``x [B, T, D]`` → cosine(final_proj(x), label_embs) / logit_temp, ``[B, T, num_classes]`` fp32."""
        proj = self.final_proj(x)
        # fp32 even under autocast: cosine / 0.1 spans [-10, 10], too coarse in bf16 (fairseq: .float())
        with torch.autocast(device_type=x.device.type, enabled=False):
            proj = F.normalize(proj.float(), dim=-1, eps=1e-8)
            embs = F.normalize(self.label_embs.float(), dim=-1, eps=1e-8)
            return proj @ embs.t() / self.cfg.logit_temp

    def align_targets(self, targets: Tensor, num_frames: int) -> Tensor:
        """Truncate or right-pad (with -100) ``targets [B, T']`` to ``[B, num_frames]``."""
        diff = num_frames - targets.shape[1]
        if diff < 0:
            return targets[:, :num_frames]
        if diff > 0:
            return F.pad(targets, (0, diff), value=-100)
        return targets

    def forward(
        self,
        wavs: Tensor,
        lengths: Tensor | None,
        targets: Tensor,
        *,
        mask_indices: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> PretrainOutput:
        """One masked-prediction step.

        Args:
            wavs: ``[B, S]`` audio.
            lengths: ``[B]`` valid samples, or None when nothing is padded.
            targets: ``[B, T']`` long labels at the model frame rate, -100 = no label; ``T'`` may
                differ from the model's ``T`` by a few frames (truncated / padded here).
            mask_indices: ``[B, T]`` bool to use instead of random span masks.
            generator: torch.Generator on the device of ``wavs`` for reproducible masks.
        """
        cfg = self.cfg
        batch, num_samples = wavs.shape
        num_frames = self.encoder.num_frames(num_samples)
        if lengths is None:
            frame_lengths = torch.full((batch,), num_frames, device=wavs.device, dtype=torch.long)
        else:
            frame_lengths = self.encoder.frame_lengths(lengths.to(wavs.device))
        if mask_indices is None:
            mask_indices = compute_span_mask(
                frame_lengths, num_frames, cfg.mask_prob, cfg.mask_length, min_masks=cfg.min_masks, generator=generator
            )
        out = self.encoder(wavs, lengths, mask_indices=mask_indices)
        valid = ~out.padding_mask

        feats = out.features.float().pow(2).mean(-1)
        num_frames_t = valid.sum()
        feature_pen = (feats * valid).sum() / num_frames_t.clamp(min=1)

        targets = self.align_targets(targets.to(wavs.device).long(), num_frames)
        labelled = valid & (targets >= 0)
        logits = self.compute_logits(out.hidden_states[-1])
        ce = F.cross_entropy(logits.transpose(1, 2), targets.clamp(min=0), reduction="none")  # [B, T]
        hit = logits.argmax(-1) == targets

        zero = logits.new_zeros(())
        do_masked = not cfg.skip_masked and cfg.pred_masked_weight > 0
        do_unmasked = not cfg.skip_nomask and cfg.pred_nomask_weight > 0
        sel_m = labelled & mask_indices if do_masked else torch.zeros_like(labelled)
        sel_u = labelled & ~mask_indices if do_unmasked else torch.zeros_like(labelled)
        num_m, num_u = sel_m.sum(), sel_u.sum()
        sum_m = (ce * sel_m).sum() if do_masked else zero
        sum_u = (ce * sel_u).sum() if do_unmasked else zero

        sample_size = num_m if cfg.pred_masked_weight > 0 else num_u
        loss = (cfg.pred_masked_weight * sum_m + cfg.pred_nomask_weight * sum_u) / sample_size.clamp(min=1)
        loss = loss + cfg.feature_pen_weight * feature_pen
        return PretrainOutput(
            loss=loss,
            loss_masked=sum_m / num_m.clamp(min=1),
            loss_unmasked=sum_u / num_u.clamp(min=1),
            feature_pen=feature_pen,
            num_masked=num_m,
            correct_masked=(hit & sel_m).sum(),
            num_unmasked=num_u,
            correct_unmasked=(hit & sel_u).sum(),
            num_frames=num_frames_t,
            sample_size=sample_size,
            logits=logits,
            mask_indices=mask_indices,
        )


def hubert_tiny(**overrides) -> HubertConfig:
    """CPU-sized HuBERT for tests and demo runs (~0.6 M params): 64-channel conv, 2 × 128-dim layers."""
    cfg = HubertConfig(
        conv_layers=((64, 10, 5),) + ((64, 3, 2),) * 4 + ((64, 2, 2),) * 2,
        embed_dim=128,
        num_layers=2,
        num_heads=2,
        ffn_dim=512,
        pos_conv_kernel=32,
        pos_conv_groups=8,
        encoder_layerdrop=0.0,
        final_dim=64,
        num_classes=100,
    )
    return replace(cfg, **overrides)


def hubert_base(**overrides) -> HubertConfig:
    """fairseq ``hubert_base_librispeech`` (95 M params)."""
    return replace(HubertConfig(), **overrides)


def _large_like(embed_dim: int, num_layers: int, ffn_dim: int, final_dim: int) -> HubertConfig:
    return HubertConfig(
        extractor_mode="layer_norm",
        conv_bias=True,
        embed_dim=embed_dim,
        num_layers=num_layers,
        num_heads=16,
        ffn_dim=ffn_dim,
        layer_norm_first=True,
        dropout=0.0,
        attention_dropout=0.0,
        encoder_layerdrop=0.0,
        dropout_input=0.0,
        dropout_features=0.0,
        feature_grad_mult=1.0,
        final_dim=final_dim,
    )


def hubert_large(**overrides) -> HubertConfig:
    """fairseq ``hubert_large_lv60k`` (317 M params)."""
    return replace(_large_like(1024, 24, 4096, 768), **overrides)


def hubert_xlarge(**overrides) -> HubertConfig:
    """fairseq ``hubert_xtralarge_lv60k`` (964 M params)."""
    return replace(_large_like(1280, 48, 5120, 1024), **overrides)


def build_hubert(cfg: HubertConfig) -> HubertPretrainModel:
    """The pretraining model for ``cfg`` (use ``.encoder`` for the upstream)."""
    return HubertPretrainModel(cfg)


CONFIGS = {"tiny": hubert_tiny, "base": hubert_base, "large": hubert_large, "xlarge": hubert_xlarge}
