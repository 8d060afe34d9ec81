"""Extraction to disk: any upstream's hidden states for a set of audio files (over :mod:`audiossl.upstream.engine`).

Flow: list ``(id, path)`` → read headers (bad files reported, skipped) → drop finished ids
(resume) → sort by duration → batches capped by total padded audio (``max_seconds``) → forward →
select / weight / pool layers → write (:mod:`audiossl.extract.sinks`) → index (atomically, every
30 s and at the end). The free disk space is checked before the first forward.

Batching, decode-ahead, chunking of long files and bad-file reporting are
:mod:`audiossl.upstream.engine`'s; this module adds the input listing, layer selection, sinks and resume.
"""

from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file
from tqdm import tqdm

from audiossl.data.sources import collect_audio_paths, read_wav_scp
from audiossl.extract.sinks import Sink
from audiossl.upstream.base import Upstream
from audiossl.upstream.engine import decode_items, forward_batch, plan_batches, prefetched, probe_items
from audiossl.upstream.load import load_upstream
from audiossl.utils.fileio import atomic_write_json, check_free_space

log = logging.getLogger(__name__)


@dataclass
class ExtractConfig:
    layers: str = "all"
    """``all`` | ``N`` | ``N,M,...`` | ``weighted:<featurizer .json or .safetensors>``."""
    pool: str = "none"
    """``none`` (``[frame, dim]``) or ``mean`` over valid frames (``[dim]``)."""
    format: str = "npy"
    """``npy`` | ``hdf5`` | ``ark``."""
    device: str = "cpu"
    dtype: str = "float32"
    """Compute dtype: ``float32`` | ``bfloat16`` | ``float16`` (autocast); stored as float32,
    except ``float16`` which is stored as float16."""
    max_seconds: float | None = None
    """Total padded audio per batch, in seconds; ``None``: :func:`default_batch_seconds` of the device."""
    chunk_seconds: float = 30.0
    """Files longer than this are processed in chunks; 0 disables chunking."""
    overlap_seconds: float = 2.0
    """Context added on each side of a chunk (discarded after the forward)."""
    prefetch: int = 2
    """Batches decoded ahead by a background thread while the model runs (0: decode inline)."""


@dataclass
class ExtractReport:
    written: int = 0
    already_done: int = 0
    skipped: list[tuple[str, str]] | None = None  # (path, reason)
    audio_seconds: float = 0.0
    """Audio extracted by this run."""
    wait_s: float = 0.0
    """Wall time the model waited for decoded audio (0 when decoding keeps up)."""
    forward_s: float = 0.0
    """Wall time in the forward pass, including the copy of the outputs to the host."""
    write_s: float = 0.0
    """Wall time selecting/pooling layers and writing them."""

    def summary(self) -> str:
        n = len(self.skipped or [])
        return f"{self.written} written, {self.already_done} already done (resume), {n} skipped"

    def timing(self) -> str:
        """Where the time went: ``audio 123.4 s in 5.6 s (RTF 0.045): forward 80 %, waiting for audio 3 %, writing 12 %``."""
        total = self.wait_s + self.forward_s + self.write_s
        if total <= 0:
            return "nothing extracted"
        pct = {k: 100 * v / total for k, v in (("forward", self.forward_s), ("waiting for audio", self.wait_s), ("writing", self.write_s))}
        return (f"{self.audio_seconds:.1f} audio-s in {total:.1f} s (RTF {total / max(self.audio_seconds, 1e-9):.4f}): "
                + ", ".join(f"{k} {v:.0f} %" for k, v in pct.items()))


