"""MERT (Li et al., 2023) student in plain torch: config, encoder, pretraining model, builders.

Data flow::

    clean wavs [B, S] ──TorchCQT (= nnAudio CQT1992v2)──▶ |CQT| target [B, T, 336]  (musical teacher)
        │ in-batch noise mixture (training only; targets already taken from the clean audio)
        ▼
    conv frontend (×320 → 75 Hz at 24 kHz) ─LN─▶ Linear ─▶ mask_emb at masked frames ─▶ pos conv
        ─▶ transformer ─▶ hidden [B, T, D] ─┬─ final_proj D → 8 × final_dim, chunk c ─▶ cosine with
                                             │  label_embs[c] [1024, final_dim] / logit_temp ─▶ logits
                                             │  [B, T, 8, 1024]; CE vs RVQ codes [B, T, 8], masked frames
                                             └─ CQT head ─▶ [B, T, 336], MSE on masked frames

Reference (MERT fairseq fork, ``mert_model.py`` + fairseq's ``hubert`` criterion with
``loss_weights [10, 1]``): the step's loss is ``Σ_codebooks Σ_masked-frames CE / N_masked +
10 · feature_pen + 1 · cqt_mse``, i.e. the 8 CE terms are **summed**, not averaged. Here
``loss = ce_weight * loss_masked + cqt_weight * loss_cqt + feature_pen_weight * feature_pen`` with
``loss_masked`` = that sum over codebooks of the masked-frame mean CE (``ce_reduction: mean``
divides it by the number of codebooks, our earlier choice, kept as an option).

The encoder is :class:`audiossl.models.hubert.model.HubertModel` with a 24 kHz config (same module and
parameter names, so the HF HuBERT key mapping of :mod:`audiossl.models.hubert.hf` serves MERT too).
``attention_relax > 0`` (MERT-330M) swaps in :class:`RelaxedSelfAttention`. Hidden states follow
HuBERT's convention (``num_layers + 1`` entries, [0] = input of the first layer).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import ClassVar

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from audiossl.audio.cqt_torch import TorchCQT, log_cqt_target
from audiossl.audio.normalize import normalize_waveform
from audiossl.models.conv_frontend import receptive_field
from audiossl.models.encoder_config import ConvEncoderConfig
from audiossl.models.hubert.model import HubertModel
from audiossl.models.masking import compute_span_mask
from audiossl.models.transformer import SelfAttention
from audiossl.audio.mixing import NoiseMixConfig, mix_in_batch_noise



@dataclass
class MertConfig(ConvEncoderConfig):
    """MERT student. The encoder's fields are those of :class:`~audiossl.models.encoder_config.ConvEncoderConfig`
    (24 kHz audio: the default conv strides multiply to 320, 75 Hz)."""

    family: ClassVar[str] = "mert"
    sample_rate: int = 24000
    """Audio rate the model expects (MERT: 24 kHz)."""
    layer_norm_first: bool = False
    """Pre-LN blocks (330M); False = post-LN (95M)."""
    dropout_input: float = 0.1
    """Dropout after the feature projection."""
    feature_grad_mult: float = 0.1
    """Gradient scale into the conv frontend; 0 freezes it."""
    attention_relax: float = -1.0
    """PB-relax attention-logit relaxation factor (MERT HF ``attention_relax``; 32 for 330M); <= 0: off."""
    attention_impl: str = "auto"
    """Relaxed attention (``attention_relax > 0``): ``sdpa`` (SDPA with ``scale``; flash-eligible, no
    ``[B, H, T, T]`` tensor) | ``eager`` (explicit scores, MERT's code; debugging) | ``auto`` = ``sdpa``."""
    normalize: bool = False
    """Zero-mean / unit-variance waveform per utterance before the model (HF ``do_normalize``)."""
    final_dim: int = 64
    """Per-codebook projection width of the cosine heads (MERT ``final_dim``: 64 for 95M, 128 for 330M)."""
    logit_temp: float = 0.1
    """Cosine similarities are divided by this (MERT ``logit_temp``)."""
    ce_reduction: str = "sum"
    """``sum`` (MERT: the codebooks' masked CE terms add up) or ``mean`` (divided by ``num_codebooks``;
    not MERT: it makes the CQT and feature-penalty terms ``num_codebooks``× heavier relative to CE)."""
    mask_prob: float = 0.8
    """Span-start probability × span length (MERT: 0.8)."""
    mask_length: int = 5
    """Span length in frames (MERT: 5)."""
    min_masks: int = 2
    """Minimum spans per utterance."""
    num_codebooks: int = 8
    """Codes per frame (RVQ levels of the acoustic teacher), one classification head each."""
    num_classes: int = 1024
    """Codebook size of each level."""
    ce_weight: float = 1.0
    """Weight of the masked CE (MERT ``pred_masked_weight``: 1)."""
    cqt_weight: float = 1.0
    """Weight of the masked-frame CQT MSE (MERT: 1)."""
    feature_pen_weight: float = 10.0
    """Weight of the conv-feature L2 penalty (MERT ``loss_weights[0]``: 10)."""
    cqt_bins: int = 336
    """CQT target bins (7 octaves × 48)."""
    cqt_bins_per_octave: int = 48
    """CQT bins per octave."""
    cqt_fmin: float = 32.7
    """Lowest CQT bin in Hz (MERT: 32.7)."""
    cqt_target: str = "magnitude"
    """``magnitude``: MERT's target, nnAudio's CQT magnitude, frame ``i`` centred on sample ``320 i``.
    ``log_norm`` (not MERT): log-magnitude standardised per utterance, frames centred on the student's
    frames (``320 i + 200``); bounded targets whatever the recording gain."""
    noise_mix_prob: float = 0.5
    """Probability per item of the in-batch noise mixture in training (0: off)."""
    noise_mix_max_segments: int = 3
    """Most segments mixed into one item."""
    noise_mix_seconds: tuple[float, float] = (0.5, 1.0)
    """Segment duration range in seconds (MERT 95M: 12000–24000 samples; 330M: 12000–36000)."""
    noise_mix_volume: float = 1.0
    """Gain on the added segments (MERT ``inbatch_noise_augment_volume``: 1.0)."""
    noise_mix_snr_db: tuple[float, float] | None = None
    """None (MERT): add raw segments at ``noise_mix_volume``. A ``(lo, hi)`` range (not MERT): scale
    each segment to a random SNR in dB against the item's own energy."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.noise_mix_seconds = tuple(float(v) for v in self.noise_mix_seconds)
        if self.noise_mix_snr_db is not None:
            self.noise_mix_snr_db = tuple(float(v) for v in self.noise_mix_snr_db)
        if self.ce_reduction not in ("sum", "mean"):
            raise ValueError(f"ce_reduction must be 'sum' or 'mean', got {self.ce_reduction!r}")
        if self.cqt_target not in ("magnitude", "log_norm"):
            raise ValueError(f"cqt_target must be 'magnitude' or 'log_norm', got {self.cqt_target!r}")
        if self.attention_impl not in ("auto", "sdpa", "eager"):
            raise ValueError(f"attention_impl must be 'auto', 'sdpa' or 'eager', got {self.attention_impl!r}")
        if self.final_dim < 1 or self.logit_temp <= 0:
            raise ValueError(f"need final_dim >= 1 and logit_temp > 0, got {self.final_dim}, {self.logit_temp}")
        if self.num_codebooks < 1 or self.num_classes < 2:
            raise ValueError(f"need num_codebooks >= 1 and num_classes >= 2, got {self.num_codebooks}, {self.num_classes}")
        if not 0.0 <= self.noise_mix_prob <= 1.0:
            raise ValueError(f"noise_mix_prob must be in [0, 1], got {self.noise_mix_prob}")

    @property
    def hop_length(self) -> int:
        """Samples per frame (product of the conv strides)."""
        return math.prod(s for _, _, s in self.conv_layers)

    def to_dict(self) -> dict:
        d = super().to_dict()
        d["noise_mix_seconds"] = list(self.noise_mix_seconds)
        if self.noise_mix_snr_db is not None:
            d["noise_mix_snr_db"] = list(self.noise_mix_snr_db)
        return d


class RelaxedSelfAttention(SelfAttention):
    """Self-attention with PB-relax logits (CogView; MERT HF ``attention_relax``).

    ``softmax(QKᵀ/√d)`` is computed as ``softmax(α · (QKᵀ/(α√d) − max))``: the same function (softmax
    is shift-invariant), but the products are formed at 1/α scale so they cannot overflow in fp16,
    which destabilised MERT-330M. The key-padding mask stays boolean.

    ``impl="eager"`` builds the ``[B, H, T, T]`` scores explicitly, as MERT's code. ``impl="sdpa"``
    (default) is the same computation in one SDPA call: ``q' = q / (α√d)`` and ``scale=α``, so the
    kernel forms ``q'·k`` (the 1/α-scale products), multiplies by α and takes a softmax that
    subtracts the row max itself (flash / memory-efficient kernels: the running max of the online
    softmax). Subtracting a per-row constant changes neither the softmax nor its gradient
    (``∂softmax(s − c)/∂c = 0``), so MERT's ``.detach()`` on the max is a no-op for the maths and
    needs no counterpart; ``tests/test_attention_impl.py`` checks outputs and gradients agree.
    """

    def __init__(self, dim: int, num_heads: int, dropout: float = 0.0, relax: float = 32.0, impl: str = "sdpa"):
        super().__init__(dim, num_heads, dropout)
        if relax <= 0:
            raise ValueError(f"attention_relax must be > 0 for RelaxedSelfAttention, got {relax}")
        if impl not in ("sdpa", "eager"):
            raise ValueError(f"impl must be 'sdpa' or 'eager', got {impl!r}")
        self.relax, self.impl = float(relax), impl

    def forward(self, x: Tensor, attn_mask: Tensor | None = None) -> Tensor:
        """``x [batch, frame, dim]``, ``attn_mask`` bool ``[batch, 1, 1, frame]`` (True = attend) or None."""
        b, t, _ = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        if self.impl == "sdpa":
            q = q * (1.0 / (self.relax * math.sqrt(self.head_dim)))
            y = F.scaled_dot_product_attention(
                q, k, v, attn_mask=attn_mask, dropout_p=self.dropout if self.training else 0.0, scale=self.relax
            )
            return self.out_proj(y.transpose(1, 2).reshape(b, t, self.dim))
        scores = (q * (1.0 / (self.relax * math.sqrt(self.head_dim)))) @ k.transpose(-1, -2)  # [b, h, t, t]
        if attn_mask is not None:
            scores = scores.masked_fill(~attn_mask, float("-inf"))
        scores = (scores - scores.amax(-1, keepdim=True).detach()) * self.relax
        attn = torch.softmax(scores.float(), dim=-1).to(v.dtype)
        attn = F.dropout(attn, self.dropout, self.training)
        y = attn @ v  # [b, h, t, head_dim]
        return self.out_proj(y.transpose(1, 2).reshape(b, t, self.dim))


class MertModel(HubertModel):
    """The MERT encoder: 24 kHz waveform → hidden states of every layer (``[B, T, D]`` each).

    Same interface as :class:`HubertModel` (``frame_rate`` 75.0, ``num_frames``, ``frame_lengths``,
    ``forward(wavs, lengths, mask_indices=, output_layers=)``).
    """

    family: ClassVar[str] = "mert"

    def __init__(self, cfg: MertConfig):
        super().__init__(cfg)  # type: ignore[arg-type]  (same field names as HubertConfig)
        if cfg.attention_relax > 0:
            for layer in self.encoder.layers:
                old = layer.self_attn
                impl = "eager" if cfg.attention_impl == "eager" else "sdpa"
                new = RelaxedSelfAttention(cfg.embed_dim, cfg.num_heads, cfg.attention_dropout, cfg.attention_relax, impl)
                new.qkv, new.out_proj = old.qkv, old.out_proj
                layer.self_attn = new


@dataclass
class MertPretrainOutput:
    """Loss terms of one MERT step; every field is a tensor (no host sync)."""

    loss: Tensor
    """Scalar to backpropagate (see module docstring)."""
    loss_masked: Tensor
    """Masked CE: per codebook the mean over masked, labelled frames, summed over codebooks (MERT)
    or averaged (``ce_reduction: mean``)."""
    loss_cqt: Tensor
    """Mean squared error of the CQT head over masked frames and bins."""
    feature_pen: Tensor
    """Mean of squared conv features over non-padded frames."""
    num_masked: Tensor
    """Masked, labelled (frame, codebook) pairs, all heads together."""
    correct_masked: Tensor
    """Of those, pairs whose argmax logit is the code."""
    num_frames: Tensor
    """Non-padded frames in the batch."""
    logits: Tensor
    """``[B, T, num_codebooks, num_classes]`` (float32)."""
    cqt_pred: Tensor
    """``[B, T, cqt_bins]`` predicted CQT target."""
    cqt_target: Tensor
    """``[B, T, cqt_bins]`` CQT magnitude of the clean input (or its normalised log, ``log_norm``)."""
    mask_indices: Tensor
    """``[B, T]`` bool, frames replaced by the mask embedding."""
    mixed_wavs: Tensor
    """``[B, S]`` what the encoder heard (the noise mixture in training, else the input)."""

    @property
    def extra_losses(self) -> dict[str, Tensor]:
        return {"loss_cqt": self.loss_cqt}


class MertPretrainModel(nn.Module):
    """Encoder + MERT's HuBERT-style heads + ``cqt_head`` + the on-device CQT teacher (non-persistent
    buffers, rebuilt from the config).

    Heads (MERT ``untie_final_proj: true``): ``final_proj = Linear(D, num_codebooks * final_dim)``,
    whose output columns ``[c*F, (c+1)*F)`` are codebook ``c``'s projection; ``label_embs``
    ``[num_codebooks * num_classes, final_dim]`` (rows ``[c*K, (c+1)*K)`` = codebook ``c``, initialised
    U(0, 1)); logit of class ``k`` = cosine(projection, embedding ``k``) / ``logit_temp``. MERT forms
    the positive and all classes as candidates and masks the duplicate positive, which is this
    softmax over the classes."""

    family: ClassVar[str] = "mert"

    def __init__(self, cfg: MertConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = MertModel(cfg)
        self.final_proj = nn.Linear(cfg.embed_dim, cfg.num_codebooks * cfg.final_dim)
        self.label_embs = nn.Parameter(torch.empty(cfg.num_codebooks * cfg.num_classes, cfg.final_dim).uniform_())
        self.cqt_head = nn.Linear(cfg.embed_dim, cfg.cqt_bins)
        self.cqt = build_cqt(cfg)

    @property
    def frame_rate(self) -> float:
        return self.encoder.frame_rate

    def logits(self, hidden: Tensor) -> Tensor:
        """``hidden [B, T, D]`` → fp32 logits ``[B, T, num_codebooks, num_classes]`` (cosine / logit_temp)."""
        cfg = self.cfg
        b, t, _ = hidden.shape
        proj = self.final_proj(hidden).float().view(b, t, cfg.num_codebooks, cfg.final_dim)
        emb = self.label_embs.float().view(cfg.num_codebooks, cfg.num_classes, cfg.final_dim)
        cos = torch.einsum("btcf,ckf->btck", F.normalize(proj, dim=-1, eps=1e-8), F.normalize(emb, dim=-1, eps=1e-8))
        return cos / cfg.logit_temp

    def align_targets(self, targets: Tensor, num_frames: int) -> Tensor:
        """Truncate or right-pad (with -100) ``targets [B, T', C]`` to ``[B, num_frames, C]``."""
        diff = num_frames - targets.shape[1]
        if diff < 0:
            return targets[:, :num_frames]
        if diff > 0:
            return F.pad(targets, (0, 0, 0, diff), value=-100)
        return targets

    def forward(
        self,
        wavs: Tensor,
        lengths: Tensor | None,
        targets: Tensor,
        *,
        mask_indices: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> MertPretrainOutput:
        """One MERT step.

        Args:
            wavs: ``[B, S]`` clean audio at 24 kHz.
            lengths: ``[B]`` valid samples, or None when nothing is padded.
            targets: ``[B, T', num_codebooks]`` long RVQ codes at the model frame rate, -100 = none
                (``[B, T']`` accepted when ``num_codebooks == 1``); ``T'`` may differ from ``T``.
            mask_indices: ``[B, T]`` bool to use instead of random span masks.
            generator: torch.Generator on the device of ``wavs`` (masks and noise mixture).
        """
        cfg = self.cfg
        batch, num_samples = wavs.shape
        if targets.ndim == 2 and cfg.num_codebooks == 1:
            targets = targets[..., None]
        if targets.ndim != 3 or targets.shape[-1] != cfg.num_codebooks or targets.shape[0] != batch:
            raise ValueError(
                f"targets must be [batch={batch}, frames, num_codebooks={cfg.num_codebooks}] codes, got {list(targets.shape)}"
            )
        enc = self.encoder
        num_frames = enc.num_frames(num_samples)
        if lengths is None:
            frame_lengths = torch.full((batch,), num_frames, device=wavs.device, dtype=torch.long)
        else:
            frame_lengths = enc.frame_lengths(lengths.to(wavs.device))
        if cfg.normalize:
            full = torch.full((batch,), num_samples, device=wavs.device, dtype=torch.long)
            wavs = normalize_waveform(wavs, full if lengths is None else lengths.to(wavs.device))
        # teacher first, from the clean audio: the mixture below can never leak into the target
        cqt_target = self.cqt(wavs, num_frames)
        if cfg.cqt_target == "log_norm":
            cqt_target = log_cqt_target(cqt_target, frame_lengths)
        heard = wavs
        if self.training and cfg.noise_mix_prob > 0:
            mix = NoiseMixConfig(
                prob=cfg.noise_mix_prob, max_segments=cfg.noise_mix_max_segments,
                min_seconds=cfg.noise_mix_seconds[0], max_seconds=cfg.noise_mix_seconds[1],
                volume=cfg.noise_mix_volume, snr_db=cfg.noise_mix_snr_db,
            )
            heard = mix_in_batch_noise(wavs, lengths, cfg.sample_rate, mix, generator=generator)
        if mask_indices is None:
            mask_indices = compute_span_mask(
                frame_lengths, num_frames, cfg.mask_prob, cfg.mask_length, min_masks=cfg.min_masks, generator=generator
            )
        out = enc(heard, lengths, mask_indices=mask_indices)
        valid = ~out.padding_mask
        num_frames_t = valid.sum()
        feature_pen = (out.features.float().pow(2).mean(-1) * valid).sum() / num_frames_t.clamp(min=1)

        hidden = out.hidden_states[-1]
        logits = self.logits(hidden)
        targets = self.align_targets(targets.to(wavs.device).long(), num_frames)
        # classes on the last, contiguous dim: log-softmax over a permuted [B, K, T, C] view copies and
        # runs ~3x slower on CPU (a sixth of MERT-tiny's step)
        flat_logits, flat_targets = logits.flatten(0, 2), targets.clamp(min=0).flatten()
        ce = F.cross_entropy(flat_logits, flat_targets, reduction="none").view(targets.shape)  # [B, T, C]
        masked = valid & mask_indices  # [B, T]
        sel = masked[..., None] & (targets >= 0)
        num_m = sel.sum()
        # per codebook: mean over its masked, labelled frames; then summed over codebooks (MERT)
        per_book = (ce * sel).sum((0, 1)) / sel.sum((0, 1)).clamp(min=1)  # [C]
        loss_masked = per_book.sum() if cfg.ce_reduction == "sum" else per_book.mean()
        with torch.no_grad():  # the target's logit is the row's max (argmax, but ~5x faster on CPU; ties count)
            hit = flat_logits.gather(1, flat_targets[:, None])[:, 0] >= flat_logits.amax(1)
            correct = (hit.view(targets.shape) & sel).sum()

        cqt_pred = self.cqt_head(hidden).float()
        sq = (cqt_pred - cqt_target).pow(2).mean(-1)  # [B, T]
        loss_cqt = (sq * masked).sum() / masked.sum().clamp(min=1)

        loss = cfg.ce_weight * loss_masked + cfg.cqt_weight * loss_cqt + cfg.feature_pen_weight * feature_pen
        return MertPretrainOutput(
            loss=loss, loss_masked=loss_masked, loss_cqt=loss_cqt, feature_pen=feature_pen, num_masked=num_m,
            correct_masked=correct, num_frames=num_frames_t, logits=logits, cqt_pred=cqt_pred, cqt_target=cqt_target,
            mask_indices=mask_indices, mixed_wavs=heard,
        )


def build_cqt(cfg: MertConfig) -> TorchCQT:
    """The CQT teacher of ``cfg``: hop = the student's frame shift; frame ``i`` centred on sample
    ``hop·i`` (MERT, nnAudio ``center=True``), or on the student's frame centre for ``log_norm``."""
    offset = receptive_field(cfg.conv_layers) // 2 if cfg.cqt_target == "log_norm" else 0
    return TorchCQT(cfg.sample_rate, cfg.hop_length, cfg.cqt_bins, cfg.cqt_bins_per_octave, cfg.cqt_fmin, center_offset=offset)


def mert_tiny(**overrides) -> MertConfig:
    """CPU-sized MERT for tests and demo runs: 64-channel conv, 2 × 128-dim layers, ``final_dim`` 16."""
    cfg = MertConfig(
        conv_layers=((64, 10, 5),) + ((64, 3, 2),) * 4 + ((64, 2, 2),) * 2,
        embed_dim=128,
        num_layers=2,
        num_heads=2,
        ffn_dim=512,
        pos_conv_kernel=32,
        pos_conv_groups=8,
        encoder_layerdrop=0.0,
        feature_grad_mult=1.0,
        final_dim=16,
    )
    return replace(cfg, **overrides)


def mert_95m(**overrides) -> MertConfig:
    """MERT-v1-95M: HuBERT-Base-shaped 12 × 768 post-LN encoder at 24 kHz."""
    return replace(MertConfig(), **overrides)


def mert_330m(**overrides) -> MertConfig:
    """MERT-v1-330M (``MERT_RVQ-VAE_CQT_330M.yaml``, released ``config.json``): 24 × 1024 pre-LN,
    group-norm conv front end without conv bias (``feat_extract_norm: group``, ``conv_bias: false``),
    attention relax 32, ``final_dim`` 128, noise segments 0.5–1.5 s."""
    cfg = MertConfig(
        embed_dim=1024,
        num_layers=24,
        num_heads=16,
        ffn_dim=4096,
        layer_norm_first=True,
        dropout=0.0,
        attention_dropout=0.0,
        encoder_layerdrop=0.0,
        dropout_input=0.0,
        feature_grad_mult=1.0,
        attention_relax=32.0,
        final_dim=128,
        noise_mix_seconds=(0.5, 1.5),
    )
    return replace(cfg, **overrides)


def build_mert(cfg: MertConfig) -> MertPretrainModel:
    """The pretraining model for ``cfg`` (use ``.encoder`` for the upstream)."""
    return MertPretrainModel(cfg)


CONFIGS = {"tiny": mert_tiny, "95m": mert_95m, "330m": mert_330m}
