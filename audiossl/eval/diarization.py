"""Speaker diarization (SUPERB SD): 2-speaker frame activity, permutation-invariant training, DER.

Labels are ``.seg`` lines, one per manifest row: ``start:end:speaker`` tokens in seconds (what
``audiossl synth --tasks conversations`` and ``audiossl prepare diarization`` write). They are
rate-free: the frame targets ``[frame, 2]`` are drawn at the upstream's frame rate (frame ``t``
covers ``[t/rate, (t+1)/rate)`` and is active for a speaker when its centre lies in one of that
speaker's segments). The head predicts two sigmoid activities per frame; the loss is the
binary cross-entropy under the better of the two speaker orders per utterance (PIT, Yu et al.
2017 / EEND). The metric is the diarization error rate from ``pyannote.metrics`` (missed speech
+ false alarm + speaker confusion over the reference speech, optimal speaker mapping), collar 0
and overlap scored, as SUPERB reports it.
"""

from __future__ import annotations

from itertools import permutations
from pathlib import Path
from typing import Sequence

import numpy as np
import soundfile as sf
import torch
import torch.nn.functional as F
from torch import nn

from audiossl.data.frame_labels import LabelError
from audiossl.eval.confidence import Items

NUM_SPEAKERS = 2
Segments = list[tuple[float, float, str]]


def parse_segments(line: str, where: str = "") -> Segments:
    """``"0.3:2.1:spkA 1.9:3.0:spkB"`` → ``[(0.3, 2.1, "spkA"), (1.9, 3.0, "spkB")]``."""
    out = []
    for tok in line.split():
        parts = tok.split(":")
        try:
            if len(parts) < 3:
                raise ValueError
            s, e, spk = float(parts[0]), float(parts[1]), ":".join(parts[2:])
        except ValueError:
            raise LabelError(f"{where}: segment {tok!r} is not 'start:end:speaker' (seconds)") from None
        if not (0 <= s < e) or not spk:
            raise LabelError(f"{where}: segment {tok!r} needs 0 <= start < end and a speaker name")
        out.append((s, e, spk))
    return out


def speakers_in_order(segs: Segments) -> list[str]:
    """Speakers by first onset (ties by name), the column order of the frame targets."""
    first: dict[str, float] = {}
    for s, _, spk in segs:
        first[spk] = min(s, first.get(spk, s))
    return sorted(first, key=lambda k: (first[k], k))


def frame_activity(segs: Segments, frames: int, rate: float, num_speakers: int = NUM_SPEAKERS) -> np.ndarray:
    """``[frames, num_speakers]`` float32 0/1 speaker activity at ``rate`` frames per second."""
    spks = speakers_in_order(segs)
    if len(spks) > num_speakers:
        raise LabelError(f"{len(spks)} speakers ({', '.join(spks)}) but the head models {num_speakers}")
    centres = (np.arange(frames) + 0.5) / rate
    y = np.zeros((frames, num_speakers), np.float32)
    for s, e, spk in segs:
        y[(centres >= s) & (centres < e), spks.index(spk)] = 1.0
    return y


def activity_to_segments(act: np.ndarray, rate: float, names: Sequence[str] = ("A", "B")) -> Segments:
    """Binary ``[frames, speakers]`` → one segment per run of active frames, ``[t0/rate, t1/rate)``."""
    out = []
    for k in range(act.shape[1]):
        a = np.concatenate([[0], act[:, k].astype(np.int8), [0]])
        d = np.diff(a)
        for t0, t1 in zip(np.flatnonzero(d == 1), np.flatnonzero(d == -1)):
            out.append((t0 / rate, t1 / rate, names[k]))
    return sorted(out)


def _annotation(segs: Segments, uri: str):
    from pyannote.core import Annotation, Segment  # lazy: slow import; only the DER metric needs it

    ann = Annotation(uri=uri)
    for k, (s, e, spk) in enumerate(segs):
        ann[Segment(s, e), k] = spk
    return ann


def der(refs: Sequence[Segments], hyps: Sequence[Segments], durations: Sequence[float] | None = None,
        collar: float = 0.0) -> dict[str, float]:
    """Corpus DER in percent with ``pyannote.metrics`` (``collar`` seconds, overlap scored).

    ``durations`` (seconds) set each file's scored region ``[0, duration]`` (the UEM); without
    them pyannote scores the extent of the reference and hypothesis. Returns ``der`` and its
    parts ``miss``, ``fa``, ``conf`` (percent of reference speech).
    """
    from pyannote.core import Segment, Timeline  # lazy: slow import; only the DER metric needs it
    from pyannote.metrics.diarization import DiarizationErrorRate  # lazy: slow import; only the DER metric needs it

    if len(refs) != len(hyps) or not refs:
        raise ValueError(f"need equal, non-empty reference and hypothesis lists (got {len(refs)} and {len(hyps)})")
    metric = DiarizationErrorRate(collar=collar, skip_overlap=False)
    for i, (r, h) in enumerate(zip(refs, hyps)):
        uem = None if durations is None else Timeline([Segment(0.0, float(durations[i]))], uri=str(i))
        metric(_annotation(r, str(i)), _annotation(h, str(i)), uem=uem)
    total = metric["total"]
    if total <= 0:
        raise ValueError("DER undefined: the references contain no speech")
    return {"der": 100.0 * abs(metric), "miss": 100.0 * metric["missed detection"] / total,
            "fa": 100.0 * metric["false alarm"] / total, "conf": 100.0 * metric["confusion"] / total}


