"""The data2vec 2.0 pretraining model: student encoder, EMA teacher, conv decoder and L2 loss.

One step (fairseq ``Data2VecMultiModel.forward``)::

    wavs ─normalize─▶ student local features x [B, T, D] (conv frontend + LN + Linear)
      teacher (no grad, eval): pos conv + LN + layers on x ─▶ FFN outputs of the top K layers,
          each instance-normalised over time (valid frames) ─▶ mean ─▶ targets y [B, T, D]
      student: x repeated M = clone_batch times ─▶ block masks (M different per item) ─▶ masked frames
          zeroed ─▶ pos conv on all frames ─▶ keep the unmasked frames only ─▶ LN + layers [BM, K, D]
      decoder: kept outputs + mask tokens in time order ─▶ conv blocks ─▶ Linear ─▶ [BM, T, D]
      loss = Σ_masked ||pred - y||² / sqrt(D) / #masked frames

The teacher is updated after each optimizer step by :meth:`Data2Vec2PretrainModel.before_train_step`,
which the trainer calls before step ``n + 1`` (fairseq ``set_num_updates(n)`` after update ``n``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from audiossl.audio.normalize import normalize_waveform
from audiossl.models.data2vec2.decoder import ConvDecoder
from audiossl.models.data2vec2.ema import ema_decay_at, ema_update_, make_teacher
from audiossl.models.data2vec2.masking import BlockMask, compute_block_mask
from audiossl.models.data2vec2.model import ContextEncoder, Data2Vec2Config, Data2Vec2Model


@dataclass
class Data2Vec2PretrainOutput:
    """One step's loss and diagnostics; every field is a tensor (no host sync)."""

    loss: Tensor
    """Scalar: mean over masked frames of ``||pred - target||² · loss_scale``."""
    num_masked: Tensor
    """Masked valid frames over all copies (the loss's normaliser, fairseq ``sample_size``)."""
    extra_losses: dict[str, Tensor] = field(default_factory=dict)
    """``target_var``, ``pred_var`` (mean per-dim std over masked frames, fairseq ``compute_var``),
    ``ema_decay`` (of the teacher's last update), ``masked_frac`` (masked share of valid frames)."""
    predictions: Tensor | None = None
    """``[B·M, T, D]`` decoder output."""
    targets: Tensor | None = None
    """``[B, T, D]`` teacher targets (float32)."""
    mask: BlockMask | None = None
    """The masks of the ``B·M`` student rows (row ``b·M + j`` = copy ``j`` of item ``b``)."""


def instance_norm_frames(x: Tensor, valid: Tensor | None, eps: float = 1e-5) -> Tensor:
    """Normalise each channel of ``x [B, T, D]`` over time (valid frames only), fp32 (``F.instance_norm``)."""
    x = x.float()
    if valid is None:
        mean = x.mean(1, keepdim=True)
        var = x.var(1, unbiased=False, keepdim=True)
    else:
        w = valid[..., None].to(torch.float32)
        n = w.sum(1, keepdim=True).clamp(min=1.0)
        mean = (x * w).sum(1, keepdim=True) / n
        var = (((x - mean) * w) ** 2).sum(1, keepdim=True) / n
    return (x - mean) * torch.rsqrt(var + eps)


def masked_std(x: Tensor, sel: Tensor) -> Tensor:
    """Mean over channels of the std over the selected frames (fairseq ``compute_var``). ``x [R, T, D]``, ``sel [R, T]``."""
    w = sel[..., None].to(torch.float32)
    n = w.sum()
    mean = (x.float() * w).sum((0, 1)) / n.clamp(min=1)
    var = (((x.float() - mean) * w) ** 2).sum((0, 1)) / (n - 1).clamp(min=1)
    return torch.sqrt(var + 1e-6).mean()


