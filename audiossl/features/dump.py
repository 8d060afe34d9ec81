"""Compute one feature kind for every row of a manifest into a sharded :class:`FeatureStore`.

Work is spread over processes, and results are consumed in manifest order, so the store is the
same for any number of workers. Bad audio (missing, empty, unreadable, NaN/inf, too short for one
window) is logged with path and reason and skipped; the run ends with a count by reason.
A rerun with ``resume=True`` keeps every utterance of a finished shard and computes the rest.

Data-parallel: under ``torchrun`` every rank dumps rows ``i % world == rank`` (a model on
``cuda:LOCAL_RANK``), writes its own shards, and rank 0 merges the index after a barrier; as a
Slurm array, ``shard=(I, N)`` dumps part I of N and ``audiossl features merge OUT`` (or
:func:`~audiossl.data.feature_store.merge_parts`) joins them once every part has finished.
A part that died resumes like a whole dump (same N).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import multiprocessing as mp
import os
import time
from collections import Counter, deque
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import torch
from tqdm import tqdm

from audiossl.audio.features import FeatureError, FeatureSpec, get_feature
from audiossl.audio.io import AudioError, audio_info, load_audio
from audiossl.data.feature_store import FeatureWriter, merge_parts
from audiossl.data.manifest import read_manifest
from audiossl.data.sharding import Part
from audiossl.upstream.engine import receptive_field, forward_batch, forward_long
from audiossl.upstream.load import load_checkpoint_dir
from audiossl.utils.fileio import atomic_write_json, check_free_space

log = logging.getLogger(__name__)

PARAMS = "dump_params.json"
"""Written at the start of a dump; a resumed dump must use the same feature parameters."""


@dataclass(frozen=True)
class Skipped:
    path: str
    reason: str
    detail: str

    def __str__(self) -> str:
        return f"skipped: {self.path}: {self.reason}" + (f": {self.detail}" if self.detail else "")


@dataclass
class DumpSummary:
    out: Path
    kind: str
    num_rows: int
    computed: int = 0
    """Utterances computed in this run."""
    reused: int = 0
    """Utterances kept from finished shards of an earlier, interrupted run."""
    skipped: list[Skipped] = field(default_factory=list)
    num_frames: int = 0
    seconds: float = 0.0

    def summary(self) -> str:
        parts = [f"{self.computed} computed", f"{self.reused} reused", f"{len(self.skipped)} skipped"]
        reasons = Counter(s.reason for s in self.skipped)
        if reasons:
            parts.append("skipped by reason: " + ", ".join(f"{k}={v}" for k, v in sorted(reasons.items())))
        parts.append(f"{self.num_frames} frames of {self.kind} in {self.out} ({self.seconds:.1f}s)")
        return "; ".join(parts)


# --- per-file work (runs in worker processes) --------------------------------------------------

_SPEC: FeatureSpec | None = None


def _init_worker(spec: FeatureSpec, single_thread: bool) -> None:
    global _SPEC
    _SPEC = spec
    if single_thread:
        # One intra-op thread per process: the processes are the parallelism (and libgomp's pool
        # is not usable after fork, as for DataLoader workers).
        torch.set_num_threads(1)


def _compute(job: tuple[int, str]) -> tuple[int, np.ndarray | None, Skipped | None]:
    """``(row, path)`` → ``(row, [frames, dim] float32 or None, why it was skipped or None)``."""
    i, path = job
    spec = _SPEC
    assert spec is not None, "worker not initialised"
    try:
        wav, _ = load_audio(path, spec.sample_rate)
        feats = spec(wav)
    except AudioError as e:
        return i, None, Skipped(path, e.reason, e.detail)
    except FeatureError as e:
        return i, None, Skipped(path, e.reason, str(e))
    except Exception as e:  # a bug or an unexpected library failure: stop, but say which file
        raise RuntimeError(f"{path}: computing {spec.name} failed: {type(e).__name__}: {e}") from e
    if feats.shape[0] != spec.num_frames(wav.numel()):
        raise RuntimeError(
            f"{path}: {spec.name} gave {feats.shape[0]} frames for {wav.numel()} samples, expected "
            f"{spec.num_frames(wav.numel())}; the frame-count rule of this feature is wrong"
        )
    if not torch.isfinite(feats).all():
        return i, None, Skipped(path, "non_finite", f"{spec.name} features contain NaN/inf")
    return i, feats.numpy().astype(np.float32, copy=False), None


def _ordered_map(fn: Callable, jobs: Iterable, workers: int, spec: FeatureSpec) -> Iterator:
    """``map(fn, jobs)`` over ``workers`` processes, results in job order, at most 4 jobs per
    worker in flight (bounded memory). ``workers`` 1: in this process with one torch thread;
    0: in this process with all threads."""
    global _SPEC
    if workers == 0:  # in-process and with all threads (a model)
        _init_worker(spec, single_thread=False)
        try:
            yield from map(fn, jobs)
        finally:
            _SPEC = None  # do not keep the model alive after the dump
        return
    if workers == 1:
        # Intra-op threads cost more than they give on utterance-sized inputs (measured 2.3 s vs
        # 13-19 s for 200 files on a busy 2-core machine), so in-process runs single-threaded too.
        threads = torch.get_num_threads()
        _init_worker(spec, single_thread=True)
        try:
            yield from map(fn, jobs)
        finally:
            torch.set_num_threads(threads)
            _SPEC = None
        return
    ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else None
    ex = ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker, initargs=(spec, True))
    try:
        it = iter(jobs)
        pending = deque(ex.submit(fn, j) for j in itertools.islice(it, 4 * workers))
        while pending:
            result = pending.popleft().result()
            for j in it:
                pending.append(ex.submit(fn, j))
                break
            yield result
    finally:
        ex.shutdown(wait=True, cancel_futures=True)


class LayerFeatures:
    """Hidden state ``layer`` of any upstream: ``[time]`` → ``[frames, hidden_dim]`` float32 on CPU
    (one utterance per forward, no padding; layers above ``layer`` are not run where the upstream
    exits early). Utterances longer than ``chunk_seconds`` run in overlapping chunks stitched to the
    single-pass frame count (:func:`audiossl.upstream.engine.forward_long`): one pass over a 1-hour
    file would need attention over 180k frames."""

    def __init__(self, upstream: torch.nn.Module, layer: int, device: torch.device,
                 chunk_seconds: float = 30.0, overlap_seconds: float = 2.0) -> None:
        self.upstream, self.layer, self.device = upstream, layer, device
        self.chunk_seconds, self.overlap_seconds = chunk_seconds, overlap_seconds
        self.receptive_field = receptive_field(upstream)

    def __call__(self, wav: torch.Tensor, sample_rate: int) -> torch.Tensor:
        need = self.receptive_field
        if wav.numel() < need:
            raise FeatureError(
                "too_short",
                f"model needs at least {need} samples (its receptive field at {sample_rate} Hz), "
                f"got {wav.numel()} ({wav.numel() / sample_rate * 1000:.1f} ms)",
            )
        if self.chunk_seconds > 0 and wav.numel() > self.chunk_seconds * sample_rate and self.upstream.chunkable:
            return self._long(wav)
        with torch.inference_mode():
            hidden = forward_batch(self.upstream, [wav], self.device, max_layer=self.layer)[0]
        return hidden[self.layer].float().cpu()

    def _long(self, wav: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            hidden = forward_long(self.upstream, wav.to(self.device), self.chunk_seconds, self.overlap_seconds, self.layer)
        return hidden[self.layer].float().cpu()


def model_feature(
    ckpt: str | os.PathLike, layer: int, *, device: str | None = None, sample_rate: int | None = None
) -> FeatureSpec:
    """A :class:`FeatureSpec` for layer ``layer`` (0 = before the first transformer layer) of the
    checkpoint directory ``ckpt`` of any family (HuBERT, WavLM, BEATs, MERT); frame rate, sample rate and
    dim come from the checkpoint."""
    up = load_checkpoint_dir(str(ckpt))
    up.normalize = False  # the encoder gets the waveform as is (the HuBERT k-means recipe's features)
    n, rate = up.num_layers - 1, up.sample_rate
    if not 0 <= layer <= n:
        raise ValueError(f"layer {layer} is out of range: {ckpt} has {n} transformer layers (use 0..{n}; 0 = before the first)")
    if sample_rate is not None and sample_rate != rate:
        raise ValueError(f"{ckpt} expects {rate} Hz audio, --sample-rate asks for {sample_rate}; drop --sample-rate")
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    up.to(dev)
    feats = LayerFeatures(up, layer, dev)
    return FeatureSpec(
        "model", up.hidden_dim, up.frame_rate, rate, feats.receptive_field, feats,
        up.num_frames, identity={"ckpt": str(Path(ckpt).resolve()), "layer": int(layer)},
        # CPU: forked worker processes with one thread each share the weights copy-on-write (a
        # tiny model took 1.0 s/utt with 2 threads vs 0.05 s with 1 on the busy 2-core machine).
        # GPU: this process only (no CUDA after fork).
        parallel=dev.type == "cpu",
    )


# --- the dump ----------------------------------------------------------------------------------


def estimate_bytes(spec: FeatureSpec, total_samples: int, file_rate: int | None) -> int:
    """Store size for ``total_samples`` manifest samples (at ``file_rate``): frames × dim × 4."""
    seconds = total_samples / (file_rate or spec.sample_rate)
    return int(seconds * spec.frame_rate * spec.dim * 4)


def _probe_rate(paths: list[str], tries: int = 5) -> int | None:
    # Manifest sample counts are at the files' own rate; the first readable header tells it.
    for p in paths[:tries]:
        try:
            return audio_info(p).sample_rate
        except AudioError:
            continue
    return None


def _check_params(out: Path, params: dict[str, Any], resume: bool, write: bool = True) -> None:
    path = out / PARAMS
    if resume and path.is_file():
        old = json.loads(path.read_text())
        for key in ("feature", "num_parts"):
            if old.get(key, 1 if key == "num_parts" else None) != params[key]:
                raise ValueError(
                    f"{path}: the store in {out} was started with {key}={old.get(key)}, this run asks for "
                    f"{params[key]}; use another output directory or rerun without resume (--no-resume)."
                )
    if write:  # part 0 only: no two parts write the same file
        atomic_write_json(path, params)


def dump_features(
    kind: str,
    manifest_tsv: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    workers: int = 2,
    sample_rate: int | None = None,
    resume: bool = True,
    progress: bool = True,
    shard_bytes: int = 256 << 20,
    part: Part | None = None,
    **feature_kwargs: Any,
) -> DumpSummary:
    """Compute ``kind`` (``mfcc``, ``fbank``, ``cqt``, ``model``) for every row of ``manifest_tsv``.

    Writes a :class:`~audiossl.data.feature_store.FeatureWriter` store in ``out_dir`` keyed by
    ``Manifest.ids``, index in manifest order, ``meta.extra`` = source manifest, feature
    parameters and sample rate. ``feature_kwargs`` go to :func:`get_feature` (e.g.
    ``num_mel_bins=128``, ``hop_length=320``); ``model`` takes ``ckpt``, ``layer`` and ``device``
    (see :func:`model_feature`; on a GPU it runs in this process). Audio is resampled on load to
    ``sample_rate`` (default 16000; the checkpoint's rate for ``model``).

    Raises ``ManifestError`` for a bad manifest, ``OSError`` when the disk cannot hold the store,
    ``ValueError`` when resuming a store made with other parameters.

    ``part``: this process's share (:func:`audiossl.data.sharding.current_part`); rows
    ``i % part.count == part.index``. Under torchrun rank 0 merges after a barrier; for
    independent parts (``--shard I/N``) the summary's store is None until
    :func:`~audiossl.data.feature_store.merge_parts` runs.
    """
    t0 = time.time()
    part = part or Part()
    tsv = Path(manifest_tsv).resolve()
    # utterance ids come from `<split>.ids` when present (Kaldi wav.scp input), else from relpaths
    manifest = read_manifest(tsv, labels=["ids"] if tsv.with_suffix(".ids").is_file() else [])
    if kind == "model":
        if part.distributed and torch.cuda.is_available() and feature_kwargs.get("device") in (None, "cuda"):
            feature_kwargs["device"] = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
        spec = model_feature(sample_rate=sample_rate, **feature_kwargs)
    else:
        spec = get_feature(kind, 16000 if sample_rate is None else sample_rate, **feature_kwargs)
    ids, paths = manifest.ids, [str(p) for p in manifest.paths()]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    params = {"source_manifest": str(tsv), "feature": spec.describe(), "sample_rate": spec.sample_rate,
              "num_parts": part.count}
    _check_params(out, params, resume, write=part.index == 0)
    mine = [i for i in range(len(ids)) if i % part.count == part.index]

    writer = FeatureWriter(out, kind=spec.name, dim=spec.dim, frame_rate=spec.frame_rate,
                           shard_bytes=shard_bytes, extra=params, resume=resume, part=(part.index, part.count))
    done = writer.done_ids
    todo = [i for i in mine if ids[i] not in done]
    summary = DumpSummary(out, spec.name, len(mine), reused=len(mine) - len(todo))
    if summary.reused:
        log.info("resuming: %d of %d utterances already in finished shards", summary.reused, len(ids))

    need = estimate_bytes(spec, sum(manifest.rows[i].num_samples for i in todo), _probe_rate([paths[i] for i in todo]))
    check_free_space(out, need, f"{spec.name} features")

    results = _ordered_map(_compute, ((i, paths[i]) for i in todo), max(1, workers) if spec.parallel else 0, spec)
    with contextlib.closing(results):  # stops the workers at once if writing fails
        for i, feats, skipped in _progress(results, len(todo), f"features {spec.name}", progress):
            if skipped is not None:
                log.warning("%s", skipped)
                summary.skipped.append(skipped)
                continue
            writer.add(ids[i], feats)
            summary.computed += 1

    writer.extra["num_skipped"] = len(summary.skipped)
    if part.single:
        summary.num_frames = writer.close(order=ids).num_frames
    else:
        writer.close_part({ids[i]: i for i in mine})
        summary.num_frames = int(sum(e.frames for e in writer.entries))
        part.barrier()
        if part.distributed and part.index == 0:
            merge_parts(out)
        part.barrier()
    summary.seconds = time.time() - t0
    log.info("%s", summary.summary())
    return summary


def _progress(it, total: int, desc: str, enabled: bool):
    if not enabled:
        return it

    return tqdm(it, total=total, desc=desc, unit="utt")
