"""Waveform convolution front end of wav2vec 2.0 / HuBERT (fairseq ``ConvFeatureExtractionModel``).

A stack of strided 1-D convolutions turns ``[batch, sample]`` audio into ``[batch, frame, channel]``
features (20 ms frames at 16 kHz with the default layers). Two normalisation modes, as fairseq's
``extractor_mode``:

* ``"group_norm"`` (Base): ``GroupNorm(C, C)`` on the first layer only. That norm averages over
  time, so with a padded batch it is computed over each item's valid samples only (a
  length-aware group norm); without lengths it is plain ``nn.GroupNorm``, as fairseq.
* ``"layer_norm"`` (Large / XLarge): a channel LayerNorm after every convolution.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F

ConvSpec = tuple[int, int, int]  # (out_channels, kernel_size, stride)


def conv_output_lengths(lengths: Tensor, conv_layers: tuple[ConvSpec, ...]) -> Tensor:
    """Valid output frames for valid input samples ``lengths`` (``[batch]``), on their device.

    Each layer maps ``L -> floor((L - kernel) / stride) + 1``, clamped at 0 (inputs shorter than
    the receptive field give zero frames).
    """
    for _, kernel, stride in conv_layers:
        lengths = torch.div(lengths - kernel, stride, rounding_mode="floor") + 1
        lengths = lengths.clamp(min=0)
    return lengths


def conv_output_length(num_samples: int, conv_layers: tuple[ConvSpec, ...]) -> int:
    """Python-int version of :func:`conv_output_lengths`."""
    for _, kernel, stride in conv_layers:
        num_samples = max(0, (num_samples - kernel) // stride + 1)
    return num_samples


def receptive_field(conv_layers: tuple[ConvSpec, ...]) -> int:
    """Samples needed for one output frame (400 = 25 ms at 16 kHz for the default layers)."""
    field, jump = 1, 1
    for _, kernel, stride in conv_layers:
        field += (kernel - 1) * jump
        jump *= stride
    return field


class ConvFrameGeometry:
    """Frame geometry of an encoder with a conv waveform front end (HuBERT, WavLM, MERT, data2vec 2.0).

    Mixed into an ``nn.Module`` whose ``cfg`` has ``conv_layers`` and ``sample_rate``.
    """

    cfg: object

    @property
    def frame_rate(self) -> float:
        """Frames per second (50.0 at 16 kHz with the default conv layers)."""
        return self.cfg.sample_rate / math.prod(s for _, _, s in self.cfg.conv_layers)

    @property
    def receptive_field(self) -> int:
        """Samples needed for one frame (400 for the default conv layers)."""
        return receptive_field(self.cfg.conv_layers)

    def frame_lengths(self, lengths: Tensor) -> Tensor:
        """Valid frames ``[B]`` for valid samples ``lengths [B]`` (on the same device)."""
        return conv_output_lengths(lengths, self.cfg.conv_layers)

    def num_frames(self, num_samples: int) -> int:
        """Frames for ``num_samples`` samples (0 when shorter than the receptive field)."""
        return conv_output_length(int(num_samples), self.cfg.conv_layers)


def _valid_mask(lengths: Tensor, size: int) -> Tensor:
    """``[batch, size]`` bool, True where ``index < length``."""
    return torch.arange(size, device=lengths.device)[None, :] < lengths[:, None]


class ChannelLayerNorm(nn.LayerNorm):
    """LayerNorm over channels of a ``[batch, channel, time]`` tensor (fairseq ``Fp32LayerNorm`` + transposes)."""

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x.transpose(1, 2)).transpose(1, 2)


class _MaskedGroupNorm(torch.autograd.Function):
    """``GroupNorm(C, C)`` over valid steps with a hand-written backward.

    Autograd of the plain expression keeps ~20 elementwise passes over ``[B, C, T]`` in fp32 (the
    first conv layer's output, the largest activation of a waveform encoder: ~40 % of a tiny model's
    CPU step); this forward is the same expression and the backward is the closed form, ~10 passes:
    ``dx = rstd · (g − m · (Σg + x̂ · Σg·x̂) / N)`` with ``g = dy · w``, sums over all steps, ``N`` valid
    steps, ``m`` the valid mask (tested against autograd).
    """

    @staticmethod
    def forward(ctx, x: Tensor, m: Tensor, weight: Tensor | None, bias: Tensor | None, eps: float) -> Tensor:
        xf = x.float()
        count = m.sum(-1, keepdim=True).clamp(min=1.0)  # [B, 1, 1]
        mean = (xf * m).sum(-1, keepdim=True) / count
        xc = xf - mean
        var = ((xc * m) ** 2).sum(-1, keepdim=True) / count
        rstd = torch.rsqrt(var + eps)  # [B, C, 1]
        xhat = xc * rstd
        y = xhat if weight is None else xhat * weight.float()[None, :, None] + bias.float()[None, :, None]
        ctx.save_for_backward(xhat, rstd, m, count, weight)
        ctx.x_dtype = x.dtype
        return y.to(x.dtype)

    @staticmethod
    def backward(ctx, dy: Tensor):
        xhat, rstd, m, count, weight = ctx.saved_tensors
        dyf = dy.float()
        dw = db = None
        if weight is not None:
            if ctx.needs_input_grad[2]:
                dw = (dyf * xhat).sum((0, 2)).to(weight.dtype)
            if ctx.needs_input_grad[3]:
                db = dyf.sum((0, 2)).to(weight.dtype)
            g = dyf * weight.float()[None, :, None]
        else:
            g = dyf
        dx = None
        if ctx.needs_input_grad[0]:
            sum_g = g.sum(-1, keepdim=True) / count  # [B, C, 1]
            sum_gx = (g * xhat).sum(-1, keepdim=True) / count
            dx = ((g - m * (xhat * sum_gx + sum_g)) * rstd).to(ctx.x_dtype)
        return dx, None, dw, db, None


def masked_group_norm(x: Tensor, valid: Tensor, norm: nn.GroupNorm) -> Tensor:
    """``GroupNorm(C, C)`` statistics over valid time steps only.

    Args:
        x: ``[batch, channel, time]``.
        valid: ``[batch, time]`` bool, True for samples inside the item.
        norm: the module whose ``weight``/``bias``/``eps`` are used (num_groups == channels).
    Returns:
        ``[batch, channel, time]``; padded steps hold normalised garbage that no valid frame reads.
    """
    # statistics in fp32 even under autocast (fairseq Fp32GroupNorm; nn.GroupNorm autocasts to fp32)
    m = valid[:, None, :].to(torch.float32)
    weight, bias = (norm.weight, norm.bias) if norm.affine else (None, None)
    return _MaskedGroupNorm.apply(x, m, weight, bias, norm.eps)


class ConvLayer(nn.Module):
    """Conv1d → optional norm → GELU. Input/output ``[batch, channel, time]``."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int, bias: bool, norm: nn.Module | None):
        super().__init__()
        self.kernel, self.stride = kernel, stride
        self.conv = nn.Conv1d(in_ch, out_ch, kernel, stride=stride, bias=bias)
        self.norm = norm

    def forward(self, x: Tensor, valid: Tensor | None = None) -> Tensor:
        x = self.conv(x)
        if isinstance(self.norm, nn.GroupNorm) and valid is not None:
            x = masked_group_norm(x, valid, self.norm)
        elif self.norm is not None:
            x = self.norm(x)
        # ChannelLayerNorm returns a transposed view: GELU's backward on mixed strides takes a scalar
        # path ~15x slower than one copy to contiguous (data2vec2-tiny: a quarter of the step)
        return F.gelu(x.contiguous())


