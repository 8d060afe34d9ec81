"""The one upstream API: ``load_upstream(spec)`` → a frozen model that maps waveforms to layers.

Every consumer (the extract CLI, the SUPERB-style bench harness, HuBERT k-means iteration) calls::

    up = load_upstream(spec, device="cpu")
    out = up(wavs, lengths)          # wavs [batch, sample] float, lengths [batch] long
    out.hidden_states                # list of [batch, frame, dim]; len == up.num_layers
    out.lengths                      # [batch] valid frames per item

Specs:

- ``<dir>`` or ``hubert:<dir>``: an audiossl checkpoint directory (``model.safetensors`` + ``config.json``)
  of any family (HuBERT, BEATs, MERT; ``config.json``'s ``family`` picks the loader).
- ``hf:<dir>``: a transformers checkpoint directory (HuBERT, wav2vec 2.0, WavLM, data2vec-audio);
  see :mod:`audiossl.interop.hf`.
- ``fairseq:<file>``: a fairseq HuBERT checkpoint, read without fairseq and without unpickling
  code; see :mod:`audiossl.interop.fairseq_ckpt`.
- ``beats:<file>``: a released BEATs checkpoint (microsoft/unilm layout); :mod:`audiossl.interop.beats_ckpt`.
- ``mert:<dir>``: a released HF-format MERT checkpoint directory, read without ``trust_remote_code``;
  :mod:`audiossl.interop.mert_hf`.
- ``s3prl:<name>[:<local ckpt>]``: any s3prl upstream that runs from local files;
  :mod:`audiossl.interop.s3prl_upstream`.
- ``fbank`` / ``mfcc``: the classic feature baselines; see :mod:`audiossl.eval.baselines`.

The schemes live in one table, :data:`audiossl.eval.upstream_specs.SCHEMES`, which ``--help`` texts list.

Layer convention (all sources are mapped onto it): ``hidden_states[0]`` is the input of the first
transformer layer (feature projection + convolutional position embedding, + the encoder LayerNorm
for post-LN models), ``hidden_states[i]`` the output of transformer layer ``i``; for pre-LN models
(Large/XL) the last entry has the encoder's final LayerNorm applied. This is what fairseq's
``extract_features`` hooks (s3prl) and transformers' ``output_hidden_states=True`` return.

Calls run under ``torch.no_grad()`` in eval mode (dropout and layer drop off).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

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


def normalize_waveform(wavs: torch.Tensor, lengths: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Zero mean / unit variance per utterance over its valid samples only (fairseq ``normalize``,
    HF ``do_normalize``); padding stays zero. ``[batch, sample]`` → ``[batch, sample]``."""
    mask = torch.arange(wavs.shape[1], device=wavs.device)[None, :] < lengths[:, None]
    n = lengths.clamp(min=1).to(wavs.dtype)[:, None]
    mean = (wavs * mask).sum(1, keepdim=True) / n
    var = (((wavs - mean) * mask) ** 2).sum(1, keepdim=True) / n
    return ((wavs - mean) / torch.sqrt(var + eps)) * mask


class HubertUpstream(Upstream):
    """Our :class:`audiossl.models.hubert.HubertModel` (the encoder) as an upstream."""

    early_exit = True

    def __init__(self, model: nn.Module, name: str = "hubert", normalize: bool = False) -> None:
        super().__init__()
        cfg = model.cfg
        self._wrap(model, name=name, sample_rate=cfg.sample_rate, frame_rate=model.frame_rate, num_layers=cfg.num_layers + 1, hidden_dim=cfg.embed_dim)
        self.normalize = normalize or bool(getattr(cfg, "normalize", False))
        # our conv front end computes GroupNorm over each item's valid samples only
        self.padding_invariant = True

    def num_frames(self, num_samples: int) -> int:
        return int(self.model.num_frames(int(num_samples)))

    def frame_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        return self.model.frame_lengths(lengths)

    def _forward(self, wavs: torch.Tensor, lengths: torch.Tensor, max_layer: int | None = None) -> UpstreamOutput:
        if self.normalize:
            wavs = normalize_waveform(wavs, lengths)
        if self.num_frames(wavs.shape[1]) == 0:  # whole batch shorter than the receptive field
            empty = wavs.new_zeros(wavs.shape[0], 0, self.hidden_dim)
            return UpstreamOutput([empty] * (self.num_layers if max_layer is None else max_layer + 1), self.frame_lengths(lengths))
        out = self.model(wavs, None if unpadded(wavs, lengths) else lengths, output_layers=max_layer)
        return UpstreamOutput(hidden_states=list(out.hidden_states), lengths=out.lengths)


def _read_meta(ckpt_dir: Path) -> dict:
    cfg_path = ckpt_dir / "config.json"
    if not cfg_path.is_file():
        raise FileNotFoundError(
            f"{ckpt_dir}: not an audiossl checkpoint (no config.json). Pass an audiossl checkpoint "
            f"directory or one of the other upstream specs (see `audiossl extract --help`)."
        )
    try:
        meta = json.loads(cfg_path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{cfg_path}: invalid JSON ({e}); re-save the checkpoint") from None
    if "model_type" in meta and "family" not in meta:
        raise ValueError(f"{ckpt_dir} looks like a transformers checkpoint; load it as 'hf:{ckpt_dir}'")
    return meta


def load_checkpoint_dir(spec: str) -> Upstream:
    """An audiossl checkpoint directory (``<dir>`` / ``hubert:<dir>``) → its family's upstream."""
    from audiossl.eval.upstream_specs import spec_help

    path = Path(spec)
    if not path.exists():
        raise FileNotFoundError(f"upstream {spec!r}: no such checkpoint directory. Valid specs: {spec_help()}")
    if path.is_file():
        raise ValueError(f"upstream {spec!r} is a file; for a fairseq checkpoint use 'fairseq:{spec}'")
    meta = _read_meta(path)
    from audiossl.pretrain.families import get_family

    return get_family(str(meta.get("family", "hubert"))).build_upstream(path, meta)


def load_upstream(spec: str, device: str | torch.device = "cpu") -> Upstream:
    """Build a frozen, eval-mode upstream from ``spec`` (see module docstring) on ``device``.

    Dispatch goes through the one scheme table, :data:`audiossl.eval.upstream_specs.SCHEMES`."""
    from audiossl.eval.upstream_specs import resolve

    _, loader, arg = resolve(str(spec))
    up: Upstream = loader(arg)
    return up.to(device).eval()
