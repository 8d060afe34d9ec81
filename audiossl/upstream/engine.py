"""The engine that runs any :class:`~audiossl.upstream.base.Upstream` over audio files: batching
by total padded duration, decoding ahead in a background thread, chunking of long files, and the
per-file decode with bad-file reporting. extract, the bench cache, ``features model``, tokenizer
labelling and HEAR call these pieces.

Long files (over ``chunk_seconds``) are run alone, in chunks that overlap by ``overlap_seconds``
of context on each side; every chunk starts on a frame boundary (a multiple of the hop), and each
chunk contributes only the frames it "owns", so the stitched result has exactly the frame count
of a single pass. Frames near a chunk edge see less transformer context than in one pass (and a
GroupNorm front end normalises per chunk), so chunked values match a single pass only within a
tolerance; the conv / positional part is exact when the overlap covers its receptive field.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import torch

from audiossl.audio.io import AudioError, load_audio, audio_info
from audiossl.upstream.base import Upstream


def receptive_field(up: Upstream) -> int:
    """Fewest samples that give ``up`` one frame (binary search over ``num_frames``)."""
    lo, hi = 1, 1
    while up.num_frames(hi) < 1:
        hi *= 2
    while lo < hi:
        mid = (lo + hi) // 2
        lo, hi = (mid + 1, hi) if up.num_frames(mid) < 1 else (lo, mid)
    return lo


def forward_long(up: Upstream, wav: torch.Tensor, chunk_seconds: float, overlap_seconds: float,
                 max_layer: int | None = None) -> list[torch.Tensor]:
    """One utterance ``[sample]`` in overlapping chunks → per-layer ``[frame, dim]`` with exactly
    ``up.num_frames(len(wav))`` frames (see module docstring). The context on each side is capped at
    a quarter of ``chunk_seconds``. ``max_layer``: only layers ``0..max_layer`` (see :meth:`Upstream.forward`)."""
    n_samples = wav.shape[0]
    total = up.num_frames(n_samples)
    hop = round(up.sample_rate / up.frame_rate)
    if abs(hop * up.frame_rate - up.sample_rate) > 1e-6:
        raise ValueError(f"{up.name}: chunking needs an integer hop, got {up.sample_rate / up.frame_rate}")
    rf = receptive_field(up)
    chunk_frames = max(1, round(chunk_seconds * up.frame_rate))
    # context may take at most half of a chunk, so a chunk always owns >= half of its frames
    ctx = min(max(0, round(overlap_seconds * up.frame_rate)), chunk_frames // 4)
    own = max(1, chunk_frames - 2 * ctx)
    pieces: list[list[torch.Tensor]] = []
    for f0 in range(0, total, own):
        f1 = min(total, f0 + own)
        a_frame = max(0, f0 - ctx)
        a, b = a_frame * hop, min(n_samples, (f1 - 1 + ctx) * hop + rf)
        chunk = wav[a:b][None]
        out = up(chunk, torch.tensor([b - a], device=wav.device), max_layer=max_layer)
        pieces.append([h[0, f0 - a_frame : f1 - a_frame] for h in out.hidden_states])
    if not pieces:
        empty = wav.new_zeros(0, up.hidden_dim)
        return [empty] * (up.num_layers if max_layer is None else max_layer + 1)
    return [torch.cat([p[layer] for p in pieces], dim=0) for layer in range(len(pieces[0]))]


def duration_batches(items: list[tuple[str, str, int]], max_samples: int, single: bool) -> list[list[tuple[str, str, int]]]:
    """Longest first; each batch's ``len × longest`` stays within ``max_samples`` (≥ 1 item)."""
    items = sorted(items, key=lambda x: -x[2])
    out: list[list[tuple[str, str, int]]] = []
    cur: list[tuple[str, str, int]] = []
    for it in items:
        if cur and (single or (len(cur) + 1) * cur[0][2] > max_samples):
            out.append(cur)
            cur = []
        cur.append(it)
    if cur:
        out.append(cur)
    return out


def default_batch_seconds(device: str | torch.device) -> float:
    """Padded audio per forward: 160 s on a GPU, 10 s on CPU.

    On CPU, big padded batches only add memory traffic (HuBERT Base's first conv layer alone
    writes 13 MB per audio-second): one 2–16 s utterance per forward ran at RTF 0.12 on 2 cores,
    a 160 s batch at RTF 0.23 (``tools/bench/extract.py --pipeline``).
    """
    return 160.0 if torch.device(device).type == "cuda" else 10.0


