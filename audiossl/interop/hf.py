"""transformers interop: import HuBERT / wav2vec 2.0 / WavLM / data2vec-audio, export our HuBERT.

Import (``load_hf_upstream(dir)``, the ``hf:<dir>`` upstream spec):

- **HuBERT** and **wav2vec 2.0** (same encoder): weights are converted onto our
  :class:`audiossl.models.hubert.model.HubertModel` (q/k/v fused into ``qkv``), so they run on our SDPA
  encoder and its length-aware GroupNorm.
- **WavLM** (gated relative position bias): converted onto our
  :class:`audiossl.models.wavlm.model.WavlmModel` (:mod:`audiossl.models.wavlm.hf`), so a group-norm
  WavLM Base batches with padding too (length-aware GroupNorm) and the bias runs through
  :mod:`audiossl.models.rel_pos` (flex_attention on CUDA).
- **data2vec-audio** (a 5-layer positional conv stack): the HF module itself runs inside
  :class:`HFUpstream`, which maps its outputs onto our convention. Its positional conv sees
  padding, so it is always run one utterance at a time (``padding_invariant = False``; so is any
  HF group-norm front end, which is not length-aware). A padded batch given to such an upstream
  directly is run item by item, so it equals the single passes.

Layer convention: HF ``output_hidden_states=True`` returns ``num_hidden_layers + 1`` tensors: [0] =
after the positional conv (+ encoder LayerNorm for post-LN models), i.e. the input of the first
layer; [i] = output of layer i; for ``do_stable_layer_norm`` (pre-LN) models the final LayerNorm is
applied to the last one. That is exactly our ``hidden_states`` convention, so no re-indexing is
needed. ``preprocessor_config.json``'s ``do_normalize`` turns on per-utterance waveform
normalisation.

Export (``export_hf(model, out_dir)``, in :mod:`audiossl.models.hubert.hf`): a directory ``transformers.HubertModel.from_pretrained``
loads (``config.json`` + ``model.safetensors`` + ``preprocessor_config.json``), written to a
temporary sibling directory and renamed into place.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from audiossl.audio.normalize import normalize_waveform
from audiossl.models.hubert.hf import hf_to_ours
from audiossl.models.wavlm.hf import hf_to_ours as wavlm_to_ours
from audiossl.upstream.base import Upstream, UpstreamOutput
from audiossl.upstream.encoder import EncoderUpstream

SUPPORTED = ("hubert", "wav2vec2", "wavlm", "data2vec-audio")


class HFUpstream(Upstream):
    """A transformers speech encoder (``Wav2Vec2Model``-like) run as-is, outputs in our convention."""

    def __init__(self, model: torch.nn.Module, name: str, normalize: bool = False) -> None:
        super().__init__()
        c = model.config
        self._wrap(model, name=name, sample_rate=16000, frame_rate=16000 / float(torch.tensor(c.conv_stride).prod()),
                   num_layers=c.num_hidden_layers + 1, hidden_dim=c.hidden_size)
        self.normalize = normalize
        # group-norm front ends normalise over the padded length; data2vec-audio's positional conv
        # stack (conv → LayerNorm → GELU, ×5) turns zeroed padding into non-zero context
        self.padding_invariant = c.model_type != "data2vec-audio" and c.feat_extract_norm == "layer"

    def num_frames(self, num_samples: int) -> int:
        n = int(num_samples)
        for k, s in zip(self.model.config.conv_kernel, self.model.config.conv_stride):
            n = max(0, (n - k) // s + 1)
        return n

    def _forward(self, wavs: torch.Tensor, lengths: torch.Tensor) -> UpstreamOutput:
        if self.normalize:
            wavs = normalize_waveform(wavs, lengths)
        frames = self.frame_lengths(lengths).to(wavs.device)
        if self.num_frames(wavs.shape[1]) == 0:
            empty = wavs.new_zeros(wavs.shape[0], 0, self.hidden_dim)
            return UpstreamOutput([empty] * self.num_layers, frames)
        padded = bool((lengths < wavs.shape[1]).any())
        if padded and not self.padding_invariant and wavs.shape[0] > 1:
            # padding would change the valid frames (GroupNorm over the padded length): one item at a
            # time, so a padded batch equals the single-utterance results
            t = int(frames.max())
            outs = [self._forward(w[None, : int(n)], n[None]).hidden_states for w, n in zip(wavs, lengths)]
            hidden = [torch.cat([torch.nn.functional.pad(o[layer], (0, 0, 0, t - o[layer].shape[1])) for o in outs], 0)
                      for layer in range(self.num_layers)]
            return UpstreamOutput(hidden, frames)
        mask = (torch.arange(wavs.shape[1], device=wavs.device)[None] < lengths[:, None]).long() if padded else None
        out = self.model(wavs, attention_mask=mask, output_hidden_states=True)
        return UpstreamOutput(list(out.hidden_states), frames)


def _load_hf_model(directory: Path) -> torch.nn.Module:
    import transformers  # lazy: optional dependency (transformers, the `bench` extra)

    cfg_path = directory / "config.json"
    if not cfg_path.is_file():
        raise FileNotFoundError(f"{directory}: no config.json; 'hf:<dir>' needs a local transformers checkpoint")
    model_type = json.loads(cfg_path.read_text()).get("model_type")
    classes = {
        "hubert": transformers.HubertModel,
        "wav2vec2": transformers.Wav2Vec2Model,
        "wavlm": transformers.WavLMModel,
        "data2vec-audio": transformers.Data2VecAudioModel,
    }
    if model_type not in classes:
        raise ValueError(f"{directory}: model_type {model_type!r} is not supported; supported: {', '.join(SUPPORTED)}")
    # local only, never the hub; .bin files go through torch.load(weights_only=True) in transformers
    return classes[model_type].from_pretrained(directory, local_files_only=True).eval()


def hf_upstream_from_model(hf_model: torch.nn.Module, name: str, normalize: bool = False) -> Upstream:
    """HuBERT / wav2vec 2.0 / WavLM → our encoder; data2vec-audio → wrapped HF module."""
    if hf_model.config.model_type in ("hubert", "wav2vec2"):
        return EncoderUpstream(hf_to_ours(hf_model), name=name, normalize=normalize)
    if hf_model.config.model_type == "wavlm":
        return EncoderUpstream(wavlm_to_ours(hf_model), name=name, normalize=normalize)
    return HFUpstream(hf_model, name=name, normalize=normalize)


def load_hf_upstream(directory: str | Path) -> Upstream:
    """``hf:<dir>`` → an :class:`Upstream` (see module docstring)."""
    directory = Path(directory)
    hf_model = _load_hf_model(directory)
    pre = directory / "preprocessor_config.json"
    normalize = bool(json.loads(pre.read_text()).get("do_normalize", False)) if pre.is_file() else False
    return hf_upstream_from_model(hf_model, name=f"hf:{directory}", normalize=normalize)
