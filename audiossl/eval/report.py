"""Bench reports: ``results.json``, ``results.csv``, ``results.md`` (one table) and PNG plots.

Table rows are upstreams, columns are tasks plus the **overall score**: the mean over the table's
tasks of each task's metric with error rates (PER, WER, EER) turned into ``100 − x`` (as in the
WavLM paper), so higher is always better. A row missing a task gets no overall score ("—").
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from audiossl.eval.tasks import METRICS
from audiossl.utils.fileio import atomic_open, atomic_write_json, atomic_write_text


def task_score(metric: str, value: float) -> float:
    """A task's contribution to the overall score (higher = better)."""
    return 100.0 - value if METRICS[metric][1] else value


def overall_score(records: list[dict], tasks: list[str]) -> float | None:
    """Mean :func:`task_score` over ``tasks`` for one upstream's ``records``; None if any is missing."""
    by_task = {r["task"]: r for r in records}
    if not tasks or any(t not in by_task for t in tasks):
        return None
    return sum(task_score(by_task[t]["metric"], by_task[t]["value"]) for t in tasks) / len(tasks)


def _table(records: list[dict]) -> tuple[list[str], list[str], dict]:
    ups = list(dict.fromkeys(r["upstream"] for r in records))
    tasks = list(dict.fromkeys(r["task"] for r in records))
    cell = {(r["upstream"], r["task"]): r for r in records}
    return ups, tasks, cell


def markdown(records: list[dict]) -> str:
    ups, tasks, cell = _table(records)
    metric = {r["task"]: r["metric"] for r in records}
    head = ["upstream"] + [f"{t} ({metric[t].upper()}{' ↓' if METRICS[metric[t]][1] else ' ↑'})" for t in tasks] + ["overall ↑"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for u in ups:
        row = [u] + [f"{cell[u, t]['value']:.2f}" if (u, t) in cell else "—" for t in tasks]
        ov = overall_score([cell[u, t] for t in tasks if (u, t) in cell], tasks)
        row.append("—" if ov is None else f"**{ov:.2f}**")
        lines.append("| " + " | ".join(row) + " |")
    notes = [
        "",
        "Overall = mean over tasks, error rates (PER, WER, EER) as 100 − x. ASR uses greedy CTC decoding (no LM).",
        "",
        "Learning rate chosen on dev: " + ", ".join(f"{r['upstream']}/{r['task']}={r['lr']}" for r in records) + ".",
    ]
    return "\n".join(lines + notes) + "\n"


def write_csv(records: list[dict], path: Path) -> None:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["upstream", "task", "metric", "value", "score", "dev", "lr", "layer", "epochs", "skipped_files"])
    for r in records:
        w.writerow([r["upstream"], r["task"], r["metric"], f"{r['value']:.4f}", f"{task_score(r['metric'], r['value']):.4f}",
                    f"{r['dev']:.4f}", r["lr"], "" if r["layer"] is None else r["layer"], r["epochs"], r["skipped_files"]])
    atomic_write_text(path, buf.getvalue())


def plot(records: list[dict], out: Path) -> list[Path]:
    """``layer_weights_<task>.png`` (one line per upstream) and ``curve_<task>.png`` (dev metric / epoch)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    paths = []
    ups, tasks, cell = _table(records)
    for t in tasks:
        for kind in ("layer_weights", "curve"):
            fig, ax = plt.subplots(figsize=(6, 3.5))
            for u in ups:
                r = cell.get((u, t))
                if r is None:
                    continue
                if kind == "layer_weights":
                    ax.plot(range(len(r["layer_weights"])), r["layer_weights"], marker="o", label=u)
                else:
                    ax.plot([c["epoch"] for c in r["curve"]], [c["dev"] for c in r["curve"]], label=u)
            if kind == "layer_weights":
                ax.set(xlabel="layer", ylabel="softmax weight", title=f"{t}: learned layer weights")
            else:
                metric = "acc" if t == "asv" else next(r["metric"] for r in records if r["task"] == t)
                ax.set(xlabel="epoch", ylabel=f"dev {metric}", title=f"{t}: learning curve (dev)")
            ax.legend(fontsize=7)
            fig.tight_layout()
            p = out / f"{kind}_{t}.png"
            with atomic_open(p, "wb") as f:
                fig.savefig(f, format="png", dpi=100)
            plt.close(fig)
            paths.append(p)
    return paths


def write_reports(records: list[dict], out: str | Path) -> None:
    out = Path(out)
    ups, tasks, _ = _table(records)
    by_up = {u: overall_score([r for r in records if r["upstream"] == u], tasks) for u in ups}
    atomic_write_json(out / "results.json", {"records": records, "overall": by_up, "tasks": tasks})
    write_csv(records, out / "results.csv")
    atomic_write_text(out / "results.md", markdown(records))
    plot(records, out / "plots")
