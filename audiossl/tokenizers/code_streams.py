"""Code streams (``[frames, codebooks]`` teacher codes per utterance) checked against a student.

MERT's public scripts fail silently when the teacher codes do not fit the student: codes at
another frame rate, a dictionary that maps every code to ``<unk>`` (MERT#8), or one code file
for another manifest. :func:`check_code_stream` refuses each of these with a message that names
the file, the row and both numbers. The label CLI runs it right after writing codes; the
trainer's own refusals (:mod:`audiossl.data.label_checks`) apply the same rules with the
student's exact frame count.

**Frame count convention.** A tokenizer with hop ``h`` gives ``ceil(n / h)`` frames for ``n``
samples, a conv front end with a receptive field ``r > h`` gives ``floor((n - r) / h) + 1``.
Code streams are written with :func:`expected_frames` = the whole number of frames nearest to the
duration (``round(n * rate / sr)``), which is within one frame of both conventions, so any
student whose count is within a frame of the duration accepts them.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from audiossl.data.frame_labels import LabelError, LabelInfo, read_frame_labels
from audiossl.data.label_checks import refuse_bad_counts
from audiossl.data.lengths import probe_lengths
from audiossl.data.manifest import read_manifest

log = logging.getLogger(__name__)


class CodeStreamError(LabelError):
    """Codes that do not fit the student; the message names the file, the row and both numbers."""


@dataclass
class StudentSpec:
    """What the student model expects of its targets."""

    frame_rate: float = 75.0
    """Student frames per second (MERT at 24 kHz with a 320-sample hop: 75)."""
    num_codebooks: int = 8
    """Classification heads = codes per frame."""
    num_classes: int = 1024
    """Classes per head; a code >= this would have no output to predict it."""
    sample_rate: int = 24000
    """Student sample rate (audio lengths are counted at this rate)."""
    num_frames: Callable[[int], int] | None = None
    """The student's exact frame count for a sample count; None = :func:`expected_frames`."""


def expected_frames(num_samples: int, sample_rate: int, frame_rate: float) -> int:
    """Whole number of frames nearest to the duration: ``floor(n * frame_rate / sample_rate + 1/2)``."""
    return int(math.floor(num_samples * frame_rate / sample_rate + 0.5))


def fit_length(codes: np.ndarray, num_frames: int) -> np.ndarray:
    """``codes [T, C]`` cut or extended (repeating the last frame) to ``[num_frames, C]``.

    Used to bring a tokenizer's ``ceil(n / hop)`` frames to :func:`expected_frames` (a difference of
    at most one frame); anything larger is a bug upstream and raises.
    """
    t = codes.shape[0]
    if abs(t - num_frames) > 2:
        raise ValueError(f"{t} code frames cannot be fitted to {num_frames} (more than 2 frames apart)")
    if t >= num_frames:
        return codes[:num_frames]
    if t == 0:
        raise ValueError("cannot extend an empty code stream")
    return np.concatenate([codes, np.repeat(codes[-1:], num_frames - t, axis=0)], axis=0)


def check_info(path: str | os.PathLike, info: LabelInfo, student: StudentSpec) -> None:
    """Frame rate, codes per frame and classes of ``path``'s sidecar against the student."""
    side = f"{path}.json"
    if abs(info.frame_rate - student.frame_rate) > 1e-6:
        raise CodeStreamError(
            f"{side}: codes are at {info.frame_rate:g} Hz but the student runs at {student.frame_rate:g} Hz; "
            f"re-tokenize with a hop of {student.sample_rate / student.frame_rate:g} samples at {student.sample_rate} Hz "
            f"(or build the student for {info.frame_rate:g} Hz)."
        )
    if info.num_codebooks != student.num_codebooks:
        raise CodeStreamError(
            f"{side}: codes have {info.num_codebooks} codebooks per frame but the student has "
            f"{student.num_codebooks} heads; use a tokenizer with {student.num_codebooks} levels "
            f"(EnCodec 24 kHz at 6 kbps has 8) or set the student's num_codebooks={info.num_codebooks}."
        )
    if info.num_classes > student.num_classes:
        raise CodeStreamError(
            f"{side}: codes have num_classes={info.num_classes} but the student has {student.num_classes} "
            f"classes per head, so codes >= {student.num_classes} would have no output (the '<unk>' failure "
            f"of MERT#8); set the student's num_classes={info.num_classes}."
        )


def check_code_stream(
    path: str | os.PathLike, student: StudentSpec, lengths: np.ndarray | None = None,
    ids: list[str] | None = None, codes: list[np.ndarray] | None = None, info: LabelInfo | None = None,
) -> None:
    """Refuse codes at ``path`` (+ ``.json``) that do not fit ``student``.

    ``lengths``: ``[rows]`` audio length in samples at ``student.sample_rate`` (-1 = unreadable,
    not checked; a row with 0 codes must be unreadable); ``ids``: utterance names for the message.
    ``codes``/``info``: already read rows (otherwise read from ``path``). Raises :class:`CodeStreamError`.
    """
    path = Path(path)
    if codes is None or info is None:
        codes, info = read_frame_labels(path)
    check_info(path, info, student)
    for i, c in enumerate(codes):
        if c.size and int(c.max()) >= student.num_classes:
            raise CodeStreamError(f"{path}:{i + 1}: code {int(c.max())} >= the student's {student.num_classes} classes")
    if lengths is None:
        return
    if len(lengths) != len(codes):
        raise CodeStreamError(
            f"{path}: {len(codes)} rows of codes but {len(lengths)} utterances in the manifest; the codes were "
            f"made for another manifest. Re-run `audiossl tokenizer label` on this manifest."
        )
    def expected(n: int) -> int:
        return student.num_frames(n) if student.num_frames else expected_frames(n, student.sample_rate, student.frame_rate)

    def line(i: int, got: int, want: float, n: int) -> str:
        name = f" utterance {ids[i]!r}" if ids else ""
        return (f"{path}:{i + 1}:{name} has {got} code frames but the student makes {want} ± 1 "
                f"({n} samples at {student.sample_rate} Hz, {student.frame_rate:g} Hz frames)")

    refuse_bad_counts(
        codes, lengths, expected, 1, line, what="code count that does not fit the student", error=CodeStreamError,
        advice="The codes were made at another hop or from other audio; re-tokenize this manifest.",
    )


def manifest_lengths(tsv: str | os.PathLike, sample_rate: int) -> tuple[np.ndarray, list[str]]:
    """``([rows]`` lengths at ``sample_rate`` from the audio headers (-1 = unreadable), ids) of a manifest."""
    manifest = read_manifest(tsv)
    lengths, _ = probe_lengths(manifest, sample_rate, progress=False)
    return lengths, manifest.ids


def check_codes_for_manifest(path: str | os.PathLike, tsv: str | os.PathLike, student: StudentSpec) -> None:
    """:func:`check_code_stream` with the lengths read from the manifest's audio files."""
    lengths, ids = manifest_lengths(tsv, student.sample_rate)
    check_code_stream(path, student, lengths, ids)
