"""Label a manifest with a tokenizer: codes for every row, written as frame labels + sidecar.

:func:`label_manifest` serves the BEATs tokenizers (random projection, self-distilled);
:func:`label_codes` the acoustic codecs of MERT (RVQ-VAE, EnCodec), whose long files are coded
in pieces and whose codes are checked against the student before they are kept.
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from tqdm import tqdm

from audiossl.audio.io import AudioError, load_audio
from audiossl.data.frame_labels import LabelInfo, write_frame_labels
from audiossl.data.manifest import read_manifest
from audiossl.tokenizers.code_streams import check_code_stream, expected_frames, fit_length
from audiossl.upstream.engine import prefetched

log = logging.getLogger("audiossl.tokenizer")


def decode_rows(manifest, rows: list[int], sample_rate: int) -> tuple[list[tuple[int, torch.Tensor]], list[AudioError]]:
    """Manifest rows → (``[(row, waveform [sample] at sample_rate)]`` of the readable ones, the errors of the others)."""
    ok, bad = [], []
    for i in rows:
        try:
            ok.append((i, load_audio(manifest.path(i), sample_rate)[0]))
        except AudioError as e:
            bad.append(e)
    return ok, bad


def label_manifest(
    tsv: Path, out: Path, tokenize: Callable, *, sample_rate: int, num_classes: int, tokenizer: dict, frame_rate: float,
    num_codebooks: int, batch_size: int = 16, device: str = "cpu", decode_ahead: int = 2,
) -> tuple[Path, Counter]:
    """Codes for every row of ``tsv`` → ``out`` (+ sidecar). Returns ``(out, skipped count by reason)``.

    ``tokenize(wavs [B, S], lengths [B]) -> (codes [B, T, C], frames [B])``. Rows are batched by
    length (``batch_size`` rows, shortest first) and decoded ``decode_ahead`` batches ahead by the
    upstream engine (:func:`audiossl.upstream.engine.prefetched`); bad audio is logged with path and
    reason and gets an empty row.
    """
    manifest = read_manifest(tsv)
    rows: list[np.ndarray] = [np.zeros((0, num_codebooks), dtype=np.int64)] * len(manifest)
    skipped: Counter = Counter()
    order = sorted(range(len(manifest)), key=lambda i: manifest.rows[i].num_samples)
    batches = [order[s : s + batch_size] for s in range(0, len(order), batch_size)]
    bar = tqdm(total=len(order), desc=f"labelling {tsv.name}", unit="utt")
    for ids, (batch, bad), _ in prefetched(batches, lambda b: decode_rows(manifest, b, sample_rate), decode_ahead):
        for e in bad:
            log.warning("skipped: %s: %s%s", e.path, e.reason, f" ({e.detail})" if e.detail else "")
            skipped[e.reason] += 1
        if batch:
            lengths = torch.tensor([len(w) for _, w in batch], dtype=torch.long)
            wavs = torch.nn.utils.rnn.pad_sequence([w for _, w in batch], batch_first=True)
            codes, frames = tokenize(wavs.to(device), lengths.to(device))
            codes, frames = codes.cpu().numpy(), frames.cpu().tolist()
            for b, (i, _) in enumerate(batch):
                if frames[b] == 0:
                    log.warning("skipped: %s: too_short (%d samples, less than one 160 ms patch step)", manifest.path(i), len(batch[b][1]))
                    skipped["too_short"] += 1
                rows[i] = codes[b, : frames[b]].astype(np.int64)
        bar.update(len(ids))
    bar.close()
    info = LabelInfo(frame_rate=frame_rate, num_classes=num_classes, tokenizer=tokenizer, num_codebooks=num_codebooks)
    return write_frame_labels(out, rows, info), skipped


def label_codes(manifest, coder, out: Path, info, student, *, batch_size: int = 8, chunk_seconds: float = 30.0,
                desc: str = "codes", decode_ahead: int = 2) -> list:
    """Codes of every row of ``manifest`` from ``coder`` (see :mod:`audiossl.tokenizers.coders`) → ``out``
    (+ sidecar ``info``), checked against ``student`` (raises ``LabelError``). Files longer than
    ``chunk_seconds`` are coded in pieces; unreadable files are logged, get an empty row and are returned.
    Files are decoded ahead of the coder by the upstream engine (:func:`audiossl.upstream.engine.prefetched`)."""
    sr, hop = coder.sample_rate, coder.hop
    chunk = max(hop, int(chunk_seconds * sr) // hop * hop)
    rows: list[np.ndarray | None] = [None] * len(manifest)
    lengths = np.full(len(manifest), -1, dtype=np.int64)
    problems: list[AudioError] = []
    pieces: list[tuple[int, torch.Tensor]] = []  # (row, audio piece of <= chunk samples)
    parts: dict[int, list[np.ndarray]] = {}

    def flush() -> None:
        if not pieces:
            return
        lens = torch.tensor([len(w) for _, w in pieces])
        wavs = torch.zeros(len(pieces), int(lens.max()))
        for b, (_, w) in enumerate(pieces):
            wavs[b, : len(w)] = w
        for (row, _), codes in zip(pieces, coder.encode(wavs, lens)):
            parts.setdefault(row, []).append(codes)
        pieces.clear()

    files = [[i] for i in range(len(manifest))]
    decoded = prefetched(files, lambda b: decode_rows(manifest, b, sr), decode_ahead)
    for _, (ok, bad), _ in tqdm(decoded, total=len(files), desc=desc, unit="file"):
        for e in bad:
            problems.append(e)
            log.warning("skipping %s", e)
        for i, wav in ok:
            lengths[i] = len(wav)
            for start in range(0, len(wav), chunk):
                pieces.append((i, wav[start : start + chunk]))
                if len(pieces) >= batch_size:
                    flush()
    flush()
    for i in range(len(manifest)):
        if lengths[i] >= 0:
            rows[i] = fit_length(np.concatenate(parts[i]), expected_frames(int(lengths[i]), sr, sr / hop))
    empty = np.zeros((0, coder.num_codebooks), dtype=np.int64)
    final = [r if r is not None else empty for r in rows]
    write_frame_labels(out, final, info)
    check_code_stream(out, student, lengths, manifest.ids, final, info)
    warn_degenerate_codes(out, final)
    return problems


DEGENERATE_SHARE = 0.9
"""A codebook level whose most frequent code labels more than this share of the frames is reported."""


def code_shares(rows: list[np.ndarray]) -> np.ndarray:
    """``[level]``: the share of all frames taken by each codebook level's most frequent code."""
    codes = np.concatenate([r.reshape(len(r), -1) for r in rows if len(r)])
    return np.array([np.unique(codes[:, k], return_counts=True)[1].max() / len(codes) for k in range(codes.shape[1])])


def warn_degenerate_codes(out: Path, rows: list[np.ndarray]) -> None:
    """Log each level's top-code share; warn when a level is (nearly) one code: targets that carry no
    information (a tokenizer that diverged or collapsed) train nothing, and the student's loss still falls."""
    if not any(len(r) for r in rows):
        return
    shares = code_shares(rows)
    log.info("%s: most frequent code per level takes %s of the frames", out, " ".join(f"{s:.0%}" for s in shares))
    bad = np.flatnonzero(shares > DEGENERATE_SHARE)
    if len(bad):
        log.warning("%s: codebook level(s) %s give one code to more than %.0f%% of the frames: these targets carry "
                    "almost no information. Check the tokenizer's training (valid loss, codebook usage) before "
                    "pretraining on them.", out, ", ".join(map(str, bad)), 100 * DEGENERATE_SHARE)
