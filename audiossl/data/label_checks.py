"""Refusals before step 1: labels that do not fit the model or the audio stop the run.

These are the failures that otherwise surface hours later as a silently wrong model
(fairseq#5005 / #5097, MERT#8): labels made at another frame rate, one label file for a
different manifest, a dictionary that does not match the model's output layer.

**Count tolerance.** For an utterance of ``n`` samples the model emits ``T = num_frames(n)``
frames at ``f`` Hz, so labels at ``r`` Hz should number ``T * r / f``. Front ends differ by a
frame at the edges (padding, window centring), so a count is accepted when it is within
``max(1, r / f)`` labels of that: one label frame, or one *model* frame when labels are denser
than model frames (100 Hz MFCC labels vs 50 Hz model frames: ±2 labels).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from audiossl.data.frame_labels import LabelError, LabelInfo, read_label_info
from audiossl.data.manifest import Manifest

log = logging.getLogger(__name__)

MAX_LISTED = 5


@dataclass
class LabelCheckContext:
    """What the checks compare: the label files, the manifest and the model."""

    label_path: Path
    manifest: Manifest
    labels: list[np.ndarray]
    info: LabelInfo
    lengths: np.ndarray
    """``[N]`` audio length of each row at the model's sample rate (-1 = unreadable, skipped)."""
    num_frames: Callable[[int], int]
    frame_rate: float
    model_num_classes: int
    expected_label_rate: float | None = None
    model_num_codebooks: int = 1
    """Codes per frame the model predicts (MERT: 8 RVQ levels; BEATs: 8 frequency patches)."""


def label_tolerance(label_rate: float, frame_rate: float) -> float:
    return max(1.0, label_rate / frame_rate)


def check_row_count(ctx: LabelCheckContext) -> None:
    if len(ctx.labels) != len(ctx.manifest):
        raise LabelError(
            f"{ctx.label_path}: {len(ctx.labels)} label rows but manifest {ctx.manifest.source} has "
            f"{len(ctx.manifest)} rows; the labels were made for a different manifest. Re-label this "
            f"split with the same manifest (`audiossl kmeans label`)."
        )


def check_label_rate(ctx: LabelCheckContext) -> None:
    if ctx.expected_label_rate is None:
        return
    if abs(ctx.info.frame_rate - ctx.expected_label_rate) > 1e-6:
        raise LabelError(
            f"{ctx.label_path}.json: labels are at {ctx.info.frame_rate:g} Hz but the run config expects "
            f"label_rate={ctx.expected_label_rate:g} Hz; use labels made at {ctx.expected_label_rate:g} Hz "
            f"or set data.label_rate={ctx.info.frame_rate:g} (or leave it unset: the sidecar decides) if these are the labels you mean."
        )


def check_codebooks(ctx: LabelCheckContext) -> None:
    """The labels carry as many codes per frame as the model has prediction heads."""
    have, want = ctx.info.num_codebooks, ctx.model_num_codebooks
    if have != want:
        raise LabelError(
            f"{ctx.label_path}.json: labels have num_codebooks={have} codes per frame but the model predicts "
            f"{want}; use codes from a tokenizer with {want} codebooks (or set model.num_codebooks={have})."
        )


def check_dictionary(ctx: LabelCheckContext) -> None:
    """num_classes > 0, a ``dict.<ext>.txt`` beside the labels (if any) agrees, and the model can emit every label."""
    n = ctx.info.num_classes
    if n <= 0:
        raise LabelError(f"{ctx.label_path}.json: num_classes is {n}; the label dictionary is empty")
    ext = ctx.label_path.suffix.lstrip(".")
    dict_path = ctx.label_path.parent / f"dict.{ext}.txt"
    if dict_path.is_file():
        entries = [line for line in dict_path.read_text(encoding="utf-8").splitlines() if line.strip()]
        if not entries:
            raise LabelError(f"{dict_path}: dictionary is empty but {ctx.label_path}.json declares {n} classes")
        if len(entries) != n:
            raise LabelError(
                f"{dict_path}: {len(entries)} entries but {ctx.label_path}.json declares num_classes={n}; "
                f"regenerate the dictionary with the labels."
            )
    if n > ctx.model_num_classes:
        raise LabelError(
            f"{ctx.label_path}.json: labels have num_classes={n} but the model has num_classes="
            f"{ctx.model_num_classes}; set model.num_classes={n} (or use labels with ≤ {ctx.model_num_classes} classes)."
        )
    if n < ctx.model_num_classes:
        log.warning(
            "%s.json: %d label classes but the model predicts %d; the extra outputs are never trained "
            "(set model.num_classes=%d to match)", ctx.label_path, n, ctx.model_num_classes, n,
        )
    for i, lab in enumerate(ctx.labels):
        if lab.size and int(lab.max()) >= ctx.model_num_classes:
            raise LabelError(
                f"{ctx.label_path}:{i + 1}: utterance {ctx.manifest.ids[i]!r} has label {int(lab.max())} but the "
                f"model has num_classes={ctx.model_num_classes} (labels must be < {ctx.model_num_classes})."
            )


