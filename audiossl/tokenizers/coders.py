"""Acoustic codecs as coders for :func:`audiossl.tokenizers.labelling.label_codes`: each has
``sample_rate``, ``hop``, ``codebook_size``, ``num_codebooks``, ``tokenizer_info`` and ``encode``."""

from __future__ import annotations

from pathlib import Path

from audiossl.tokenizers.encodec_codes import load_encodec
from audiossl.tokenizers.rvq.family import load_pretrain_checkpoint


class RVQCoder:
    """An RVQ-VAE checkpoint as a coder: ``encode(wavs [B, S], lengths [B])`` → per item ``[frames, num_codebooks]`` codes."""

    def __init__(self, ckpt: Path, device: str) -> None:
        self.model = load_pretrain_checkpoint(ckpt, map_location=device)
        cfg = self.model.cfg
        self.sample_rate, self.hop = cfg.sample_rate, cfg.hop
        self.codebook_size, self.num_codebooks = cfg.codebook_size, cfg.num_codebooks
        self.tokenizer_info = {"kind": "rvq", "checkpoint": str(ckpt), "sample_rate": cfg.sample_rate, "hop": cfg.hop}
        self.device = device

    def encode(self, wavs, lengths):
        codes = self.model.encode(wavs.to(self.device)).cpu().numpy()
        return [codes[b, : -(-int(n) // self.hop)] for b, n in enumerate(lengths.tolist())]


class EncodecCoder:
    """A local transformers EnCodec model as a coder (same interface as :class:`RVQCoder`)."""

    def __init__(self, model_dir: Path, bandwidth: float, device: str) -> None:
        self.codes = load_encodec(model_dir, bandwidth, device)
        self.sample_rate, self.hop = self.codes.sample_rate, int(self.codes.model.config.hop_length)
        self.codebook_size, self.num_codebooks = self.codes.codebook_size, self.codes.num_codebooks
        self.tokenizer_info = self.codes.tokenizer_info()

    def encode(self, wavs, lengths):
        return self.codes.encode(wavs, lengths, fit=False)
