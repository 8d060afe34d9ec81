"""Bench tables under an experiment directory (``**/results.json`` of ``audiossl bench``).

Rows are named by the pretraining run their checkpoint came from (``hubert/it1`` for
``…/hubert/it1/exp/checkpoint``), so tables read the same wherever the bench ran; other upstreams
(``fbank``, ``hf:…``) keep their spec. Every value is read in the "higher is better" orientation
(:func:`audiossl.eval.report.task_score`: error rates as 100 − x), with its 95 % interval.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from audiossl.eval.report import BASELINE, lower_is_better
from audiossl.eval.summary.runs import PretrainRun

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Score:
    """A value with its 95 % interval, oriented so that higher is better (``lo``/``hi`` None: no CI)."""

    value: float
    lo: float | None
    hi: float | None

    @staticmethod
    def oriented(value: float, ci: list[float] | None, lower_better: bool) -> "Score":
        if not lower_better:
            return Score(value, *(ci if ci else (None, None)))
        return Score(100.0 - value, *((100.0 - ci[1], 100.0 - ci[0]) if ci else (None, None)))

    def text(self) -> str:
        return f"{self.value:.2f}" + ("" if self.lo is None else f" [{self.lo:.2f}, {self.hi:.2f}]")


@dataclass
class BenchTable:
    name: str
    """the results directory relative to the experiment root (``bench/hubert``)"""
    path: Path
    data: dict
    labels: dict[str, str]
    """upstream spec → row label"""
    runs: dict[str, PretrainRun]
    """row label → the pretraining run of that row (model rows only)"""

    @property
    def rows(self) -> list[str]:
        return [self.labels[u] for u in dict.fromkeys(r["upstream"] for r in self.data.get("records", []))]

    @property
    def tasks(self) -> list[str]:
        return list(self.data.get("tasks") or dict.fromkeys(r["task"] for r in self.data.get("records", [])))

    def record(self, row: str, task: str) -> dict | None:
        return next((r for r in self.data.get("records", []) if self.labels[r["upstream"]] == row and r["task"] == task), None)

    def task_score(self, row: str, task: str) -> Score | None:
        r = self.record(row, task)
        if r is None:
            return None
        return Score.oriented(float(r["value"]), (r.get("ci") or {}).get(r["metric"]), lower_is_better(r["metric"]))

    def overall(self, row: str) -> Score | None:
        up = self.upstream(row)
        v = (self.data.get("overall") or {}).get(up)
        if v is None:
            return None
        ci = (self.data.get("overall_ci") or {}).get(up)
        return Score(float(v), *(ci if ci else (None, None)))

    def upstream(self, row: str) -> str:
        return next(u for u, lab in self.labels.items() if lab == row)

    def shown(self, row: str, task: str) -> str:
        """The value as the bench table shows it (``PER 60.00 [55.00, 65.00] ↓``; overall: the score)."""
        if task == "overall":
            ov = self.overall(row)
            return "—" if ov is None else f"overall {ov.text()}"
        r = self.record(row, task)
        if r is None:
            return "—"
        ci = (r.get("ci") or {}).get(r["metric"])
        return (f"{r['metric'].upper()} {Score(float(r['value']), *(ci if ci else (None, None))).text()}"
                + (" ↓" if lower_is_better(r["metric"]) else ""))

    def score(self, row: str, task: str) -> Score | None:
        """``task`` = a task name or ``overall``."""
        return self.overall(row) if task == "overall" else self.task_score(row, task)


def _norm(path: str) -> str:
    return "/" + "/".join(p for p in Path(path).as_posix().split("/") if p not in ("", "."))


def row_label(upstream: str, runs: list[PretrainRun], root: Path) -> tuple[str, PretrainRun | None]:
    """The run whose ``checkpoint`` directory ``upstream`` names (matched by path suffix below the
    experiment root, so relative and absolute specs both match) → its name; else the spec itself."""
    spec = _norm(upstream.split(":", 1)[1] if upstream.startswith("hf:") else upstream)
    for run in runs:
        rel = _norm(str(run.path.relative_to(root)) + "/checkpoint")
        if spec.endswith(rel):
            return run.name, run
    return (BASELINE if upstream == BASELINE else upstream), None


def find_benches(root: str | Path, runs: list[PretrainRun]) -> list[BenchTable]:
    """Every ``results.json`` under ``root`` (sorted by directory), rows labelled by run."""
    root = Path(root)
    out = []
    for p in sorted(root.rglob("results.json")):
        try:
            data = json.loads(p.read_text())
            records = data["records"]
        except (OSError, ValueError, KeyError, TypeError) as e:
            log.warning("%s: not a bench results file, left out (%s)", p, e)
            continue
        labels, by_label = {}, {}
        for u in dict.fromkeys(r["upstream"] for r in records):
            lab, run = row_label(u, runs, root)
            labels[u] = lab
            if run is not None:
                by_label[lab] = run
        out.append(BenchTable(str(p.parent.relative_to(root)), p.parent, data, labels, by_label))
    return out
