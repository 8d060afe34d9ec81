"""BEATs iteration-1 tokenizer: frozen random projection + frozen random codebook (BEST-RQ style).

Each normalised 16 × 16 fbank patch (:mod:`audiossl.models.patch_frontend`, 256 values) is
projected by a frozen Xavier-normal matrix (no bias) and replaced by the index of its nearest code
in a frozen random codebook (1,024 standard-normal codes), both sides l2-normalised as in the BEATs
paper (§3.2, ``argmin_i ‖l2(v_i) − l2(W x)‖²``) and BEST-RQ: the nearest code by cosine.
``normalize="layernorm"`` is what audiossl did before and what ESPnet's ``RandomProjectionQuantizer``
(espnet2/beats/random_tokenizer.py) does: an affine-free LayerNorm on the projection, raw codes,
Euclidean distance; it is kept to reproduce labels of tokenizers saved then and ESPnet's labels
(a saved ``random_projection.json`` without the field loads as ``layernorm``). Nothing is trained: the seed alone fixes the labels, and the tensors are also stored
(``random_projection.safetensors`` + ``random_projection.json``) so labels can be checked or
reproduced on another machine.

Distances are ``‖x‖² + ‖c‖² − 2 x·c`` with one matmul per chunk of patches
(:func:`audiossl.tokenizers.kmeans.assign`), never the ``[B, L, K, D]`` broadcast.

    wavs [B, S] ─beats_fbank─▶ [B, T_f, 128] ─patchify─▶ [B, T, 8, 256] ─proj─▶ [B, T, 8, D]
        ─l2norm─▶ nearest l2-normalised code ─▶ codes [B, T, 8] at 6.25 Hz
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save
from torch import Tensor, nn
from torch.nn import functional as F

from audiossl.models.patch_frontend import NUM_MEL_BINS, PATCH, PATCH_RATE, beats_fbank, patch_frame_lengths, patchify
from audiossl.tokenizers.kmeans import assign
from audiossl.utils.config import DictConfig, from_dict_checked
from audiossl.utils.fileio import atomic_open, atomic_write_json

NORMALIZE = ("l2", "layernorm")
WEIGHTS_NAME = "random_projection.safetensors"
META_NAME = "random_projection.json"


@dataclass
class RandomProjectionConfig(DictConfig):
    num_codes: int = 1024
    """Codebook size."""
    dim: int = 256
    """Projection / code dimension."""
    seed: int = 0
    """Seed of the projection and the codebook (same seed → same codes, on any device)."""
    patch: int = PATCH
    """Patch side in fbank frames and mel bins."""
    num_mel_bins: int = NUM_MEL_BINS
    """Mel bins of the fbank (``num_mel_bins / patch`` codes per time step)."""
    chunk_size: int = 16384
    """Patches per distance matmul."""
    normalize: str = "l2"
    """``l2``: projections and codes l2-normalised (BEATs, BEST-RQ); ``layernorm``: audiossl's earlier
    affine-free LayerNorm on the projection and raw codes (only to reproduce labels of saved tokenizers)."""

    def __post_init__(self) -> None:
        if self.normalize not in NORMALIZE:
            raise ValueError(f"normalize must be one of {NORMALIZE}, got {self.normalize!r}")

    @property
    def input_dim(self) -> int:
        return self.patch * self.patch

    @property
    def codes_per_frame(self) -> int:
        return self.num_mel_bins // self.patch

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> RandomProjectionConfig:
        return from_dict_checked(cls, d, defaults={"normalize": "layernorm"})  # saved before the field existed: LayerNorm'd projections


class RandomProjectionTokenizer(nn.Module):
    """Frozen BEST-RQ tokenizer over fbank patches. Buffers: ``projection [dim, 256]``, ``codebook [K, dim]``."""

    def __init__(self, cfg: RandomProjectionConfig):
        super().__init__()
        self.cfg = cfg
        g = torch.Generator().manual_seed(cfg.seed)
        proj = torch.empty(cfg.dim, cfg.input_dim)
        nn.init.xavier_normal_(proj, generator=g)
        self.register_buffer("projection", proj)
        self.register_buffer("codebook", torch.randn(cfg.num_codes, cfg.dim, generator=g))

    @property
    def frame_rate(self) -> float:
        return PATCH_RATE * PATCH / self.cfg.patch

    def project(self, patches: Tensor) -> Tensor:
        """``patches [..., 256]`` → normalised projections ``[..., dim]`` (fp32; unit rows for ``l2``)."""
        x = patches.float() @ self.projection.T
        if self.cfg.normalize == "l2":
            return F.normalize(x, dim=-1, eps=1e-6)
        return F.layer_norm(x, (self.cfg.dim,))

    def codes(self) -> Tensor:
        """The codebook as searched ``[K, dim]``: unit rows for ``l2``, raw for ``layernorm``."""
        return F.normalize(self.codebook, dim=-1, eps=1e-6) if self.cfg.normalize == "l2" else self.codebook

    @torch.no_grad()
    def encode_patches(self, patches: Tensor) -> Tensor:
        """``patches [B, T, F, 256]`` → codes ``[B, T, F]`` int64."""
        x = self.project(patches)
        codes, _ = assign(x.reshape(-1, self.cfg.dim), self.codes(), self.cfg.chunk_size)
        return codes.view(x.shape[:-1])

    @torch.no_grad()
    def forward(self, wavs: Tensor, lengths: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``wavs [B, S]`` (16 kHz, zero padded), ``lengths [B]`` → ``(codes [B, T, F], frames [B])``.

        Codes past an item's ``frames[b]`` come from padding and must be ignored.
        """
        fb, _ = beats_fbank(wavs, lengths, num_mel_bins=self.cfg.num_mel_bins)
        codes = self.encode_patches(patchify(fb, self.cfg.patch))
        if lengths is None:
            lengths = torch.full((wavs.shape[0],), wavs.shape[1], dtype=torch.long, device=wavs.device)
        return codes, patch_frame_lengths(lengths, self.cfg.patch)

    def fingerprint(self) -> str:
        """sha256 of the projection and codebook bytes (identifies the labels' tokenizer)."""
        h = hashlib.sha256()
        for t in (self.projection, self.codebook):
            h.update(t.detach().cpu().contiguous().numpy().tobytes())
        return h.hexdigest()

    def identity(self) -> dict:
        """What a label sidecar records about this tokenizer."""
        return {"kind": "random-projection", **self.cfg.to_dict(), "sha256": self.fingerprint()}


