"""Label quality (PNMI) tables the demo pipelines write: ``<pipeline>/quality.json`` (rows with
``name``, ``iteration``, ``reference``, ``pnmi`` and optional ``pnmi_best``, ``frame_rate``,
purities), or only ``quality.txt`` from older runs (shown verbatim)."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)


@dataclass
class QualityTable:
    pipeline: str
    rows: list[dict] = field(default_factory=list)
    text: str | None = None
    """the markdown of quality.txt when there is no quality.json"""


def find_quality(root: str | Path) -> list[QualityTable]:
    """One table per pipeline directory directly under ``root`` that holds quality.json or quality.txt."""
    root = Path(root)
    out = []
    for d in sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []:
        js, txt = d / "quality.json", d / "quality.txt"
        if js.is_file():
            try:
                rows = json.loads(js.read_text())["rows"]
                out.append(QualityTable(d.name, [r for r in rows if isinstance(r.get("pnmi"), (int, float))]))
                continue
            except (OSError, ValueError, KeyError, TypeError) as e:
                log.warning("%s: unreadable (%s); using quality.txt if present", js, e)
        if txt.is_file():
            out.append(QualityTable(d.name, text=txt.read_text()))
    return out