def list_inputs(src: str | Path) -> list[tuple[str, str]]:
    """``(utt_id, path)`` for a file, directory, wav.scp or manifest. Ids of files are their path
    relative to the directory / manifest root, without extension; whitespace becomes ``_``."""
    src = Path(src)
    if src.name.endswith(".scp"):
        pairs = read_wav_scp(src)
    else:
        paths = collect_audio_paths(src)
        if src.is_dir():
            root = src
        elif src.suffix == ".tsv":
            root = Path(src.read_text().splitlines()[0].strip()) if src.stat().st_size else src.parent
        else:
            root = src.parent
        pairs = []
        for p in paths:
            try:
                rel = Path(p).relative_to(root)
            except ValueError:
                rel = Path(Path(p).name)
            pairs.append((rel.with_suffix("").as_posix(), p))
    pairs = [(re.sub(r"\s+", "_", uid), p) for uid, p in pairs]
    seen: dict[str, str] = {}
    for uid, p in pairs:
        if not uid or uid.startswith("/") or ".." in uid.split("/"):
            raise ValueError(f"{src}: id {uid!r} (for {p}) would write outside the output directory; rename it")
        if uid in seen:
            raise ValueError(f"{src}: id {uid!r} names two inputs ({seen[uid]} and {p}); rename one of them")
        seen[uid] = p
    return pairs


def load_layer_weights(path: str | Path, num_layers: int) -> torch.Tensor:
    """Featurizer layer weights → normalised ``[num_layers]``.

    ``.json``: ``{"layer_weights": [...]}`` as the bench harness writes them (already normalised),
    or ``{"weights": [...]}`` raw featurizer logits (softmax applied, SUPERB's featurizer; add
    ``"normalized": true`` to use them as given). ``.safetensors``: the featurizer's state dict, one
    1-D tensor whose name ends in ``weights`` (raw logits, softmax applied).
    """

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"layer weights file {path} not found")
    normalized = False
    if path.suffix == ".json":
        obj = json.loads(path.read_text())
        if not isinstance(obj, dict) or not ("weights" in obj or "layer_weights" in obj):
            raise ValueError(f"{path}: expected a JSON object with 'layer_weights' or 'weights'")
        if "layer_weights" in obj:
            w, normalized = obj["layer_weights"], True
        else:
            w, normalized = obj["weights"], bool(obj.get("normalized", False))
        t = torch.tensor(w, dtype=torch.float32)
    else:
        tensors = load_file(str(path))
        cands = [v for k, v in tensors.items() if k.endswith("weights") and v.dim() == 1]
        if len(cands) != 1:
            raise ValueError(f"{path}: expected exactly one 1-D '*weights' tensor, found keys {sorted(tensors)}")
        t = cands[0].float()
    if t.numel() != num_layers:
        raise ValueError(f"{path}: {t.numel()} layer weights, but the upstream has {num_layers} layers")
    return t / t.sum() if normalized else torch.softmax(t, dim=0)


def parse_layers(spec: str, num_layers: int) -> list[int] | torch.Tensor | None:
    """``all`` → None; ``N`` / ``N,M`` → indices (negative from the end); ``weighted:F`` → weights."""
    if spec == "all":
        return None
    if spec.startswith("weighted:"):
        return load_layer_weights(spec[len("weighted:"):], num_layers)
    try:
        idx = [int(x) for x in spec.split(",")]
    except ValueError:
        raise ValueError(f"--layers {spec!r}: expected all, N, N,M or weighted:<file>") from None
    for i in idx:
        if not -num_layers <= i < num_layers:
            raise ValueError(f"--layers {spec!r}: layer {i} out of range; the upstream has {num_layers} (0..{num_layers - 1})")
    return [i % num_layers for i in idx]


def _select(hidden: list[torch.Tensor], layers, pool: str) -> torch.Tensor:
    """Per-utterance layers ``[frame, dim]`` each → stored array (see :class:`ExtractConfig`)."""
    if layers is None:
        x = torch.stack(hidden, 0)
    elif isinstance(layers, torch.Tensor):
        x = torch.einsum("l,ltd->td", layers.to(hidden[0]), torch.stack(hidden, 0))
    elif len(layers) == 1:
        x = hidden[layers[0]]
    else:
        x = torch.stack([hidden[i] for i in layers], 0)
    if pool == "mean":
        x = x.mean(dim=-2)
    return x


