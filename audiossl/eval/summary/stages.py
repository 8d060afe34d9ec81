"""Stage times that ``egs/utils/lib.sh`` records: ``<exp>/stage_times.tsv`` with a header and one
line per finished stage (recipe, stage, description, start, end in epoch seconds, seconds). A
redone stage appends a line; the last one per (recipe, stage) counts."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path


@dataclass
class StageTime:
    file: Path
    recipe: str
    stage: int
    description: str
    start: float
    end: float

    @property
    def seconds(self) -> float:
        return self.end - self.start


def read_stage_times(path: Path) -> list[StageTime]:
    last: dict[tuple[str, int], StageTime] = {}
    with open(path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            try:
                st = StageTime(path, row["recipe"], int(row["stage"]), row.get("description") or "",
                               float(row["start"]), float(row["end"]))
            except (KeyError, TypeError, ValueError):
                continue  # a line cut short by a killed run
            last[st.recipe, st.stage] = st
    return sorted(last.values(), key=lambda s: (s.start, s.stage))


def find_stage_times(root: str | Path, max_depth: int = 3) -> list[StageTime]:
    """Every ``stage_times.tsv`` at most ``max_depth`` directories below ``root``, in start order."""
    root = Path(root)
    files = [p for p in root.rglob("stage_times.tsv") if len(p.relative_to(root).parts) <= max_depth]
    # a stage that runs a nested recipe starts in the same second as the nested recipe's first stage
    return sorted((s for p in sorted(files) for s in read_stage_times(p)),
                  key=lambda s: (s.start, len(s.file.relative_to(root).parts), s.stage))
