"""HEAR 2021 API (https://hearbenchmark.com/hear-api.html) over any audiossl upstream.

    import audiossl.hear as m
    model = m.load_model("path/to/ckpt")          # or "hf:<dir>", "fairseq:<file>", "fbank"; "" = fbank
    emb = m.get_scene_embeddings(audio, model)     # audio [n, samples] at model.sample_rate → [n, D]
    emb, ts = m.get_timestamp_embeddings(audio, model)   # [n, T, D], timestamps ms [n, T]

Embedding = the uniform average of all hidden layers by default (``layer="mean"``), or one layer
(``layer=N``). Timestamps are the centres of each frame's receptive field. Scene embeddings are the
mean of the timestamp embeddings over time. Clips longer than ``chunk_seconds`` are run in
overlapping chunks (see :func:`audiossl.upstream.engine.forward_long`).
"""

from __future__ import annotations

import torch
from torch import nn

from audiossl.upstream.base import Upstream
from audiossl.upstream.engine import forward_long, receptive_field
from audiossl.upstream.load import load_upstream


class HearModel(nn.Module):
    """An upstream plus the attributes the HEAR API requires."""

    def __init__(self, upstream: Upstream, layer: int | str = "mean", chunk_seconds: float = 30.0) -> None:
        super().__init__()
        self.upstream = upstream
        self.layer = layer
        self.chunk_seconds = chunk_seconds
        self.sample_rate = int(upstream.sample_rate)
        self.scene_embedding_size = int(upstream.hidden_dim)
        self.timestamp_embedding_size = int(upstream.hidden_dim)
        if layer != "mean" and not -upstream.num_layers <= int(layer) < upstream.num_layers:
            raise ValueError(f"layer {layer} out of range for {upstream.name} ({upstream.num_layers} layers)")

    def _combine(self, hidden: list[torch.Tensor]) -> torch.Tensor:
        if self.layer == "mean":
            return torch.stack(hidden, 0).mean(0)
        return hidden[int(self.layer)]

    def embed(self, audio: torch.Tensor) -> torch.Tensor:
        """``[n, samples]`` → ``[n, frames, dim]``."""
        up = self.upstream
        dev = next(iter(up.parameters()), torch.empty(0)).device
        audio = audio.to(dev, torch.float32)
        n, s = audio.shape
        if self.chunk_seconds > 0 and s > self.chunk_seconds * self.sample_rate and up.chunkable:
            return torch.stack([self._combine(forward_long(up, a, self.chunk_seconds, 2.0)) for a in audio], 0)
        out = up(audio, torch.full((n,), s, dtype=torch.long, device=dev))
        return self._combine(out.hidden_states)

    def timestamps(self, n: int, frames: int) -> torch.Tensor:
        """Centre of each frame's window in ms, ``[n, frames]``."""
        hop_ms = 1000.0 / self.upstream.frame_rate
        centre_ms = 1000.0 * receptive_field(self.upstream) / 2 / self.sample_rate
        return (torch.arange(frames, dtype=torch.float32) * hop_ms + centre_ms).expand(n, frames).clone()


def load_model(model_file_path: str = "", **kwargs) -> HearModel:
    """HEAR entry point: ``model_file_path`` is any :func:`load_upstream` spec ("" → fbank).
    Keyword args: ``device`` ("cpu"), ``layer`` ("mean" or an index), ``chunk_seconds`` (30)."""
    spec = model_file_path or "fbank"
    up = load_upstream(spec, device=kwargs.get("device", "cpu"))
    return HearModel(up, layer=kwargs.get("layer", "mean"), chunk_seconds=kwargs.get("chunk_seconds", 30.0)).eval()


def get_timestamp_embeddings(audio: torch.Tensor, model: HearModel) -> tuple[torch.Tensor, torch.Tensor]:
    """``audio [n, samples]`` → (embeddings ``[n, T, D]``, timestamps in ms ``[n, T]``)."""
    if audio.dim() != 2:
        raise ValueError(f"audio must be [n_sounds, n_samples], got shape {tuple(audio.shape)}")
    with torch.no_grad():
        emb = model.embed(audio)
    return emb, model.timestamps(emb.shape[0], emb.shape[1]).to(emb.device)


def get_scene_embeddings(audio: torch.Tensor, model: HearModel) -> torch.Tensor:
    """``audio [n, samples]`` → ``[n, D]`` (mean over time of the timestamp embeddings)."""
    emb, _ = get_timestamp_embeddings(audio, model)
    if emb.shape[1] == 0:
        return emb.new_zeros(emb.shape[0], emb.shape[2])
    return emb.mean(dim=1)