def save_random_projection(tok: RandomProjectionTokenizer, out_dir: str | os.PathLike) -> Path:
    """Write ``random_projection.safetensors`` (projection, codebook) + ``.json`` (config, sha256)."""

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tensors = {"projection": tok.projection.detach().cpu().contiguous(), "codebook": tok.codebook.detach().cpu().contiguous()}
    with atomic_open(out_dir / WEIGHTS_NAME, "wb") as f:
        f.write(save(tensors, metadata={"kind": "random-projection"}))
    atomic_write_json(out_dir / META_NAME, {"config": tok.cfg.to_dict(), "sha256": tok.fingerprint()})
    return out_dir


def load_random_projection(path: str | os.PathLike) -> RandomProjectionTokenizer:
    """Read a directory written by :func:`save_random_projection` (safetensors only, never unpickles)."""

    path = Path(path)
    meta_path, weights = path / META_NAME, path / WEIGHTS_NAME
    for p in (meta_path, weights):
        if not p.is_file():
            raise FileNotFoundError(f"{p} not found: {path} is not a random-projection tokenizer directory (write one with --save)")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        cfg = RandomProjectionConfig.from_dict(meta["config"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{meta_path}: bad tokenizer metadata: {e}") from None
    tok = RandomProjectionTokenizer(cfg)
    state = load_file(str(weights))
    for name in ("projection", "codebook"):
        want = getattr(tok, name).shape
        if name not in state or state[name].shape != want:
            got = list(state[name].shape) if name in state else "missing"
            raise ValueError(f"{weights}: tensor {name!r} is {got}, expected {list(want)} from {meta_path.name}")
        getattr(tok, name).copy_(state[name])
    if meta.get("sha256") and meta["sha256"] != tok.fingerprint():
        raise ValueError(f"{weights}: contents do not match the sha256 in {meta_path.name} (corrupt or edited file)")
    return tok
