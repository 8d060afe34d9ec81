"""The upstream base class and output: a frozen model that maps waveforms to layers.

``load_upstream(spec)`` (:mod:`audiossl.upstream.load`) builds one from a spec.

Every consumer (the extract CLI, the SUPERB-style bench harness, HuBERT k-means iteration) calls::

    up = load_upstream(spec, device="cpu")
    out = up(wavs, lengths)          # wavs [batch, sample] float, lengths [batch] long
    out.hidden_states                # list of [batch, frame, dim]; len == up.num_layers
    out.lengths                      # [batch] valid frames per item

Specs:

- ``<dir>`` or ``hubert:<dir>``: an audiossl checkpoint directory (``model.safetensors`` + ``config.json``)
  of any family (HuBERT, WavLM, BEATs, MERT; ``config.json``'s ``family`` picks the loader).
- ``hf:<dir>``: a transformers checkpoint directory (HuBERT, wav2vec 2.0, WavLM, data2vec-audio);
  see :mod:`audiossl.interop.hf`.
- ``fairseq:<file>``: a fairseq HuBERT checkpoint, read without fairseq and without unpickling
  code; see :mod:`audiossl.models.fairseq_io`.
- ``beats:<file>``: a released BEATs checkpoint (microsoft/unilm layout); :mod:`audiossl.models.beats.checkpoint`.
- ``mert:<dir>``: a released HF-format MERT checkpoint directory, read without ``trust_remote_code``;
  :mod:`audiossl.models.mert.hf`.
- ``s3prl:<name>[:<local ckpt>]``: any s3prl upstream that runs from local files;
  :mod:`audiossl.interop.s3prl_upstream`.
- ``fbank`` / ``mfcc``: the classic feature baselines; see :mod:`audiossl.upstream.baselines`.

The schemes live in one table, :data:`audiossl.upstream.specs.SCHEMES`, which ``--help`` texts list.

Layer convention (all sources are mapped onto it): ``hidden_states[0]`` is the input of the first
transformer layer (feature projection + convolutional position embedding, + the encoder LayerNorm
for post-LN models), ``hidden_states[i]`` the output of transformer layer ``i``; for pre-LN models
(Large/XL) the last entry has the encoder's final LayerNorm applied. This is what fairseq's
``extract_features`` hooks (s3prl) and transformers' ``output_hidden_states=True`` return.

Calls run under ``torch.no_grad()`` in eval mode (dropout and layer drop off).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class UpstreamOutput:
    hidden_states: list[torch.Tensor]  # each [batch, frame, dim]
    lengths: torch.Tensor  # [batch] valid frames per item


class Upstream(nn.Module):
    """Base class: subclasses set the attributes below and implement :meth:`_forward`.

    ``padding_invariant`` is False when padding a batch changes the valid frames' values (a conv
    front end with GroupNorm over time, as in HuBERT/wav2vec 2.0 Base): the extractor then runs
    such upstreams one utterance per forward to get exactly the single-pass result.
    ``chunkable`` is False when a long input must not be split (per-utterance normalisation).
    """

    sample_rate: int = 16000
    frame_rate: float = 50.0
    num_layers: int = 1
    hidden_dim: int = 0
    name: str = "upstream"
    padding_invariant: bool = True
    chunkable: bool = True
    early_exit: bool = False
    """True when ``_forward`` takes ``max_layer`` and skips the layers above it."""

    def _wrap(self, model: nn.Module, *, name: str, sample_rate: int, frame_rate: float, num_layers: int, hidden_dim: int) -> None:
        """Hold ``model`` frozen in eval mode as ``self.model`` and set the describing attributes."""
        self.model = model.eval()
        self.model.requires_grad_(False)
        self.name, self.sample_rate, self.frame_rate = name, int(sample_rate), float(frame_rate)
        self.num_layers, self.hidden_dim = int(num_layers), int(hidden_dim)

    def _forward(self, wavs: torch.Tensor, lengths: torch.Tensor) -> UpstreamOutput:
        raise NotImplementedError

    def num_frames(self, num_samples: int) -> int:
        """Exact number of frames one pass over ``num_samples`` samples yields."""
        raise NotImplementedError

    def frame_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """``[batch]`` samples → ``[batch]`` frames (host loop; not used inside model forward)."""
        return torch.tensor([self.num_frames(int(n)) for n in lengths.tolist()], dtype=torch.long)

    def forward(self, wavs: torch.Tensor, lengths: torch.Tensor | None = None, *, max_layer: int | None = None) -> UpstreamOutput:
        """``wavs [batch, sample]`` (zero padded), ``lengths [batch]`` → :class:`UpstreamOutput`.

        ``max_layer``: return only ``hidden_states[: max_layer + 1]``; upstreams with
        ``early_exit`` do not compute the layers above it (HuBERT Base up to layer 6: half the
        transformer). The states returned equal those of a full pass.
        """
        if wavs.dim() == 1:
            wavs = wavs.unsqueeze(0)
        if wavs.dim() != 2:
            raise ValueError(f"{self.name}: expected wavs [batch, sample], got shape {tuple(wavs.shape)}")
        if lengths is None:
            lengths = torch.full((wavs.shape[0],), wavs.shape[1], dtype=torch.long, device=wavs.device)
        if max_layer is not None and not 0 <= max_layer < self.num_layers:
            raise ValueError(f"{self.name}: max_layer {max_layer} out of range 0..{self.num_layers - 1}")
        if max_layer == self.num_layers - 1:
            max_layer = None
        with torch.no_grad():
            if max_layer is not None and self.early_exit:
                return self._forward(wavs.float(), lengths.to(wavs.device).long(), max_layer=max_layer)
            out = self._forward(wavs.float(), lengths.to(wavs.device).long())
        if max_layer is not None:
            out = UpstreamOutput(out.hidden_states[: max_layer + 1], out.lengths)
        return out

    def extra_repr(self) -> str:
        return (
            f"name={self.name!r}, sample_rate={self.sample_rate}, frame_rate={self.frame_rate}, "
            f"num_layers={self.num_layers}, hidden_dim={self.hidden_dim}"
        )


def unpadded(wavs: torch.Tensor, lengths: torch.Tensor) -> bool:
    """True when no item of the batch is padded, so a model may take its mask-free path.

    Decided only from host tensors: on a GPU, or while compiling, the answer is False (the masked
    path gives the same values), so an upstream called inside a training step, as a tokenizer's
    teacher is, never waits for the device.
    """
    if lengths.device.type != "cpu" or torch.compiler.is_compiling():
        return False
    return bool((lengths == wavs.shape[1]).all())