def prefetched(batches: list, decode: Callable, depth: int) -> Iterator[tuple[list, object, float]]:
    """Yield ``(batch, decode(batch), seconds waited for it)``, decoding up to ``depth`` batches
    ahead in one background thread (soundfile and resampling release the GIL), so decoding
    overlaps the forward pass. ``depth`` 0 decodes inline."""
    if depth <= 0:
        for batch in batches:
            t0 = time.perf_counter()
            decoded = decode(batch)
            yield batch, decoded, time.perf_counter() - t0
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="upstream-decode") as pool:
        pending = [pool.submit(decode, b) for b in batches[:depth]]
        for k, batch in enumerate(batches):
            t0 = time.perf_counter()
            decoded = pending.pop(0).result()
            waited = time.perf_counter() - t0
            if k + depth < len(batches):
                pending.append(pool.submit(decode, batches[k + depth]))
            yield batch, decoded, waited




def decode_items(up: Upstream, batch: list[tuple[str, str, int]], check_frames: bool = True,
                 ) -> tuple[list[torch.Tensor], list[str], list[tuple[str, str, str]]]:
    """``[(id, path, samples)]`` → (waveforms ``[sample]`` at ``up.sample_rate``, their ids, bad files
    as ``(path, reason, detail)``): unreadable audio, and with ``check_frames`` audio too short for
    one frame (``up.num_frames``), are reported, not run."""
    wavs, ok, bad = [], [], []
    for uid, path, _ in batch:
        try:
            wav, _ = load_audio(path, up.sample_rate)
        except AudioError as e:
            bad.append((str(path), e.reason, e.detail))
            continue
        if check_frames and up.num_frames(wav.shape[0]) == 0:
            bad.append((str(path), "too_short", f"{wav.shape[0]} samples give no frame"))
            continue
        wavs.append(wav)
        ok.append(uid)
    return wavs, ok, bad


def forward_batch(up: Upstream, wavs: list[torch.Tensor], device: str | torch.device, *, max_layer: int | None = None,
                  chunk_seconds: float = 0.0, overlap_seconds: float = 2.0) -> list[list[torch.Tensor]]:
    """Waveforms ``[sample]`` each → per utterance, per layer ``[frame, dim]`` (its valid frames).

    Waveforms longer than ``chunk_seconds`` (> 0, and ``up.chunkable``) run alone in chunks
    (:func:`forward_long`); the others are zero padded into one forward."""
    chunk = int(chunk_seconds * up.sample_rate) if chunk_seconds > 0 and up.chunkable else 0
    out: list[list[torch.Tensor] | None] = [None] * len(wavs)
    rest = []
    for i, w in enumerate(wavs):
        if chunk and w.shape[0] > chunk:
            out[i] = forward_long(up, w.to(device), chunk_seconds, overlap_seconds, max_layer)
        else:
            rest.append(i)
    if rest:
        lengths = torch.tensor([wavs[i].shape[0] for i in rest])
        padded = torch.nn.utils.rnn.pad_sequence([wavs[i] for i in rest], batch_first=True).to(device)
        res = up(padded, lengths.to(device), max_layer=max_layer)
        frames = res.lengths.tolist()
        for b, i in enumerate(rest):
            out[i] = [h[b, : frames[b]] for h in res.hidden_states]
    return out  # type: ignore[return-value]


def plan_batches(up: Upstream, items: list[tuple[str, str, int]], max_seconds: float | None, device: str | torch.device,
                 chunk_seconds: float) -> list[list[tuple[str, str, int]]]:
    """``[(id, path, samples at up.sample_rate)]`` → batches: files over ``chunk_seconds`` alone
    (run in chunks), the rest by :func:`duration_batches` within ``max_seconds`` of padded audio
    (None: :func:`default_batch_seconds`), one per batch when padding changes ``up``'s values."""
    sr = up.sample_rate
    chunk = int(chunk_seconds * sr) if chunk_seconds > 0 and up.chunkable else 0
    long_items = [it for it in items if chunk and it[2] > chunk]
    short = [it for it in items if not (chunk and it[2] > chunk)]
    return [[it] for it in long_items] + duration_batches(
        short, int((max_seconds or default_batch_seconds(device)) * sr), single=not up.padding_invariant)


def probe_items(pairs: list[tuple[str, str]], sample_rate: int) -> tuple[list[tuple[str, str, int]], list[tuple[str, str, str]]]:
    """``[(id, path)]`` → (``[(id, path, samples at sample_rate)]`` from the headers, bad files as
    ``(path, reason, detail)``: unreadable, or truncated (the header promises more data than the file holds))."""
    items, bad = [], []
    for uid, path in pairs:
        try:
            info = audio_info(path)
        except AudioError as e:
            bad.append((path, e.reason, e.detail))
            continue
        if info.truncated:
            bad.append((path, "truncated", "header promises more audio data than the file holds"))
            continue
        items.append((uid, path, round(info.num_frames * sample_rate / info.sample_rate) if info.sample_rate else 0))
    return items, bad
