"""``s3prl:<name>[:<local ckpt>]``: any s3prl upstream that runs from local files, as our Upstream.

The ``s3prl`` module comes from the ``espnet-s3prl`` package. ``<name>`` is an entry of
``s3prl.hub`` (``hubert_local``, ``wav2vec2_local``, ``wavlm_local``, ``data2vec_local``, or one
that needs no file, e.g. ``fbank``); ``<local ckpt>`` is passed as its ``ckpt``. Names that fetch
from the network (``hubert``, ``*_url``) are refused: hubs are not reachable, and a spec should
name the file it uses. The checkpoint is first opened with ``torch.load(weights_only=True)``
(the same allow-list as :mod:`audiossl.models.fairseq_io`), so a file that would run code when
unpickled is refused before s3prl sees it.

What the wrapper reports (probed once at load time):

- ``hidden_states``: s3prl's ``hidden_states`` (for the fairseq-style families: the input of every
  transformer layer + the encoder output — our convention), each ``[batch, frame, dim]``.
- ``frame_rate``: 16000 / s3prl's ``get_downsample_rates("hidden_states")``.
- ``num_frames``: the conv formula of the model's conv front end when it has a fairseq-style one
  (``feature_extractor.conv_layers``), else s3prl's own convention ``(samples - 1) // stride + 1``;
  outputs are cut / extended (last frame repeated, as s3prl's ``S3PRLUpstream`` does) to it.
- ``padding_invariant``: whether one item's frames are the same alone and in a padded batch
  (a 0.6 s and a 1 s probe, within 1e-4). When not, ``_forward`` runs a padded batch one item at
  a time, so a batch always equals the single-utterance result. s3prl's fairseq-style models are
  not: a GroupNorm front end normalises over the padded length, and fairseq's frame padding mask
  counts ``samples // 320`` valid frames, one more than the conv yields, so the last valid frame
  of a padded item attends to a padding frame.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from audiossl.models.fairseq_io import read_fairseq_checkpoint, FairseqCheckpointError
from audiossl.upstream.base import Upstream, UpstreamOutput

PROBE_SECONDS = (0.6, 1.0)
PROBE_TOL = 1e-4


class S3prlUpstreamError(ValueError):
    """An s3prl spec that cannot be loaded (unknown name, needs the network, unsafe file)."""


def _conv_stack(expert: nn.Module) -> list[tuple[int, int]] | None:
    """``[(kernel, stride), ...]`` of a fairseq-style conv front end, or None when there is none."""
    for name, module in expert.named_modules():
        if name.endswith("feature_extractor") and isinstance(getattr(module, "conv_layers", None), nn.ModuleList):
            convs = [next((m for m in layer.modules() if isinstance(m, nn.Conv1d)), None) for layer in module.conv_layers]
            if convs and all(c is not None for c in convs):
                return [(c.kernel_size[0], c.stride[0]) for c in convs]
    return None


def _check_safe(path: Path) -> None:
    """Refuse a checkpoint that needs more than tensors / containers / inert configs to unpickle."""
    if not path.is_file():
        raise S3prlUpstreamError(f"{path}: no such checkpoint file (s3prl specs take a local file: s3prl:<name>:/path/to/ckpt.pt)")
    try:
        read_fairseq_checkpoint(path)
    except FairseqCheckpointError as e:
        if "refused to load" in str(e) or "not a readable" in str(e):
            raise S3prlUpstreamError(str(e)) from None
        # another layout (e.g. a plain state dict) is fine: it unpickled safely


class S3prlUpstream(Upstream):
    """An s3prl ``UpstreamExpert`` (``expert(list_of_wavs)["hidden_states"]``) in our Upstream API."""

    def __init__(self, expert: nn.Module, name: str) -> None:
        super().__init__()
        stride = expert.get_downsample_rates("hidden_states")
        if not isinstance(stride, int):
            raise S3prlUpstreamError(f"{name}: per-layer downsample rates {stride} are not supported (one frame rate needed)")
        self.stride, self.conv = int(stride), _conv_stack(expert)
        expert.eval()
        g = torch.Generator().manual_seed(0)
        a, b = (torch.randn(int(s * 16000), generator=g) * 0.1 for s in PROBE_SECONDS)
        with torch.no_grad():
            alone = expert([a])["hidden_states"]
            both = expert([a, b])["hidden_states"]
        self._wrap(expert, name=name, sample_rate=16000, frame_rate=16000 / self.stride,
                   num_layers=len(alone), hidden_dim=alone[-1].shape[-1])
        n = min(self.num_frames(len(a)), alone[0].shape[1])
        self.padding_invariant = all(
            float((x[0, :n] - y[0, :n]).abs().max()) <= PROBE_TOL * max(1.0, float(x[0, :n].abs().max()))
            for x, y in zip(alone, both)
        )
        self.chunkable = self.conv is not None  # chunk stitching needs the exact frame formula

    def num_frames(self, num_samples: int) -> int:
        n = int(num_samples)
        if self.conv is None:
            return (n - 1) // self.stride + 1 if n > 0 else 0
        for k, s in self.conv:
            n = max(0, (n - k) // s + 1)
        return n

    def _run(self, items: list[torch.Tensor], frames: int) -> list[torch.Tensor]:
        """s3prl forward on unpadded items → per layer ``[len(items), frames, dim]``."""
        out = []
        for h in self.model(items)["hidden_states"]:
            if h.shape[1] > frames:
                h = h[:, :frames]
            elif h.shape[1] < frames:
                h = torch.cat([h, h[:, -1:].expand(-1, frames - h.shape[1], -1)], 1)
            out.append(h)
        return out

    def _forward(self, wavs: torch.Tensor, lengths: torch.Tensor) -> UpstreamOutput:
        frames = self.frame_lengths(lengths.cpu())
        t = int(frames.max()) if len(frames) else 0
        if t == 0:
            empty = wavs.new_zeros(wavs.shape[0], 0, self.hidden_dim)
            return UpstreamOutput([empty] * self.num_layers, frames.to(wavs.device))
        items = [w[: int(n)] for w, n in zip(wavs, lengths.tolist())]
        if self.padding_invariant or len(items) == 1 or all(len(x) == wavs.shape[1] for x in items):
            hidden = self._run(items, t)
        else:
            per_item = [self._run([x], t) for x in items]
            hidden = [torch.cat([p[layer] for p in per_item], 0) for layer in range(self.num_layers)]
        valid = (torch.arange(t)[None] < frames[:, None]).to(wavs.device)[..., None]
        return UpstreamOutput([h * valid for h in hidden], frames.to(wavs.device))


def load_s3prl_upstream(arg: str) -> S3prlUpstream:
    """``<name>[:<local ckpt>]`` (the part after ``s3prl:``) → :class:`S3prlUpstream`."""
    name, _, ckpt = arg.partition(":")
    try:
        from s3prl import hub  # lazy: optional dependency (espnet-s3prl); only s3prl: upstreams need it
    except ImportError as e:
        raise S3prlUpstreamError(f"s3prl:{arg}: the s3prl module is missing ({e}); pip install espnet-s3prl") from None
    options = set(hub.options())
    if name not in options:
        local = sorted(o for o in options if o.endswith("_local"))
        raise S3prlUpstreamError(f"s3prl:{arg}: {name!r} is not an s3prl upstream; the local-file ones are {', '.join(local)}")
    if name.endswith(("_url", "_gdriveid")) or ckpt.startswith(("http:", "https:")):
        raise S3prlUpstreamError(f"s3prl:{arg}: {name!r} downloads its checkpoint; use '{name.rsplit('_', 1)[0]}_local:/path/to/ckpt.pt'")
    kwargs = {}
    if ckpt:
        _check_safe(Path(ckpt))
        kwargs["ckpt"] = ckpt
    try:
        expert = getattr(hub, name)(**kwargs)
    except TypeError as e:
        raise S3prlUpstreamError(f"s3prl:{arg}: {e} (does {name!r} need a checkpoint? s3prl:{name}:/path/to/ckpt.pt)") from None
    except OSError as e:  # a download attempt, or an unreadable file
        raise S3prlUpstreamError(
            f"s3prl:{arg}: {e}. Only upstreams that run from local files work here (hubs are not reachable): "
            f"use a '*_local' name with a checkpoint path"
        ) from None
    return S3prlUpstream(expert, name=f"s3prl:{arg}")