class ConvFrontend(nn.Module):
    """Waveform → frame features.

    Args:
        conv_layers: ``((out_channels, kernel, stride), ...)`` (fairseq ``conv_feature_layers``).
        mode: ``"group_norm"`` or ``"layer_norm"`` (fairseq ``extractor_mode``).
        bias: conv bias (fairseq ``conv_bias``).
    """

    def __init__(self, conv_layers: tuple[ConvSpec, ...], mode: str = "group_norm", bias: bool = False):
        super().__init__()
        if mode not in ("group_norm", "layer_norm"):
            raise ValueError(f"extractor_mode must be 'group_norm' or 'layer_norm', got {mode!r}")
        self.conv_specs = tuple(tuple(int(v) for v in spec) for spec in conv_layers)
        layers = []
        in_ch = 1
        for i, (out_ch, kernel, stride) in enumerate(self.conv_specs):
            norm: nn.Module | None = None
            if mode == "group_norm" and i == 0:
                norm = nn.GroupNorm(out_ch, out_ch, affine=True)
            elif mode == "layer_norm":
                norm = ChannelLayerNorm(out_ch, elementwise_affine=True)
            layers.append(ConvLayer(in_ch, out_ch, kernel, stride, bias, norm))
            in_ch = out_ch
        self.layers = nn.ModuleList(layers)
        self.out_dim = in_ch

    def forward(self, wavs: Tensor, lengths: Tensor | None = None) -> Tensor:
        """``wavs [batch, sample]`` (+ valid ``lengths [batch]``) → features ``[batch, frame, channel]``."""
        x = wavs.unsqueeze(1)
        for layer in self.layers:
            valid = None
            if lengths is not None and isinstance(layer.norm, nn.GroupNorm):
                # length of this layer's *output*, i.e. what the norm sees
                out_len = conv_output_lengths(lengths, ((0, layer.kernel, layer.stride),))
                valid = _valid_mask(out_len, (x.shape[-1] - layer.kernel) // layer.stride + 1)
            x = layer(x, valid)
            if lengths is not None:
                lengths = conv_output_lengths(lengths, ((0, layer.kernel, layer.stride),))
        return x.transpose(1, 2)


def fairseq_init(frontend: ConvFrontend, transformer: nn.Module) -> None:
    """fairseq's initialisation of a wav2vec-style encoder: kaiming-normal conv front end, BERT init
    (``N(0, 0.02)``, zero bias) of every ``nn.Linear`` in ``transformer`` (in module order, so the same
    seed gives the same weights whichever family calls it)."""
    for layer in frontend.layers:
        nn.init.kaiming_normal_(layer.conv.weight)
    for module in transformer.modules():
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            nn.init.zeros_(module.bias)
