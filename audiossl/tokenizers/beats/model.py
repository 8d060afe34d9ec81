"""BEATs iteration-n tokenizer: patch encoder → cosine EMA VQ → estimator that predicts a frozen teacher.

Chen et al. 2022 (BEATs), §2.2 "self-distilled tokenizer"; by default the tokenizer is unilm's
``beats/Tokenizers.py`` (the released ``Tokenizer_iter*`` checkpoints load into it, see
:mod:`audiossl.tokenizers.beats.checkpoint`)::

    wavs [B, S] ─beats_fbank─▶ [B, Tf, 128] ─Conv2d 16×16/16 (patch_embedding)─▶ [B, T·F, E]  (T at 6.25 Hz, F = 8 bands)
      ─LayerNorm─▶ post_extract_proj ─▶ BEATs encoder (models/beats.py: pos conv, post-LN layers)─▶ [B, T·F, D]
      ─quantize_layer: Linear─Tanh─Linear─▶ [B, T·F, 256] ─l2norm + NormEMA VQ (1024 codes)─▶ quantized  ← codes [B, T, F]
      ─Linear + transformer (estimator, 3 layers)─▶ Linear ─▶ [B, T·F, D_teacher]
      loss = mean(1 − cos(estimate, teacher target)) + commitment loss          (valid patches only)

Named options keep our earlier variants (recipes/beats/tokenizer_*.yaml, README "BEATs"):
``encoder_type="raw_patch"`` (LayerNorm'd raw 16×16 patch + Linear + band embedding → HuBERT-style
transformer → one Linear head), ``codebook_update="laplace"`` (EMA of sums with Laplace-smoothed
counts) and ``dead_code_threshold > 0`` (restart of dead codes). unilm does not release the
estimator; ours is a Linear + 3-layer transformer + Linear.

The **teacher** (``cfg.teacher``: an upstream spec or checkpoint directory, any
:func:`audiossl.upstream.load.load_upstream` source) is loaded on the first training forward,
frozen, and kept out of ``state_dict()`` / ``parameters()`` (held in a plain attribute), so
checkpoints, the optimiser and DDP/FSDP see only the tokenizer. Its last hidden layer is the target.

Teacher → patch alignment (``teacher_layout``):

* ``"time"`` (any upstream, e.g. HuBERT at 50 Hz or a BEATs upstream pooled to 6.25 Hz): teacher
  frame ``j`` (centre at ``(j + ½) / r_t`` s) belongs to patch time step ``⌊(j + ½) · 6.25 / r_t⌋``;
  each step's target is the **mean** of its teacher frames (nearest frame when a slow teacher
  leaves a step empty), shared by the step's ``F`` frequency patches. Mean pooling keeps everything
  the teacher says about the 160 ms window; the band split is left to the tokenizer's own input.
* ``"patch"`` (a BEATs teacher, as in the paper): the BEATs encoder behind the upstream is called
  directly, so its last layer gives one vector per patch in the same time-major order
  (``[B, T·F, D]``, before the upstream's frequency pooling); used as is.
* ``"auto"`` (default): ``patch`` when the teacher is a BEATs upstream, else ``time``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import ClassVar

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from audiossl.models.beats.model import BeatsConfig, BeatsModel
from audiossl.models.patch_frontend import (
    NUM_MEL_BINS,
    PATCH,
    PATCH_RATE,
    beats_fbank,
    num_patch_frames,
    patch_frame_lengths,
    patchify,
)
from audiossl.models.transformer import TransformerEncoder
from audiossl.tokenizers.vq import UPDATES, EMAVectorQuantizer, VQConfig
from audiossl.upstream.load import load_upstream
from audiossl.utils.config import DictConfig, from_dict_checked

ENCODER_TYPES = ("beats", "raw_patch")


@dataclass
class BeatsTokenizerConfig(DictConfig):
    """BEATs tokenizer; field docstrings name the unilm ``beats/Tokenizers.py`` option where one exists."""

    family: ClassVar[str] = "beats_tokenizer"

    sample_rate: int = 16000
    """Audio rate (the fbank is 16 kHz)."""
    num_mel_bins: int = NUM_MEL_BINS
    """Fbank bins (BEATs 128)."""
    patch: int = PATCH
    """Patch side (BEATs ``input_patch_size`` 16)."""
    encoder_type: str = "beats"
    """``beats``: unilm's tokenizer (Conv2d patches → LN → BEATs encoder → Linear–Tanh–Linear);
    ``raw_patch``: our earlier variant (LN'd raw patch + band embedding → HuBERT-style transformer → Linear)."""
    patch_embed_dim: int = 512
    """Conv2d patch embedding width (``embed_dim``; ``beats`` encoder only)."""
    conv_bias: bool = False
    """Bias in the patch Conv2d (``conv_bias``)."""
    embed_dim: int = 768
    """Tokenizer encoder width (``encoder_embed_dim``)."""
    num_layers: int = 12
    """Tokenizer encoder layers (``encoder_layers``)."""
    num_heads: int = 12
    """Attention heads (``encoder_attention_heads``)."""
    ffn_dim: int = 3072
    """FFN width (``encoder_ffn_embed_dim``)."""
    pos_conv_kernel: int = 128
    """Positional conv kernel in patches (BEATs ``conv_pos``; the sequence is T·F patches long)."""
    pos_conv_groups: int = 16
    """Positional conv groups (``conv_pos_groups``)."""
    dropout: float = 0.1
    """Residual dropout (``dropout``)."""
    attention_dropout: float = 0.1
    """Attention dropout (``attention_dropout``)."""
    activation_dropout: float = 0.0
    """Dropout after the FFN activation (``activation_dropout``; ``beats`` encoder only, as the next fields)."""
    dropout_input: float = 0.0
    """Dropout after the patch projection (``dropout_input``)."""
    encoder_layerdrop: float = 0.0
    """LayerDrop (``encoder_layerdrop``)."""
    layer_norm_first: bool = False
    """Pre-LN layers (``layer_norm_first``)."""
    deep_norm: bool = False
    """DeepNorm residual scaling (``deep_norm``)."""
    relative_position_embedding: bool = False
    """Bucketed relative position bias (``relative_position_embedding``)."""
    num_buckets: int = 320
    """Relative position buckets (``num_buckets``)."""
    max_distance: int = 1280
    """Relative position max distance (``max_distance``)."""
    gru_rel_pos: bool = False
    """Gated relative position bias (``gru_rel_pos``)."""
    codebook_size: int = 1024
    """VQ codes (``quant_n``)."""
    codebook_dim: int = 256
    """VQ code dimension (``quant_dim``)."""
    codebook_decay: float = 0.99
    """EMA decay of the codebook (``NormEMAVectorQuantizer`` ``decay``)."""
    codebook_update: str = "unilm"
    """``unilm`` (EMA of normalised batch means, BEATs) or ``laplace`` (EMA of sums, Laplace-smoothed counts)."""
    commitment_weight: float = 1.0
    """Commitment loss weight (BEATs ``beta``)."""
    dead_code_threshold: float = 0.0
    """Restart codes whose EMA count falls below this fraction of the mean (0 = never, as BEATs)."""
    kmeans_iters: int = 10
    """Spherical k-means iterations initialising the codebook on the first batch."""
    estimator_dim: int = 768
    """Estimator width."""
    estimator_layers: int = 3
    """Estimator transformer layers (BEATs: 3)."""
    estimator_heads: int = 12
    """Estimator attention heads."""
    estimator_ffn_dim: int = 3072
    """Estimator FFN width."""
    teacher: str = ""
    """Teacher upstream spec (checkpoint dir, ``beats:<file>``, ``hf:<dir>``, ...); only needed to train."""
    teacher_dim: int = 768
    """Width of the teacher's last layer (``audiossl tokenizer train beats`` reads it from the teacher)."""
    teacher_layout: str = "auto"
    """``time`` (frames at the teacher's rate, pooled to patch steps), ``patch`` (a BEATs teacher's
    per-patch outputs) or ``auto`` (``patch`` for BEATs teachers, else ``time``); see the module docstring."""
    cosine_weight: float = 1.0
    """Weight of the cosine distillation loss."""

    def __post_init__(self) -> None:
        if self.encoder_type not in ENCODER_TYPES:
            raise ValueError(f"encoder_type must be one of {ENCODER_TYPES}, got {self.encoder_type!r}")
        if self.codebook_update not in UPDATES:
            raise ValueError(f"codebook_update must be one of {UPDATES}, got {self.codebook_update!r}")
        if self.teacher_layout not in ("auto", "time", "patch"):
            raise ValueError(f"teacher_layout must be 'auto', 'time' or 'patch', got {self.teacher_layout!r}")
        for dim, heads, what in ((self.embed_dim, self.num_heads, "embed_dim"), (self.estimator_dim, self.estimator_heads, "estimator_dim")):
            if dim % heads:
                raise ValueError(f"{what} {dim} is not divisible by its number of heads {heads}")
        if self.embed_dim % self.pos_conv_groups or self.estimator_dim % self.pos_conv_groups:
            raise ValueError(f"embed_dim and estimator_dim must be divisible by pos_conv_groups {self.pos_conv_groups}")
        if self.num_mel_bins % self.patch:
            raise ValueError(f"num_mel_bins {self.num_mel_bins} is not a multiple of patch {self.patch}")

    @property
    def bands(self) -> int:
        """Frequency patches per time step (8)."""
        return self.num_mel_bins // self.patch

    @property
    def num_classes(self) -> int:
        return self.codebook_size

    def vq_config(self) -> VQConfig:
        return VQConfig(
            num_codes=self.codebook_size, dim=self.codebook_dim, decay=self.codebook_decay, commitment_weight=self.commitment_weight,
            update=self.codebook_update, kmeans_init=True, kmeans_iters=self.kmeans_iters, dead_code_threshold=self.dead_code_threshold,
        )

    def beats_config(self) -> BeatsConfig:
        """The :class:`BeatsConfig` of the ``beats`` encoder (unilm ``TokenizersConfig`` fields)."""
        return BeatsConfig(
            sample_rate=self.sample_rate, input_patch_size=self.patch, embed_dim=self.patch_embed_dim, conv_bias=self.conv_bias,
            encoder_layers=self.num_layers, encoder_embed_dim=self.embed_dim, encoder_ffn_embed_dim=self.ffn_dim,
            encoder_attention_heads=self.num_heads, layer_norm_first=self.layer_norm_first, deep_norm=self.deep_norm,
            layer_wise_gradient_decay_ratio=1.0, dropout=self.dropout, attention_dropout=self.attention_dropout,
            activation_dropout=self.activation_dropout, encoder_layerdrop=self.encoder_layerdrop, dropout_input=self.dropout_input,
            conv_pos=self.pos_conv_kernel, conv_pos_groups=self.pos_conv_groups, relative_position_embedding=self.relative_position_embedding,
            num_buckets=self.num_buckets, max_distance=self.max_distance, gru_rel_pos=self.gru_rel_pos,
            num_codebooks=self.bands, predictor_embed_dim=self.embed_dim, num_classes=self.codebook_size,
        )

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> BeatsTokenizerConfig:
        legacy = {"encoder_type": "raw_patch", "codebook_update": "laplace"}  # saved before the unilm defaults: the earlier variant
        return from_dict_checked(cls, d, defaults=None if "encoder_type" in d else legacy)


def beats_tokenizer_tiny(**overrides) -> BeatsTokenizerConfig:
    """CPU-sized tokenizer (~0.6 M params): 64-dim patches, 2 × 128 encoder, 1 × 128 estimator, 1024 × 256 codebook."""
    cfg = BeatsTokenizerConfig(
        patch_embed_dim=64, embed_dim=128, num_layers=2, num_heads=2, ffn_dim=512, pos_conv_kernel=32, pos_conv_groups=8, dropout=0.0,
        attention_dropout=0.0, estimator_dim=128, estimator_layers=1, estimator_heads=2, estimator_ffn_dim=512, teacher_dim=128,
    )
    return replace(cfg, **overrides)


def beats_tokenizer_base(**overrides) -> BeatsTokenizerConfig:
    """BEATs tokenizer (unilm ``TokenizersConfig`` defaults): 512-dim patches, 12 × 768 encoder, 1024 × 256 cosine EMA codebook, 3-layer estimator."""
    return replace(BeatsTokenizerConfig(), **overrides)


CONFIGS = {"tiny": beats_tokenizer_tiny, "base": beats_tokenizer_base}


@dataclass
class TokenizerOutput:
    """One step's loss terms (scalar tensors, no host sync) and the codes."""

    loss: Tensor
    """``cosine_weight × cos_loss + commit_loss``."""
    cos_loss: Tensor
    """Mean ``1 − cos(estimate, teacher)`` over valid patches."""
    commit_loss: Tensor
    codebook_usage: Tensor
    """Codes used / min(codebook size, valid patches) in the batch (:attr:`audiossl.tokenizers.vq.VQOutput.usage`)."""
    perplexity: Tensor
    """Code perplexity of the batch."""
    codes: Tensor
    """``[B, T, F]`` int64."""
    lengths: Tensor
    """``[B]`` valid patch time steps."""

    @property
    def extra_losses(self) -> dict[str, Tensor]:
        return {"cos_loss": self.cos_loss, "commit_loss": self.commit_loss, "codebook_usage": self.codebook_usage, "perplexity": self.perplexity}


class BeatsTokenizerEncoder(BeatsModel):
    """unilm ``Tokenizers`` up to the quantizer input: :class:`BeatsModel` (``patch_embedding``, ``layer_norm``,
    ``post_extract_proj``, ``encoder``: the same key names as unilm) + ``quantize_layer`` (Linear–Tanh–Linear)."""

    def __init__(self, cfg: BeatsTokenizerConfig):
        super().__init__(cfg.beats_config())
        self.tok_cfg = cfg
        d = cfg.embed_dim
        self.quantize_layer = nn.Sequential(nn.Linear(d, d), nn.Tanh(), nn.Linear(d, cfg.codebook_dim))

    def forward(self, wavs: Tensor, lengths: Tensor | None = None) -> tuple[list[Tensor], Tensor, Tensor, Tensor]:
        """``wavs [B, S]`` → ``(hidden [B, T·F, D] per layer, code inputs [B, T·F, codebook_dim], frames [B], padding [B, T·F])``.

        ``padding`` is bool, True = padding patch. Input shorter than one patch step gives ``T = 0``.
        """
        b, d = wavs.shape[0], self.cfg.encoder_embed_dim
        unpadded = lengths is None
        if lengths is None:
            lengths = torch.full((b,), wavs.shape[1], dtype=torch.long, device=wavs.device)
        if self.num_frames(wavs.shape[1]) == 0:
            empty = wavs.new_zeros(b, 0, d)
            frames = torch.zeros(b, dtype=torch.long, device=wavs.device)
            return [empty] * (len(self.encoder.layers) + 1), wavs.new_zeros(b, 0, self.tok_cfg.codebook_dim), frames, \
                torch.zeros(b, 0, dtype=torch.bool, device=wavs.device)
        x, frames, padding = self.patch_features(wavs, lengths)
        hidden = self.encode(x, None if unpadded else padding)  # no mask at all: SDPA may take its flash kernel
        return hidden, self.quantize_layer(hidden[-1]), frames, padding


class RawPatchTokenizerEncoder(nn.Module):
    """``encoder_type="raw_patch"``: patches → per-patch vectors. ``frame_rate`` 6.25 Hz; ``num_frames(samples)`` patch time steps."""

    def __init__(self, cfg: BeatsTokenizerConfig):
        super().__init__()
        self.cfg = cfg
        self.patch_norm = nn.LayerNorm(cfg.patch * cfg.patch)
        self.patch_proj = nn.Linear(cfg.patch * cfg.patch, cfg.embed_dim)
        self.band_emb = nn.Parameter(torch.zeros(cfg.bands, cfg.embed_dim))
        nn.init.normal_(self.band_emb, std=0.02)
        self.encoder = TransformerEncoder(
            cfg.embed_dim, cfg.num_layers, cfg.num_heads, cfg.ffn_dim, pos_conv_kernel=cfg.pos_conv_kernel,
            pos_conv_groups=cfg.pos_conv_groups, dropout=cfg.dropout, attention_dropout=cfg.attention_dropout,
        )
        self.to_code = nn.Linear(cfg.embed_dim, cfg.codebook_dim)

    @property
    def frame_rate(self) -> float:
        return PATCH_RATE * PATCH / self.cfg.patch

    def num_frames(self, num_samples: int) -> int:
        return num_patch_frames(int(num_samples), self.cfg.patch)

    def frame_lengths(self, lengths: Tensor) -> Tensor:
        return patch_frame_lengths(lengths, self.cfg.patch)

    def forward(self, wavs: Tensor, lengths: Tensor | None = None) -> tuple[list[Tensor], Tensor, Tensor, Tensor]:
        """``wavs [B, S]`` → ``(hidden [B, T·F, D] per layer, code inputs [B, T·F, codebook_dim], frames [B], padding [B, T·F])``.

        ``padding`` is bool, True = padding patch.
        """
        unpadded = lengths is None
        if lengths is None:
            lengths = torch.full((wavs.shape[0],), wavs.shape[1], dtype=torch.long, device=wavs.device)
        fb, _ = beats_fbank(wavs, lengths, num_mel_bins=self.cfg.num_mel_bins)
        patches = patchify(fb, self.cfg.patch)  # [B, T, F, 256]
        b, t, f, _ = patches.shape
        frames = self.frame_lengths(lengths)
        pad_t = torch.arange(t, device=wavs.device)[None, :] >= frames[:, None]  # [B, T]
        padding = pad_t[:, :, None].expand(b, t, f).reshape(b, t * f)
        x = self.patch_proj(self.patch_norm(patches)) + self.band_emb  # [B, T, F, D]
        x = x.reshape(b, t * f, -1).masked_fill(padding[..., None], 0.0)
        hidden = self.encoder(x, None if unpadded else padding)
        return hidden, self.to_code(hidden[-1]), frames, padding


class Estimator(nn.Module):
    """Quantized codes ``[B, L, codebook_dim]`` → teacher-space estimates ``[B, L, teacher_dim]``."""

    def __init__(self, cfg: BeatsTokenizerConfig):
        super().__init__()
        self.proj_in = nn.Linear(cfg.codebook_dim, cfg.estimator_dim)
        self.encoder = TransformerEncoder(
            cfg.estimator_dim, cfg.estimator_layers, cfg.estimator_heads, cfg.estimator_ffn_dim, pos_conv_kernel=cfg.pos_conv_kernel,
            pos_conv_groups=cfg.pos_conv_groups, dropout=cfg.dropout, attention_dropout=cfg.attention_dropout,
        )
        self.proj_out = nn.Linear(cfg.estimator_dim, cfg.teacher_dim)

    def forward(self, q: Tensor, padding: Tensor | None) -> Tensor:
        """``padding [B, L]`` (True = padding) or None for an unpadded batch (attention without a mask)."""
        x = self.proj_in(q)
        if padding is not None:
            x = x.masked_fill(padding[..., None], 0.0)
        return self.proj_out(self.encoder(x, padding)[-1])


def align_teacher(teacher: Tensor, teacher_lengths: Tensor, teacher_rate: float, num_steps: int, step_rate: float) -> Tensor:
    """Mean-pool teacher frames ``[B, T_t, D]`` onto patch time steps → ``[B, num_steps, D]`` (see module docstring).

    A frame belongs to step ``⌊(j + ½) · step_rate / teacher_rate⌋``; steps with no frame take the
    teacher frame nearest to their centre. Vectorised (no host sync); frames past
    ``teacher_lengths[b]`` are ignored.
    """
    b, tt, d = teacher.shape
    device = teacher.device
    teacher = teacher.float()
    if tt == 0 or num_steps == 0:
        return teacher.new_zeros(b, num_steps, d)
    j = torch.arange(tt, device=device)
    step = torch.floor((j + 0.5) * (step_rate / teacher_rate)).long()
    valid = (j[None, :] < teacher_lengths[:, None]) & (step[None, :] < num_steps)  # [B, T_t]
    step_c = step.clamp(max=max(num_steps - 1, 0))[None, :, None].expand(b, tt, d)
    w = valid.float()
    sums = teacher.new_zeros(b, num_steps, d).scatter_add_(1, step_c, teacher * w[..., None])
    counts = teacher.new_zeros(b, num_steps).scatter_add_(1, step_c[..., 0], w)
    centre = torch.floor((torch.arange(num_steps, device=device) + 0.5) * (teacher_rate / step_rate)).long()
    nearest = torch.minimum(centre[None, :], (teacher_lengths[:, None] - 1).clamp(min=0)).clamp(max=tt - 1)  # [B, T]
    fallback = teacher.gather(1, nearest[..., None].expand(b, num_steps, d))
    return torch.where(counts[..., None] > 0, sums / counts.clamp_min(1.0)[..., None], fallback)


class BeatsTokenizer(nn.Module):
    """Tokenizer encoder + EMA VQ + estimator; ``forward`` is one distillation step (see module docstring)."""

    family: ClassVar[str] = "beats_tokenizer"

    def __init__(self, cfg: BeatsTokenizerConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = BeatsTokenizerEncoder(cfg) if cfg.encoder_type == "beats" else RawPatchTokenizerEncoder(cfg)
        self.quantizer = EMAVectorQuantizer(cfg.vq_config())
        self.estimator = Estimator(cfg)
        # A list, not a module attribute: the teacher stays out of state_dict(), parameters() and .to().
        self._teacher: list = []

    @property
    def frame_rate(self) -> float:
        return self.encoder.frame_rate

    def teacher(self, device: torch.device):
        """The frozen teacher upstream on ``device`` (loaded on first use)."""
        if not self._teacher:
            if not self.cfg.teacher:
                raise ValueError(
                    "BeatsTokenizer: no teacher configured (model.overrides.teacher / --teacher); a teacher is needed "
                    "to train, not to label"
                )

            up = load_upstream(self.cfg.teacher, device=device)
            up.requires_grad_(False)
            if int(up.hidden_dim) != self.cfg.teacher_dim:
                raise ValueError(
                    f"teacher {self.cfg.teacher!r}: last layer has {up.hidden_dim} dims but teacher_dim is {self.cfg.teacher_dim}; "
                    f"set model.overrides.teacher_dim={up.hidden_dim} (`audiossl tokenizer train beats` does this for you)"
                )
            self._teacher.append(up)
        return self._teacher[0]

    def _patch_encoder(self, up):
        """The BEATs encoder behind upstream ``up`` (per-patch outputs), or None for other teachers."""
        enc = getattr(up, "model", None)
        cfg = getattr(enc, "cfg", None)
        if getattr(cfg, "num_codebooks", None) == self.cfg.bands and getattr(up, "frame_rate", None) == self.frame_rate:
            return enc
        return None

    def teacher_targets(self, wavs: Tensor, lengths: Tensor, num_steps: int) -> Tensor:
        """Teacher's last layer aligned to the patches: ``[B, num_steps · F, teacher_dim]`` (no grad)."""
        up = self.teacher(wavs.device)
        f, layout = self.cfg.bands, self.cfg.teacher_layout
        enc = self._patch_encoder(up) if layout in ("auto", "patch") else None
        if layout == "patch" and enc is None:
            raise ValueError(
                f"teacher {self.cfg.teacher!r}: teacher_layout='patch' needs a BEATs teacher with {f} patches per "
                f"160 ms step; use teacher_layout='time' (or 'auto') for {type(up).__name__}"
            )
        with torch.no_grad():
            if enc is not None:
                last = enc(wavs.float(), lengths).hidden_states[-1].float()  # [B, T_teacher · F, D]
                n = num_steps * f
                return F.pad(last, (0, 0, 0, max(0, n - last.shape[1])))[:, :n]
            out = up(wavs, lengths)
        last = out.hidden_states[-1].float()
        steps = align_teacher(last, out.lengths.to(wavs.device), float(up.frame_rate), num_steps, self.frame_rate)
        return steps[:, :, None, :].expand(-1, -1, f, -1).reshape(wavs.shape[0], num_steps * f, -1)

    def forward(self, wavs: Tensor, lengths: Tensor | None = None, targets: Tensor | None = None) -> TokenizerOutput:
        """``wavs [B, S]``, ``lengths [B]`` → :class:`TokenizerOutput` (``targets`` is ignored: the teacher makes them)."""
        unpadded = lengths is None  # then no attention gets a mask (the padding below is all False)
        if lengths is None:
            lengths = torch.full((wavs.shape[0],), wavs.shape[1], dtype=torch.long, device=wavs.device)
        _, z, frames, padding = self.encoder(wavs, None if unpadded else lengths)
        vq = self.quantizer(z, ~padding)
        est = self.estimator(vq.quantized, None if unpadded else padding)
        num_steps = z.shape[1] // self.cfg.bands
        target = self.teacher_targets(wavs, lengths, num_steps)
        valid = (~padding).float()
        cos = F.cosine_similarity(est.float(), target, dim=-1, eps=1e-6)
        cos_loss = ((1.0 - cos) * valid).sum() / valid.sum().clamp_min(1.0)
        loss = self.cfg.cosine_weight * cos_loss + vq.commit_loss
        codes = vq.codes.view(wavs.shape[0], num_steps, self.cfg.bands)
        return TokenizerOutput(loss, cos_loss, vq.commit_loss, vq.usage, vq.perplexity, codes, frames)

    @torch.no_grad()
    def tokenize(self, wavs: Tensor, lengths: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``wavs [B, S]`` → ``(codes [B, T, F] int64, frames [B])``; no teacher needed. Codes past ``frames[b]`` are padding."""
        _, z, frames, _ = self.encoder(wavs, lengths)
        codes = self.quantizer.nearest(z)
        return codes.view(wavs.shape[0], z.shape[1] // self.cfg.bands, self.cfg.bands), frames


def build_beats_tokenizer(cfg: BeatsTokenizerConfig) -> BeatsTokenizer:
    return BeatsTokenizer(cfg)
