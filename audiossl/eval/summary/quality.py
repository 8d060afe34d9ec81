"""Label quality (PNMI) tables the demo pipelines write: ``<pipeline>/quality.json`` (rows with
``name``, ``iteration``, ``reference``, ``pnmi`` and optional ``pnmi_best``, ``frame_rate``,
purities), a single ``audiossl kmeans quality --json`` record (one row: the pipeline's units), or only
``quality.txt`` from older runs (shown verbatim)."""

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
                data = json.loads(js.read_text())
                rows = data["rows"] if "rows" in data else [_single_record_row(d.name, data)]
                out.append(QualityTable(d.name, [r for r in rows if isinstance(r.get("pnmi"), (int, float))]))
                continue
            except (OSError, ValueError, KeyError, TypeError) as e:
                log.warning("%s: unreadable (%s); using quality.txt if present", js, e)
        if txt.is_file():
            out.append(QualityTable(d.name, text=txt.read_text()))
    return out


def _single_record_row(pipeline: str, record: dict) -> dict:
    """A ``kmeans quality --json`` record (one set of units, e.g. egs/demo/wavlm's) as one table row."""
    return {"name": f"{pipeline} k-means", "iteration": "next", "reference": "phone", "pnmi": record["pnmi"],
            **{k: record[k] for k in ("pnmi_best", "frame_rate") if k in record}}
