"""EnCodec codes as MERT's acoustic targets, from a transformers ``EncodecModel`` on local disk.

The 24 kHz EnCodec at 6 kbps gives 8 residual codebooks × 1024 codes at 75 Hz (hop 320), the
targets of MERT's 8 heads. The model is read with ``local_files_only=True`` (never the hub) from
a directory written by ``save_pretrained`` (``config.json`` + ``model.safetensors``).

Batching: the 24 kHz model is causal and unnormalised, so zero padding at the end of a batch
does not change an utterance's codes; models with per-chunk normalisation or chunking (48 kHz)
are run one utterance at a time.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from audiossl.tokenizers.code_streams import expected_frames, fit_length


class EncodecError(ValueError):
    """A model directory or bandwidth that cannot be used; the message names the path and the fix."""


@dataclass
class EncodecCodes:
    """A loaded EnCodec model and the bandwidth to tokenize at."""

    model: torch.nn.Module
    bandwidth: float
    model_dir: Path

    @property
    def sample_rate(self) -> int:
        return int(self.model.config.sampling_rate)

    @property
    def frame_rate(self) -> float:
        return float(self.model.config.sampling_rate / self.model.config.hop_length)

    @property
    def num_codebooks(self) -> int:
        return int(self.model.quantizer.get_num_quantizers_for_bandwidth(self.bandwidth))

    @property
    def codebook_size(self) -> int:
        return int(self.model.config.codebook_size)

    @property
    def batchable(self) -> bool:
        c = self.model.config
        return not c.normalize and c.chunk_length is None

    def tokenizer_info(self) -> dict:
        return {"kind": "encodec", "model_dir": str(self.model_dir), "bandwidth": self.bandwidth,
                "sample_rate": self.sample_rate, "hop": int(self.model.config.hop_length)}

    @torch.no_grad()
    def encode(self, wavs: torch.Tensor, lengths: torch.Tensor, fit: bool = True) -> list[np.ndarray]:
        """``wavs [batch, sample]`` at :attr:`sample_rate` (zero padded), ``lengths [batch]`` →
        per utterance ``[expected_frames(length), num_codebooks]`` int64 codes
        (``fit=False``: the model's own ``ceil(length / hop)`` frames)."""
        dev = next(self.model.parameters()).device
        lens = [int(n) for n in lengths.tolist()]
        if not self.batchable and len(lens) > 1:
            return [c for i, n in enumerate(lens) for c in self.encode(wavs[i : i + 1, :n], lengths[i : i + 1], fit)]
        x = wavs.to(dev, torch.float32).unsqueeze(1)  # [batch, 1, sample]
        mask = (torch.arange(x.shape[-1], device=dev)[None] < lengths.to(dev)[:, None]).unsqueeze(1)
        out = self.model.encode(x, mask, bandwidth=self.bandwidth)
        codes = out.audio_codes  # [chunks, batch, codebooks, frames]
        codes = codes.permute(1, 0, 3, 2).reshape(codes.shape[1], -1, codes.shape[2]).cpu().numpy().astype(np.int64)
        hop = int(self.model.config.hop_length)
        # frames of utterance i: the first ceil(n / hop) of the padded batch, then rounded to the duration
        raw = [codes[i, : -(-n // hop)] for i, n in enumerate(lens)]
        if not fit:
            return raw
        return [fit_length(c, expected_frames(n, self.sample_rate, self.frame_rate)) for c, n in zip(raw, lens)]


def load_encodec(model_dir: str | os.PathLike, bandwidth: float = 6.0, device: str | torch.device = "cpu") -> EncodecCodes:
    """``EncodecModel.from_pretrained(model_dir, local_files_only=True)`` in eval mode.

    Raises :class:`EncodecError` when the directory is missing, is not an EnCodec model, or does
    not offer ``bandwidth`` (kbps; 6.0 → 8 codebooks for the 24 kHz model).
    """
    from transformers import EncodecConfig, EncodecModel  # lazy: optional dependency (transformers, the `bench` extra)

    model_dir = Path(model_dir)
    if not (model_dir / "config.json").is_file():
        raise EncodecError(
            f"{model_dir}: no config.json; expected a transformers EnCodec directory (e.g. facebook/encodec_24khz "
            f"downloaded beforehand and saved with save_pretrained). The hub is never contacted."
        )
    try:
        config = EncodecConfig.from_pretrained(model_dir, local_files_only=True)
    except (OSError, ValueError) as e:
        raise EncodecError(f"{model_dir / 'config.json'}: not an EnCodec config: {e}") from None
    if config.model_type != "encodec":
        raise EncodecError(f"{model_dir / 'config.json'}: model_type is {config.model_type!r}, expected 'encodec'")
    if float(bandwidth) not in [float(b) for b in config.target_bandwidths]:
        raise EncodecError(f"{model_dir}: bandwidth {bandwidth:g} kbps is not offered; choose one of {config.target_bandwidths}")
    try:
        model = EncodecModel.from_pretrained(model_dir, local_files_only=True, use_safetensors=True)
    except OSError as e:
        raise EncodecError(f"{model_dir}: cannot load the EnCodec weights (model.safetensors is required; convert a .bin with save_pretrained): {e}") from None
    model.eval().requires_grad_(False).to(device)
    return EncodecCodes(model, float(bandwidth), model_dir)
