"""RVQ-VAE acoustic tokenizer: MERT's acoustic teacher when no pretrained codec is at hand.

A SEANet-style conv encoder (EnCodec, Défossez et al. 2022, without LSTM and weight norm) turns
24 kHz audio into 75 Hz latents (strides 2·4·5·8 = 320 samples), a :class:`ResidualVQ` with
8 EMA codebooks quantises them, and a mirrored conv-transpose decoder reconstructs the waveform.
Loss = multi-resolution STFT loss (spectral convergence + log-magnitude L1, Yamamoto et al.
2020) + waveform L1 + commitment. The codes ``[frame, 8]`` are the targets of MERT's 8 heads.

Shapes: ``wavs [batch, sample]`` → latents ``[batch, frame, latent_dim]`` → codes
``[batch, frame, num_codebooks]`` → reconstruction ``[batch, sample]``; ``frame = ceil(sample / 320)``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from audiossl.tokenizers.rvq.quantizer import ResidualVQ, RVQConfig
from audiossl.utils.config import DictConfig


@dataclass
class RVQVAEConfig(DictConfig):
    family: ClassVar[str] = "rvq"

    sample_rate: int = 24000
    """Audio rate the model reads (audio is resampled to it)."""
    strides: tuple[int, ...] = (2, 4, 5, 8)
    """Encoder downsampling factors (EnCodec 24 kHz: 2, 4, 5, 8); their product is the hop."""
    channels: int = 32
    """Channels of the first conv; doubled at each downsampling (EnCodec ``n_filters``)."""
    latent_dim: int = 128
    """Dimension of the quantised latents (EnCodec ``dimension``)."""
    num_codebooks: int = 8
    """Residual VQ levels = codes per frame."""
    codebook_size: int = 1024
    """Codes per level (the label classes)."""
    ema_decay: float = 0.99
    """EMA decay of the codebooks."""
    dead_threshold: float = 1.0
    """Codes used less than this often per batch (EMA) are restarted on batch vectors."""
    kmeans_iters: int = 10
    """k-means iterations initialising each codebook on the first batch."""
    stft_fft_sizes: tuple[int, ...] = (512, 1024, 2048)
    """FFT sizes of the multi-resolution STFT loss (hop = n/4, Hann window of n)."""
    stft_weight: float = 1.0
    """Weight of the STFT loss."""
    l1_weight: float = 0.1
    """Weight of the waveform L1 loss (EnCodec: 0.1)."""
    commitment_weight: float = 1.0
    """Weight of the commitment loss (summed over levels)."""

    @property
    def hop(self) -> int:
        return math.prod(self.strides)

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.hop

    @property
    def num_classes(self) -> int:
        return self.codebook_size

    def __post_init__(self) -> None:
        self.strides = tuple(int(s) for s in self.strides)
        self.stft_fft_sizes = tuple(int(n) for n in self.stft_fft_sizes)
        if not self.strides or min(self.strides) < 1:
            raise ValueError(f"strides={self.strides}: need at least one stride >= 1")
        if self.num_codebooks < 1 or self.codebook_size < 2:
            raise ValueError(f"num_codebooks={self.num_codebooks}, codebook_size={self.codebook_size}: need >= 1 and >= 2")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["strides"], d["stft_fft_sizes"] = list(self.strides), list(self.stft_fft_sizes)
        return d

    def rvq_config(self) -> RVQConfig:
        return RVQConfig(self.num_codebooks, self.codebook_size, self.latent_dim, self.ema_decay,
                         dead_threshold=self.dead_threshold, kmeans_iters=self.kmeans_iters,
                         commitment_weight=self.commitment_weight)


def rvq_tiny(**overrides) -> RVQVAEConfig:
    """CPU-minutes model for tests and the demo: 8 ch, 32-dim latents, 8 × 64 codes, faster EMA (small
    batches), VQ-VAE's commitment weight 0.25 (with 1.0 the latents of a tiny encoder collapse onto few codes)."""
    return RVQVAEConfig(**{"channels": 8, "latent_dim": 32, "codebook_size": 64, "ema_decay": 0.9, "commitment_weight": 0.25, "stft_fft_sizes": (256, 512, 1024), **overrides})


def rvq_base(**overrides) -> RVQVAEConfig:
    """EnCodec-24kHz-sized encoder/decoder (32 filters, 128-dim), 8 × 1024 codes at 75 Hz."""
    return RVQVAEConfig(**overrides)