def refuse_bad_counts(
    rows: Sequence[np.ndarray], lengths: Sequence[int] | np.ndarray, expected: Callable[[int], float], tol: float,
    line: Callable[[int, int, float, int], str], *, what: str, advice: str, error: type[LabelError] = LabelError,
) -> None:
    """Per-utterance count check shared by frame labels and code streams: row ``i`` of ``rows`` must hold
    ``expected(n)`` ± ``tol`` frames for ``n = lengths[i]`` samples (``n < 0``: unreadable audio,
    reported and skipped elsewhere). Raises ``error`` listing the first :data:`MAX_LISTED` misfits
    (``line(i, got, want, n)`` each) under "``k`` of ``N`` utterances have a ``what``", then ``advice``."""
    bad: list[str] = []
    for i, (row, n) in enumerate(zip(rows, lengths)):
        n = int(n)
        if n < 0:
            continue
        want = expected(n)
        if abs(len(row) - want) > tol + 1e-9:
            bad.append(line(i, len(row), want, n))
    if bad:
        more = f"\n  ... and {len(bad) - MAX_LISTED} more" if len(bad) > MAX_LISTED else ""
        raise error(f"{len(bad)} of {len(rows)} utterances have a {what}:\n  " + "\n  ".join(bad[:MAX_LISTED]) + more + "\n" + advice)


def check_counts(ctx: LabelCheckContext) -> None:
    """Per-utterance label count vs ``num_frames(samples) * r / f`` (± :func:`label_tolerance`)."""
    r, f = ctx.info.frame_rate, ctx.frame_rate
    tol = label_tolerance(r, f)
    ids = ctx.manifest.ids

    def line(i: int, got: int, expected: float, n: int) -> str:
        return (
            f"{ctx.label_path}:{i + 1}: utterance {ids[i]!r} (manifest row {i + 2}) has {got} labels, "
            f"expected {expected:g} ± {tol:g} ({n} samples → {ctx.num_frames(n)} model frames at {f:g} Hz, "
            f"labels at {r:g} Hz)"
        )

    refuse_bad_counts(
        ctx.labels, ctx.lengths, lambda n: ctx.num_frames(n) * r / f, tol, line,
        what="label count that does not match the audio",
        advice="The labels were made with another frame shift, from other audio, or for another manifest; "
               "re-label with the features of this manifest.",
    )


def settle_from_labels(cfg, label_path: Path | None, labels_at_frame_rate: bool = False) -> None:
    """Fill what the run config leaves open from the training labels' sidecar (``<labels>.json``), so
    the label rate and class count travel with the labels and no recipe has to repeat them:
    ``data.label_rate`` (unless the family wants labels at its own frame rate, e.g. MERT) and
    ``model.num_classes``. Values the config pins are kept; the checks then refuse a mismatch."""
    if label_path is None:
        return
    info = read_label_info(label_path)
    if cfg.data.label_rate is None and not labels_at_frame_rate:
        cfg.data.label_rate = info.frame_rate
        log.info("data.label_rate=%g from %s.json", info.frame_rate, label_path)
    if "num_classes" not in cfg.model.overrides:
        cfg.model.overrides["num_classes"] = info.num_classes
        log.info("model.num_classes=%d from %s.json", info.num_classes, label_path)


def run_label_checks(ctx: LabelCheckContext) -> None:
    """All refusals, cheapest first. Raises :class:`LabelError` naming the file, row and both numbers."""
    check_row_count(ctx)
    check_label_rate(ctx)
    check_codebooks(ctx)
    check_dictionary(ctx)
    check_counts(ctx)