def der_components(refs: Sequence[Segments], hyps: Sequence[Segments], durations: Sequence[float] | None = None,
                   collar: float = 0.0) -> dict[str, np.ndarray]:
    """Per-file seconds of ``total`` reference speech, ``miss``, ``fa``, ``conf`` (pyannote's detailed
    components): corpus DER = (miss + fa + conf).sum() / total.sum(), so a bootstrap over files can
    recompute it from these (the confidence intervals of :mod:`audiossl.eval.confidence`)."""
    from pyannote.core import Segment, Timeline  # lazy: slow import; only the DER metric needs it
    from pyannote.metrics.diarization import DiarizationErrorRate  # lazy: slow import; only the DER metric needs it

    metric = DiarizationErrorRate(collar=collar, skip_overlap=False)
    out = {k: np.zeros(len(refs)) for k in ("total", "miss", "fa", "conf")}
    for i, (r, h) in enumerate(zip(refs, hyps)):
        uem = None if durations is None else Timeline([Segment(0.0, float(durations[i]))], uri=str(i))
        d = metric(_annotation(r, str(i)), _annotation(h, str(i)), uem=uem, detailed=True)
        out["total"][i], out["miss"][i] = d["total"], d["missed detection"]
        out["fa"][i], out["conf"][i] = d["false alarm"], d["confusion"]
    return out


def pit_bce(logits: torch.Tensor, targets: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Permutation-invariant BCE: ``logits``/``targets`` ``[batch, frame, spk]``; per utterance the
    speaker order with the lower loss counts; mean over utterances of the per-frame mean."""
    mask = (torch.arange(logits.shape[1], device=logits.device)[None, :] < lengths[:, None]).to(logits.dtype)
    n = mask.sum(1).clamp_min(1.0) * logits.shape[2]
    per_perm = []
    for p in permutations(range(logits.shape[2])):
        bce = F.binary_cross_entropy_with_logits(logits, targets[..., list(p)], reduction="none")
        per_perm.append((bce.sum(2) * mask).sum(1) / n)
    return torch.stack(per_perm, 1).min(1).values.mean()


def check_labels(manifest, label_path: Path) -> None:
    """Before training: every ``.seg`` line parses, has at most 2 speakers and no segment ends
    after its audio (read from the file header). Raises :class:`LabelError` naming file and line."""

    for i, line in enumerate(manifest.labels["seg"]):
        where = f"{label_path}:{i + 1} ({manifest.rows[i].relpath})"
        segs = parse_segments(line, where)
        spks = speakers_in_order(segs)
        if len(spks) > NUM_SPEAKERS:
            raise LabelError(f"{where}: {len(spks)} speakers ({', '.join(spks)}); the SD head models {NUM_SPEAKERS}")
        if segs:
            end = max(e for _, e, _ in segs)
            try:
                info = sf.info(str(manifest.path(i)))
            except Exception:  # unreadable audio is reported and skipped by the feature cache
                continue
            dur = info.frames / info.samplerate
            if end > dur + 0.05:
                raise LabelError(f"{where}: a segment ends at {end:.3f} s but the audio lasts {dur:.3f} s; "
                                 f"the labels belong to another recording or another segmentation.")


class DiarizationObjective:
    """The runner's objective for ``objective="diarization"`` (see :mod:`audiossl.eval.runner`)."""

    def __init__(self, spec, train, cfg) -> None:
        self.spec, self.cfg = spec, cfg
        if not any(l.strip() for l in train.labels):
            raise LabelError(f"{train.label_file}: no speech segments in the training split")
        self.vocab = [f"spk{k}" for k in range(NUM_SPEAKERS)]

    @property
    def out_dim(self) -> int:
        return NUM_SPEAKERS

    def _lens(self, lengths, lengths_cpu):
        return lengths_cpu if self.spec.head.kind == "bilstm" else lengths

    def target(self, split, i, frames):
        where = f"{split.label_file}:{i + 1} ({split.ids[i]})"
        segs = parse_segments(split.labels[i], where)
        rate = float(split.store.meta["frame_rate"])
        if segs and max(e for _, e, _ in segs) > frames / rate + 0.5:
            raise LabelError(f"{where}: segments end at {max(e for _, e, _ in segs):.2f} s but the upstream gives "
                             f"{frames} frames ({frames / rate:.2f} s)")
        try:
            return torch.from_numpy(frame_activity(segs, frames, rate))
        except LabelError as e:
            raise LabelError(f"{where}: {e}") from None

    def collate(self, targets):
        return nn.utils.rnn.pad_sequence(targets, batch_first=True)

    def loss(self, head, x, lengths, lengths_cpu, targets):
        return pit_bce(head(x, self._lens(lengths, lengths_cpu)), targets, lengths)

    def predict(self, head, x, lengths, lengths_cpu):
        act = (torch.sigmoid(head(x, self._lens(lengths, lengths_cpu))) > 0.5).cpu().numpy()
        return [act[b, :n] for b, n in enumerate(lengths_cpu.tolist())]

    def score(self, split, preds):
        rate = float(split.store.meta["frame_rate"])
        refs = [parse_segments(l, f"{split.label_file}:{i + 1}") for i, l in enumerate(split.labels)]
        hyps = [activity_to_segments(p, rate) for p in preds]
        return der(refs, hyps, [len(p) / rate for p in preds])

    def items(self, split, preds):
        """Per conversation: (error seconds, reference speech seconds) for DER and its parts."""
        rate = float(split.store.meta["frame_rate"])
        refs = [parse_segments(l, f"{split.label_file}:{i + 1}") for i, l in enumerate(split.labels)]
        c = der_components(refs, [activity_to_segments(p, rate) for p in preds], [len(p) / rate for p in preds])
        tot = c["total"]
        return Items(list(split.ids), {"der": (c["miss"] + c["fa"] + c["conf"], tot), "miss": (c["miss"], tot),
                                       "fa": (c["fa"], tot), "conf": (c["conf"], tot)})
