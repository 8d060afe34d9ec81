"""Beat tracking (MARBLE): frame-level beat activation, peak picking, F-measure (``mir_eval``).

Labels are ``.beats`` lines, one per manifest row: the beat times in seconds, space-separated
(what ``audiossl synth --tasks music_beats`` and ``audiossl prepare beats`` write). Targets are
drawn at the upstream's frame rate: frame ``t`` covers ``[t/rate, (t+1)/rate)``; the frame
holding a beat is 1 and its two neighbours 0.5 (target widening, Böck et al. 2016), so a
20 ms-hop upstream is not punished for a beat on a frame edge. A linear head gives one logit per
frame (binary cross-entropy). Beats are the local maxima of the sigmoid activation above
``threshold`` at least ``60/max_bpm`` s apart, placed at the frame centre. The metric is
``mir_eval.beat.f_measure`` (±70 ms window) averaged over clips, in percent; no beats are
trimmed (mir_eval's ``evaluate`` drops the first 5 s, which would drop most of a short clip).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence
import warnings

import numpy as np
import soundfile as sf
import torch
import torch.nn.functional as F
from torch import nn

from audiossl.data.frame_labels import LabelError
from audiossl.eval.confidence import Items


def parse_beats(line: str, where: str = "") -> np.ndarray:
    try:
        b = np.array([float(t) for t in line.split()], dtype=np.float64)
    except ValueError:
        raise LabelError(f"{where}: beat times must be seconds separated by spaces, got {line[:60]!r}") from None
    if (b < 0).any() or (np.diff(b) <= 0).any():
        raise LabelError(f"{where}: beat times must be non-negative and increasing")
    return b


def beat_targets(beats: np.ndarray, frames: int, rate: float, widen: float = 0.5) -> np.ndarray:
    """``[frames]`` float32: 1 on each beat's frame, ``widen`` on its neighbours."""
    y = np.zeros(frames, np.float32)
    idx = np.floor(beats * rate).astype(np.int64)
    idx = idx[(idx >= 0) & (idx < frames)]
    for d in (-1, 1):
        j = idx + d
        j = j[(j >= 0) & (j < frames)]
        y[j] = np.maximum(y[j], widen)
    y[idx] = 1.0
    return y


def pick_peaks(act: np.ndarray, rate: float, threshold: float = 0.5, max_bpm: float = 300.0) -> np.ndarray:
    """Beat times (s): local maxima of ``act`` above ``threshold``, at least ``60/max_bpm`` s apart."""
    from scipy.signal import find_peaks  # lazy: scipy imports slowly; only this path needs it

    if act.size == 0:
        return np.zeros(0)
    peaks, _ = find_peaks(np.concatenate([[-np.inf], act, [-np.inf]]), height=threshold,
                          distance=max(1, int(rate * 60.0 / max_bpm)))
    return (peaks - 1 + 0.5) / rate


def beat_f_measure(refs: Sequence[np.ndarray], ests: Sequence[np.ndarray], window: float = 0.07) -> float:
    return 100.0 * float(np.mean(beat_f_per_clip(refs, ests, window)))


def beat_f_per_clip(refs: Sequence[np.ndarray], ests: Sequence[np.ndarray], window: float = 0.07) -> np.ndarray:
    """``mir_eval.beat.f_measure`` per clip, in [0, 1] (a clip without reference beats is an error;
    one without estimated beats scores 0); :func:`beat_f_measure` is their mean in percent."""

    import mir_eval  # lazy: only the beat/key metrics need it

    if len(refs) != len(ests) or not refs:
        raise ValueError(f"need equal, non-empty beat lists (got {len(refs)} and {len(ests)})")
    scores = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "Estimated beats are empty." → score 0
        for r, e in zip(refs, ests):
            if len(r) == 0:
                raise ValueError("beat F-measure undefined for a clip without reference beats")
            scores.append(mir_eval.beat.f_measure(np.asarray(r, float), np.asarray(e, float), f_measure_threshold=window))
    return np.asarray(scores, dtype=np.float64)


def check_labels(manifest, label_path: Path) -> None:
    """Before training: every ``.beats`` line parses, has beats and none lies past its audio's end."""

    for i, line in enumerate(manifest.labels["beats"]):
        where = f"{label_path}:{i + 1} ({manifest.rows[i].relpath})"
        b = parse_beats(line, where)
        if b.size == 0:
            raise LabelError(f"{where}: no beat times; every clip needs its beat annotation")
        try:
            info = sf.info(str(manifest.path(i)))
        except Exception:
            continue  # unreadable audio is reported and skipped by the feature cache
        dur = info.frames / info.samplerate
        if b[-1] > dur + 0.5:
            raise LabelError(f"{where}: a beat at {b[-1]:.3f} s but the audio lasts {dur:.3f} s; the annotation "
                             f"belongs to another file.")


class BeatObjective:
    """The runner's objective for ``objective="beats"`` (see :mod:`audiossl.eval.runner`)."""

    threshold = 0.5

    def __init__(self, spec, train, cfg) -> None:
        self.spec, self.cfg = spec, cfg
        self.vocab = ["beat"]

    @property
    def out_dim(self) -> int:
        return 1

    def _lens(self, lengths, lengths_cpu):
        return lengths_cpu if self.spec.head.kind == "bilstm" else lengths

    def target(self, split, i, frames):
        where = f"{split.label_file}:{i + 1} ({split.ids[i]})"
        b = parse_beats(split.labels[i], where)
        rate = float(split.store.meta["frame_rate"])
        if b.size and b[-1] > frames / rate + 0.5:
            raise LabelError(f"{where}: a beat at {b[-1]:.2f} s but the upstream gives {frames} frames "
                             f"({frames / rate:.2f} s)")
        return torch.from_numpy(beat_targets(b, frames, rate))

    def collate(self, targets):
        return nn.utils.rnn.pad_sequence(targets, batch_first=True, padding_value=-1.0)

    def loss(self, head, x, lengths, lengths_cpu, targets):
        logits = head(x, self._lens(lengths, lengths_cpu))[..., 0]
        mask = targets >= 0
        # beats are ~1 frame in 25: weight positives so the activation peaks rise above 0.5
        w = torch.where(targets > 0, 5.0, 1.0)
        bce = F.binary_cross_entropy_with_logits(logits, targets.clamp_min(0), weight=w, reduction="none")
        return (bce * mask).sum() / mask.sum().clamp_min(1)

    def predict(self, head, x, lengths, lengths_cpu):
        act = torch.sigmoid(head(x, self._lens(lengths, lengths_cpu))[..., 0]).cpu().numpy()
        return [act[b, :n] for b, n in enumerate(lengths_cpu.tolist())]

    def score(self, split, preds):
        rate = float(split.store.meta["frame_rate"])
        refs = [parse_beats(l, f"{split.label_file}:{i + 1}") for i, l in enumerate(split.labels)]
        return {"beat_f": beat_f_measure(refs, [pick_peaks(p, rate, self.threshold) for p in preds])}

    def items(self, split, preds):
        """Per clip: (F-measure, 1), so the bootstrap resamples clips."""
        rate = float(split.store.meta["frame_rate"])
        refs = [parse_beats(l, f"{split.label_file}:{i + 1}") for i, l in enumerate(split.labels)]
        f = beat_f_per_clip(refs, [pick_peaks(p, rate, self.threshold) for p in preds])
        return Items(list(split.ids), {"beat_f": (f, np.ones(len(f)))})