CONFIGS = {"tiny": rvq_tiny, "base": rvq_base}


class _ResUnit(nn.Module):
    """``x + conv1(elu(conv3(elu(x))))`` on ``[batch, channel, time]``."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.block = nn.Sequential(nn.ELU(), nn.Conv1d(c, c // 2 or 1, 3, padding=1), nn.ELU(), nn.Conv1d(c // 2 or 1, c, 1))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.block(x)


class _Down(nn.Module):
    """Length ``m * s`` → ``m``: kernel ``2s``, stride ``s``, ``s`` samples of padding split over both ends."""

    def __init__(self, c_in: int, c_out: int, s: int) -> None:
        super().__init__()
        self.s = s
        self.conv = nn.Conv1d(c_in, c_out, 2 * s, stride=s)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.pad(x, (self.s - self.s // 2, self.s // 2)))


class _Up(nn.Module):
    """Length ``m`` → ``m * s`` (transposed :class:`_Down`)."""

    def __init__(self, c_in: int, c_out: int, s: int) -> None:
        super().__init__()
        self.s = s
        self.conv = nn.ConvTranspose1d(c_in, c_out, 2 * s, stride=s)

    def forward(self, x: Tensor) -> Tensor:
        y = self.conv(x)  # (m + 1) * s samples
        left = self.s - self.s // 2
        return y[..., left : y.shape[-1] - (self.s - left)]


class RVQEncoder(nn.Module):
    """``wavs [batch, sample]`` → latents ``[batch, frame, latent_dim]``, ``frame = ceil(sample / hop)``."""

    def __init__(self, cfg: RVQVAEConfig) -> None:
        super().__init__()
        self.cfg, self.hop = cfg, cfg.hop
        self.frame_rate = cfg.frame_rate
        layers: list[nn.Module] = [nn.Conv1d(1, cfg.channels, 7, padding=3)]
        c = cfg.channels
        for s in cfg.strides:
            layers += [_ResUnit(c), nn.ELU(), _Down(c, 2 * c, s)]
            c *= 2
        layers += [nn.ELU(), nn.Conv1d(c, cfg.latent_dim, 3, padding=1)]
        self.net = nn.Sequential(*layers)

    def num_frames(self, num_samples: int) -> int:
        return -(-int(num_samples) // self.hop)

    def forward(self, wavs: Tensor) -> Tensor:
        pad = (-wavs.shape[-1]) % self.hop
        return self.net(F.pad(wavs, (0, pad)).unsqueeze(1)).transpose(1, 2)


class RVQDecoder(nn.Module):
    """latents ``[batch, frame, latent_dim]`` → ``[batch, frame * hop]``."""

    def __init__(self, cfg: RVQVAEConfig) -> None:
        super().__init__()
        c = cfg.channels * 2 ** len(cfg.strides)
        layers: list[nn.Module] = [nn.Conv1d(cfg.latent_dim, c, 7, padding=3)]
        for s in reversed(cfg.strides):
            layers += [nn.ELU(), _Up(c, c // 2, s), _ResUnit(c // 2)]
            c //= 2
        layers += [nn.ELU(), nn.Conv1d(c, 1, 7, padding=3)]
        self.net = nn.Sequential(*layers)

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z.transpose(1, 2)).squeeze(1)


def multi_resolution_stft_loss(pred: Tensor, target: Tensor, fft_sizes: tuple[int, ...]) -> Tensor:
    """Mean over resolutions of spectral convergence + log-magnitude L1; ``[batch, sample]`` inputs, float32."""
    with torch.autocast(pred.device.type, enabled=False):
        pred, target = pred.float(), target.float()
        total = pred.new_zeros(())
        for n in fft_sizes:
            window = torch.hann_window(n, device=pred.device)

            def mag(x: Tensor) -> Tensor:
                spec = torch.stft(x, n, hop_length=n // 4, win_length=n, window=window, return_complex=True)
                return spec.abs().clamp_min(1e-7)

            p, t = mag(pred), mag(target)
            sc = torch.linalg.vector_norm(t - p) / torch.linalg.vector_norm(t).clamp_min(1e-7)
            total = total + sc + (p.log() - t.log()).abs().mean()
        return total / len(fft_sizes)


@dataclass
class RVQVAEOutput:
    """What the trainer reads: scalar ``loss`` and ``extra_losses`` (logged by name); plus
    ``codes [batch, frame, level]``, ``recon [batch, sample]``, ``usage``/``perplexity [level]``."""

    loss: Tensor
    codes: Tensor
    recon: Tensor
    usage: Tensor
    perplexity: Tensor
    extra_losses: dict[str, Tensor] = field(default_factory=dict)


class RVQVAE(nn.Module):
    """Encoder → residual VQ → decoder, trained on audio alone (``targets`` are ignored)."""

    family: ClassVar[str] = "rvq"
    has_pretrain_head = True

    def __init__(self, cfg: RVQVAEConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = RVQEncoder(cfg)
        self.quantizer = ResidualVQ(cfg.rvq_config())
        self.decoder = RVQDecoder(cfg)

    @property
    def frame_rate(self) -> float:
        return self.cfg.frame_rate

    def _frame_mask(self, lengths: Tensor | None, batch: int, frames: int, device) -> Tensor:
        if lengths is None:
            return torch.ones(batch, frames, dtype=torch.bool, device=device)
        return torch.arange(frames, device=device)[None] * self.cfg.hop < lengths[:, None]

    def forward(self, wavs: Tensor, lengths: Tensor | None = None, targets: Tensor | None = None) -> RVQVAEOutput:
        """``wavs [batch, sample]`` zero padded, ``lengths [batch]`` → :class:`RVQVAEOutput`."""
        b, s = wavs.shape
        z = self.encoder(wavs)
        mask = self._frame_mask(lengths, b, z.shape[1], wavs.device)
        q = self.quantizer(z, mask)
        recon = self.decoder(q.quantized)[:, :s]
        if lengths is not None:
            recon = recon * (torch.arange(s, device=wavs.device)[None] < lengths[:, None])
        stft = multi_resolution_stft_loss(recon, wavs, self.cfg.stft_fft_sizes)
        l1 = (recon.float() - wavs.float()).abs().mean()
        loss = self.cfg.stft_weight * stft + self.cfg.l1_weight * l1 + q.commitment
        extra = {
            "stft_loss": stft, "wave_l1": l1, "commitment": q.commitment,
            "codebook_usage": q.usage.mean(), "codebook_perplexity": q.perplexity.mean(),
        }
        return RVQVAEOutput(loss, q.codes, recon, q.usage, q.perplexity, extra)

    @torch.no_grad()
    def encode(self, wavs: Tensor, num_levels: int | None = None) -> Tensor:
        """``wavs [batch, sample]`` → ``codes [batch, ceil(sample / hop), level]`` (no codebook update)."""
        return self.quantizer.encode(self.encoder(wavs), num_levels)

    @torch.no_grad()
    def decode(self, codes: Tensor) -> Tensor:
        """``codes [batch, frame, level]`` → ``[batch, frame * hop]``."""
        return self.decoder(self.quantizer.decode(codes))


def build_rvq_vae(cfg: RVQVAEConfig) -> RVQVAE:
    return RVQVAE(cfg)


def train_flops_per_second(cfg: RVQVAEConfig, crop_samples: int | None = None) -> float:
    """Analytic training FLOPs per audio-second: 3 × 2 × MACs of every conv (forward + backward), plus the VQ distances.

    The STFT loss and elementwise ops are left out (a few % for the tiny config).
    """
    sr, macs = cfg.sample_rate, 0.0
    rate, c = float(sr), cfg.channels
    macs += 1 * c * 7 * rate  # encoder input conv (and the mirrored decoder output conv below)
    for s in cfg.strides:
        res = (c * (c // 2 or 1) * 3 + (c // 2 or 1) * c) * rate
        rate /= s
        macs += 2 * res + 2 * (c * 2 * c * 2 * s * rate)  # encoder + decoder res units and (transposed) strided convs
        c *= 2
    macs += 2 * c * cfg.latent_dim * (3 + 7) / 2 * rate  # encoder out (k=3) and decoder in (k=7)
    macs += 1 * cfg.channels * 7 * sr
    vq_macs = cfg.num_codebooks * cfg.codebook_size * cfg.latent_dim * rate  # nearest-code distances (no backward)
    return 3 * 2 * macs + 2 * vq_macs
