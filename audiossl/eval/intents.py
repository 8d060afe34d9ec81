"""Intent classification (SUPERB IC, Fluent Speech Commands): the full intent is one class.

``.lbl`` lines are ``action|object|location`` (FSC slot values, ``none`` for an empty slot), so the
pooled classifier's accuracy is SUPERB's IC accuracy: an utterance counts only when all three
slots are right. ``audiossl synth --tasks intents`` and ``audiossl prepare fluent_speech_commands``
write that form (plus the slots alone in ``.action`` / ``.object`` / ``.location``).
"""

from __future__ import annotations

from pathlib import Path

from audiossl.data.frame_labels import LabelError


def split_intent(label: str, where: str = "") -> tuple[str, str, str]:
    parts = [p.strip() for p in label.split("|")]
    if len(parts) != 3 or not all(parts):
        raise LabelError(f"{where}: intent {label.strip()!r} is not 'action|object|location' (use 'none' for an "
                         f"empty slot); make the labels with `audiossl prepare fluent_speech_commands`.")
    return parts[0], parts[1], parts[2]


def check_labels(manifest, label_path: Path) -> None:
    """Before training: every ``.lbl`` line is a full ``action|object|location`` intent."""
    for i, line in enumerate(manifest.labels["lbl"]):
        split_intent(line, f"{label_path}:{i + 1} ({manifest.rows[i].relpath})")