def extract(upstream: Upstream | str, inputs: str | Path | list[tuple[str, str]], out: str | Path,
            cfg: ExtractConfig | None = None) -> ExtractReport:
    """Extract ``upstream`` features of ``inputs`` into ``out``. Returns an :class:`ExtractReport`."""

    cfg = cfg or ExtractConfig()
    if cfg.pool not in ("none", "mean"):
        raise ValueError(f"--pool {cfg.pool!r}: choose none or mean")
    dtypes = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
    if cfg.dtype not in dtypes:
        raise ValueError(f"--dtype {cfg.dtype!r}: choose one of {sorted(dtypes)}")
    up = load_upstream(upstream, device=cfg.device) if isinstance(upstream, str) else upstream.to(cfg.device).eval()
    layers = parse_layers(cfg.layers, up.num_layers)
    # explicit layers need no pass through the layers above the deepest one
    max_layer = max(layers) if isinstance(layers, list) else None
    pairs = list_inputs(inputs) if not isinstance(inputs, list) else inputs
    sink = Sink(out, cfg.format)
    if cfg.format == "ark" and cfg.pool == "none" and not (isinstance(layers, torch.Tensor) or (layers and len(layers) == 1)):
        raise ValueError("--format ark stores matrices: use one layer (--layers N), weighted layers, or --pool mean")
    meta = {
        "upstream": up.name, "layers": cfg.layers, "pool": cfg.pool, "format": cfg.format, "dtype": cfg.dtype,
        "frame_rate": up.frame_rate, "num_layers": up.num_layers, "hidden_dim": up.hidden_dim,
    }
    meta_path = Path(out) / "meta.json"
    if meta_path.is_file() and sink.index:
        old = json.loads(meta_path.read_text())
        changed = {k: (old.get(k), v) for k, v in meta.items() if old.get(k) != v}
        if changed:
            raise ValueError(
                f"{out} holds features made with other settings {changed} (old, new); resuming would mix "
                f"them. Use another output directory or delete {out}."
            )
    atomic_write_json(meta_path, meta)
    report = ExtractReport(skipped=[])
    fresh = []
    for uid, path in pairs:
        if sink.is_done(uid):
            report.already_done += 1
        else:
            fresh.append((uid, path))
    todo, bad = probe_items(fresh, up.sample_rate)
    report.skipped.extend((path, f"{reason}: {detail}") for path, reason, detail in bad)
    sr = up.sample_rate
    batches = plan_batches(up, todo, cfg.max_seconds, cfg.device, cfg.chunk_seconds)
    store_dtype = np.float16 if cfg.dtype == "float16" else np.float32
    per_frame = up.hidden_dim * (up.num_layers if layers is None else 1 if not isinstance(layers, list) else len(layers))
    frames = sum(1 if cfg.pool == "mean" else up.num_frames(it[2]) for it in todo)
    check_free_space(out, frames * per_frame * np.dtype(store_dtype).itemsize, what="extracted features")
    dev = torch.device(cfg.device)
    autocast = cfg.dtype != "float32"
    bar = tqdm(total=sum(it[2] for it in todo) / sr, unit="audio-s", desc=f"extract {up.name}", disable=None)

    def decode(batch: list[tuple[str, str, int]]) -> tuple[list[torch.Tensor], list[str], list[tuple[str, str]]]:
        wavs, ok, bad = decode_items(up, batch)
        return wavs, ok, [(path, f"{reason}: {detail}") for path, reason, detail in bad]

    try:
        for batch, (wavs, ok, bad), waited in prefetched(batches, decode, cfg.prefetch):
            report.wait_s += waited
            report.skipped.extend(bad)
            if ok:
                t0 = time.perf_counter()
                with torch.autocast(dev.type, dtype=dtypes[cfg.dtype], enabled=autocast):
                    hidden = forward_batch(up, wavs, dev, max_layer=max_layer, chunk_seconds=cfg.chunk_seconds,
                                           overlap_seconds=cfg.overlap_seconds)
                arrays = [_select(hs, layers, cfg.pool).float().cpu().numpy().astype(store_dtype) for hs in hidden]
                t1 = time.perf_counter()
                for uid, arr in zip(ok, arrays):
                    sink.write(uid, arr, up.frame_rate)
                    report.written += 1
                sink.maybe_commit()
                report.forward_s += t1 - t0
                report.write_s += time.perf_counter() - t1
                report.audio_seconds += sum(w.shape[0] for w in wavs) / sr
            bar.update(sum(it[2] for it in batch) / sr)
    finally:
        bar.close()
        sink.close()
    for path, reason in report.skipped:
        log.warning("skipped %s: %s", path, reason)
    log.info("extract %s → %s: %s", up.name, out, report.summary())
    return report
