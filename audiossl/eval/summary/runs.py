"""Pretraining runs under an experiment directory, read from their files only.

A run directory is one holding ``run_config.json`` (written by ``audiossl pretrain`` and
``audiossl tokenizer train``) with fairseq2's metric logs ``metrics/train.jsonl`` and
``metrics/valid.jsonl``: one JSON object per published step, keyed by the metrics' display names
(``Step``, ``Time``, ``Loss``, ``Masked Accuracy``, ``Audio Seconds``, ``Wall Time``, ...).

Compute per run (analytic, from the logs): audio-seconds seen = the sum of ``Audio Seconds`` over
the train lines (the audio of each published window, all ranks); training FLOPs = the family's
``train_flops_per_second(cfg, crop)`` × those seconds; wall time = the trainer's ``Wall Time`` at
its last line (per session when a run was resumed, summed). Logs written before ``Audio Seconds``
existed fall back to ``Audio s/s/device × Lapse Time`` per window (marked approximate).
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from audiossl.models.families import FamilyError, get_family

log = logging.getLogger(__name__)

# fairseq2 writes display names (audiossl.pretrain.unit.metric_descriptors) into the JSONL files.
LOSS, MASKED_ACC = "Loss", "Masked Accuracy"
AUDIO_SEC, AUDIO_RATE, LAPSE, WALL = "Audio Seconds", "Audio s/s/device", "Lapse Time", "Wall Time"


@dataclass
class PretrainRun:
    """One pretraining run; ``name`` is its directory relative to the experiment root without a
    trailing ``exp`` (``hubert/it1``), ``pipeline`` the first part of it (``hubert``)."""

    path: Path
    name: str
    family: str
    train: list[dict] = field(default_factory=list)
    valid: list[dict] = field(default_factory=list)
    flops_per_audio_second: float | None = None
    audio_seconds: float | None = None
    audio_exact: bool = True
    wall_seconds: float | None = None
    start: datetime | None = None
    end: datetime | None = None

    @property
    def pipeline(self) -> str:
        return self.name.split("/")[0]

    @property
    def iteration(self) -> str:
        """``it2`` for ``hubert/it2``; the last part of the name when no part looks like ``itN``."""
        parts = self.name.split("/")
        return next((p for p in parts if re.fullmatch(r"it\d+", p)), parts[-1])

    @property
    def steps(self) -> int | None:
        return max((int(line["Step"]) for line in self.train if "Step" in line), default=None)

    @property
    def train_flops(self) -> float | None:
        if self.flops_per_audio_second is None or self.audio_seconds is None:
            return None
        return self.flops_per_audio_second * self.audio_seconds

    def curve(self, split: str, metric: str) -> tuple[list[int], list[float]]:
        """``(steps, values)`` of ``metric`` in the ``train`` or ``valid`` log (lines without it skipped)."""
        lines = self.train if split == "train" else self.valid
        pts = [(int(x["Step"]), float(x[metric])) for x in lines if "Step" in x and isinstance(x.get(metric), (int, float))]
        return [s for s, _ in pts], [v for _, v in pts]


def read_jsonl(path: Path) -> list[dict]:
    """The objects of a JSONL file; a line that does not parse (a run killed mid-write) is skipped."""
    out = []
    if not path.is_file():
        return out
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            log.warning("%s line %d: not JSON, skipped", path, n)
            continue
        if isinstance(obj, dict):
            out.append(obj)
    return out


def sessions(lines: list[dict]) -> list[list[dict]]:
    """Split time-ordered log lines into trainer sessions: a resumed run restarts its ``Wall Time``."""
    out: list[list[dict]] = []
    last = None
    for x in lines:
        wall = x.get(WALL) if isinstance(x.get(WALL), (int, float)) else None
        if not out or (wall is not None and last is not None and wall < last):
            out.append([])
        out[-1].append(x)
        last = wall if wall is not None else last
    return out


def latest_windows(lines: list[dict]) -> list[dict]:
    """Train lines with the windows a resumed session recomputed counted once: a line at step s
    replaces every earlier line at step ≥ s (checkpoints fall on multiples of the log interval)."""
    kept: list[dict] = []
    for x in lines:
        s = x.get("Step")
        if s is not None:
            kept = [k for k in kept if k.get("Step") is None or k["Step"] < s]
        kept.append(x)
    return kept


def audio_seconds_seen(train: list[dict]) -> tuple[float | None, bool]:
    """``(audio-seconds, exact)`` summed over the train windows; None when a window logs neither."""
    total, exact = 0.0, True
    windows = latest_windows(train)
    for x in windows:
        if isinstance(x.get(AUDIO_SEC), (int, float)):
            total += float(x[AUDIO_SEC])
        elif isinstance(x.get(AUDIO_RATE), (int, float)) and isinstance(x.get(LAPSE), (int, float)):
            total += float(x[AUDIO_RATE]) * float(x[LAPSE])
            exact = False
        else:
            return None, False
    return (total, exact) if windows else (None, False)


def _time(x: dict) -> datetime | None:
    try:
        return datetime.fromisoformat(x["Time"])
    except (KeyError, TypeError, ValueError):
        return None


def _flops_per_audio_second(cfg: dict, where: Path) -> float | None:
    """The family's analytic training FLOPs per audio-second for this run's model and crop: as the
    trainer recorded it in run_config.json, else computed now (runs from before it did)."""
    if isinstance(cfg.get("flops_per_audio_second"), (int, float)):
        return float(cfg["flops_per_audio_second"])
    try:
        family = get_family(cfg["run"]["model"]["family"])
        model_cfg = family.config_from_dict(cfg["model"])
        return float(family.train_flops_per_second(model_cfg, int(cfg["run"]["data"]["max_sample_size"])))
    except (FamilyError, KeyError, TypeError, ValueError) as e:
        log.warning("%s: no FLOP count (%s)", where, e)
        return None


def read_run(path: Path, root: Path) -> PretrainRun:
    """The run in directory ``path`` (which holds ``run_config.json``), named relative to ``root``."""
    cfg = json.loads((path / "run_config.json").read_text())
    rel = path.relative_to(root).parts
    name = "/".join(rel[:-1] if len(rel) > 1 and rel[-1] == "exp" else rel) or path.name
    family = str(cfg.get("run", {}).get("model", {}).get("family", "?"))
    run = PretrainRun(path, name, family, read_jsonl(path / "metrics" / "train.jsonl"),
                      read_jsonl(path / "metrics" / "valid.jsonl"))
    run.flops_per_audio_second = _flops_per_audio_second(cfg, path)
    run.audio_seconds, run.audio_exact = audio_seconds_seen(run.train)
    both = sorted(run.train + run.valid, key=lambda x: x.get("Time", ""))
    walls = [max((float(x[WALL]) for x in s if isinstance(x.get(WALL), (int, float))), default=0.0) for s in sessions(both)]
    run.wall_seconds = sum(walls) if both else None
    times = [t for t in map(_time, both) if t is not None]
    if times:  # the first line is written Wall Time seconds after the session began
        lead = both[0].get(WALL) if isinstance(both[0].get(WALL), (int, float)) else 0.0
        run.start = times[0] - timedelta(seconds=float(lead))
        run.end = times[-1]
    return run


def find_runs(root: str | Path) -> list[PretrainRun]:
    """Every pretraining run under ``root`` (directories with ``run_config.json``), sorted by name."""
    root = Path(root)
    runs = []
    for cfg in sorted(root.rglob("run_config.json")):
        try:
            runs.append(read_run(cfg.parent, root))
        except (OSError, ValueError) as e:
            log.warning("%s: unreadable run config, left out (%s)", cfg, e)
    return sorted(runs, key=lambda r: r.name)


def pipeline_totals(run: PretrainRun, runs: list[PretrainRun]) -> tuple[float | None, float | None]:
    """``(flops, wall seconds)`` of ``run`` plus every run of its pipeline that ended before it began
    (the earlier iterations and tokenizers whose labels or teacher it used); None when one is unknown."""
    before = [r for r in runs if r.pipeline == run.pipeline and r is not run and r.end is not None
              and run.start is not None and r.end <= run.start]
    chain = [run] + before
    flops = None if any(r.train_flops is None for r in chain) else sum(r.train_flops for r in chain)  # type: ignore[misc]
    wall = None if any(r.wall_seconds is None for r in chain) else sum(r.wall_seconds for r in chain)  # type: ignore[misc]
    return flops, wall