class Data2Vec2PretrainModel(nn.Module):
    """Student :class:`Data2Vec2Model` (``.encoder``), EMA teacher (``.teacher``, buffers) and ``.decoder``."""

    family = "data2vec2"

    def __init__(self, cfg: Data2Vec2Config):
        super().__init__()
        self.cfg = cfg
        self.encoder = Data2Vec2Model(cfg)
        self.decoder = ConvDecoder(cfg.embed_dim, cfg.decoder_dim, cfg.decoder_kernel, cfg.decoder_groups, cfg.decoder_layers,
                                   cfg.decoder_input_dropout, cfg.mask_noise_std)
        self.teacher = make_teacher(self.encoder.context, lambda: ContextEncoder(cfg))
        self.register_buffer("num_updates", torch.zeros((), dtype=torch.long))
        """Optimizer updates the teacher has absorbed (fairseq ``num_updates`` at the last EMA step)."""
        self.register_buffer("ema_decay", torch.tensor(cfg.ema_decay, dtype=torch.float32))
        """Decay of the teacher's last EMA step (``cfg.ema_decay`` before the first)."""
        self._ema_step_done: int | None = None

    @property
    def frame_rate(self) -> float:
        return self.encoder.frame_rate

    def train(self, mode: bool = True):
        super().train(mode)
        self.teacher.eval()  # the teacher never uses dropout or LayerDrop (fairseq ``ema.model.eval()``)
        return self

    def decay_at(self, num_updates: int) -> float:
        c = self.cfg
        return ema_decay_at(num_updates, c.ema_decay, c.ema_end_decay, c.ema_anneal_end_step)

    @torch.no_grad()
    def before_train_step(self, step_nr: int) -> None:
        """Called by the trainer before step ``step_nr`` (1-based): absorb update ``step_nr - 1`` into the teacher.

        Idempotent per step (a re-run step, e.g. after an fp16 overflow, does not move the teacher twice).
        The decay comes from the host-side step number, so nothing here reads the device."""
        n = step_nr - 1
        if n < 1 or self._ema_step_done == step_nr:
            return
        self._ema_step_done = step_nr
        decay = self.decay_at(n)
        if decay < 1.0:
            ema_update_(self.teacher, self.encoder.context, decay)
        self.num_updates.fill_(n)
        self.ema_decay.fill_(decay)

    @torch.no_grad()
    def make_targets(self, x: Tensor, padding_mask: Tensor | None) -> Tensor:
        """Teacher targets ``[B, T, D]`` (fp32) from the student's local features ``x [B, T, D]``."""
        k = self.cfg.average_top_k_layers
        _, ffn = self.teacher(x.detach(), padding_mask, ffn_outputs=True)
        valid = None if padding_mask is None else ~padding_mask
        y = instance_norm_frames(ffn[-k], valid)
        for f in ffn[-k + 1:] if k > 1 else []:
            y = y + instance_norm_frames(f, valid)
        return y / k

    def forward(
        self,
        wavs: Tensor,
        lengths: Tensor | None,
        targets: Tensor | None = None,
        *,
        mask: BlockMask | None = None,
        generator: torch.Generator | None = None,
    ) -> Data2Vec2PretrainOutput:
        """One data2vec 2.0 step.

        Args:
            wavs: ``[B, S]`` audio.
            lengths: ``[B]`` valid samples, or None when nothing is padded.
            targets: ignored (data2vec 2.0 trains on audio alone; the trainer passes an empty tensor).
            mask: masks of the ``B · clone_batch`` student rows to use instead of random ones.
            generator: torch.Generator on the device of ``wavs`` (masks and mask tokens).
        """
        cfg = self.cfg
        batch, num_samples = wavs.shape
        if cfg.normalize:
            full = torch.full((batch,), num_samples, device=wavs.device, dtype=torch.long)
            wavs = normalize_waveform(wavs, full if lengths is None else lengths.to(wavs.device))
        x, frame_lengths, padding_mask = self.encoder.local_features(wavs, lengths)
        num_frames = x.shape[1]
        y = self.make_targets(x, padding_mask)

        m = cfg.clone_batch
        xs = x.repeat_interleave(m, 0) if m > 1 else x
        rows_len = frame_lengths.repeat_interleave(m, 0) if m > 1 else frame_lengths
        rows_pad = None if padding_mask is None else (padding_mask.repeat_interleave(m, 0) if m > 1 else padding_mask)
        if mask is None:
            mask = compute_block_mask(rows_len, num_frames, cfg.mask_prob, cfg.mask_length, inverse=cfg.inverse_mask, generator=generator)
        xs = xs.masked_fill(mask.removed[..., None], 0.0)
        hidden, _ = self.encoder.context(xs, rows_pad, ids_keep=mask.ids_keep)
        pred = self.decoder(hidden[-1], mask.ids_restore, None if rows_pad is None else ~rows_pad, generator)

        y_rows = y.repeat_interleave(m, 0) if m > 1 else y
        sel = mask.masked
        num_masked = sel.sum()
        scale = cfg.loss_scale if cfg.loss_scale is not None else 1.0 / math.sqrt(cfg.embed_dim)
        err = (pred.float() - y_rows).pow(2).sum(-1)
        loss = (err * sel).sum() * scale / num_masked.clamp(min=1)
        with torch.no_grad():
            extra = {
                "target_var": masked_std(y_rows, sel),
                "pred_var": masked_std(pred.detach(), sel),
                "ema_decay": self.ema_decay.clone(),
                "masked_frac": num_masked.float() / (rows_len.sum().float().clamp(min=1)),
            }
        return Data2Vec2PretrainOutput(loss=loss, num_masked=num_masked, extra_losses=extra, predictions=pred, targets=y, mask=mask)


def build_data2vec2(cfg: Data2Vec2Config) -> Data2Vec2PretrainModel:
    """The pretraining model for ``cfg`` (``.encoder`` is the upstream)."""
    return Data2Vec2PretrainModel(cfg)
