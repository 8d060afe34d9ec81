"""Figures of the experiment report (matplotlib, Agg backend, written atomically)."""

from __future__ import annotations

import math
from pathlib import Path

from audiossl.eval.summary.quality import QualityTable
from audiossl.eval.summary.runs import LOSS, MASKED_ACC, PretrainRun
from audiossl.utils.fileio import atomic_open


def _plt():
    import matplotlib  # lazy: slow import; only plots need it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # lazy: slow import; only plots need it

    return plt


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format="png", dpi=90)
    _plt().close(fig)
    return path


def learning_curves(runs: list[PretrainRun], path: Path) -> Path | None:
    """One row per family: loss and masked accuracy (where logged) vs step, one colour per run;
    train solid with crosses, valid dashed with dots. None when no run logged anything."""
    logged = lambda rs, m: any(r.curve(s, m)[0] for r in rs for s in ("train", "valid"))  # noqa: E731
    fams = {f: [r for r in runs if r.family == f] for f in dict.fromkeys(r.family for r in runs)}
    fams = {f: rs for f, rs in fams.items() if logged(rs, LOSS) or logged(rs, MASKED_ACC)}
    if not fams:
        return None
    plt = _plt()
    fig, axes = plt.subplots(len(fams), 2, figsize=(10.0, 2.9 * len(fams)), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for row, (family, rs) in zip(axes, fams.items()):
        for ax, metric in zip(row, (LOSS, MASKED_ACC)):
            if not logged(rs, metric):
                ax.axis("off")
                ax.text(0.5, 0.5, f"{family}: no {metric.lower()} logged", ha="center", va="center", fontsize=8)
                continue
            for i, run in enumerate(rs):
                c = colors[i % len(colors)]
                for split, style in (("train", "-x"), ("valid", "--o")):
                    xs, ys = run.curve(split, metric)
                    if xs:
                        ax.plot(xs, ys, style, color=c, markersize=3, label=f"{run.name} {split}")
            ax.set(xlabel="step", ylabel=metric.lower(), title=f"{family}: {metric.lower()}")
            ax.title.set_fontsize(9)
            ax.legend(fontsize=6)
    fig.tight_layout()
    return _save(fig, path)


def pnmi_bars(tables: list[QualityTable], path: Path) -> Path | None:
    """One bar per quality row (grouped by pipeline and reference); None without rows."""
    groups = [(f"{t.pipeline}: {ref}", [r for r in t.rows if r.get("reference", "") == ref])
              for t in tables for ref in dict.fromkeys(r.get("reference", "") for r in t.rows)]
    groups = [g for g in groups if g[1]]
    if not groups:
        return None
    plt = _plt()
    fig, axes = plt.subplots(1, len(groups), figsize=(3.6 * len(groups), 3.6), squeeze=False)
    for ax, (title, rows) in zip(axes[0], groups):
        names = [f"{r.get('iteration', '')}" + (f"\n{r['frame_rate']:g} Hz" if r.get("frame_rate") else "") for r in rows]
        ax.bar(range(len(rows)), [r["pnmi"] for r in rows], color="tab:blue")
        ax.set_xticks(range(len(rows)), names, fontsize=7)
        ax.set(ylabel="PNMI", title=title, ylim=(0, 1))
        ax.title.set_fontsize(8)
    fig.tight_layout()
    return _save(fig, path)


def compute_scatter(points: list[dict], baselines: list[dict], path: Path) -> Path | None:
    """Overall bench score (95 % CI whiskers) against pretraining FLOPs and wall seconds (log x).

    ``points``: ``{"label", "table", "score", "lo", "hi", "flops", "wall"}``; ``baselines``:
    ``{"table", "score", "lo", "hi"}`` drawn as horizontal lines (no pretraining compute).
    """
    pts = [p for p in points if p["score"] is not None]
    if not pts:
        return None
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    tables = list(dict.fromkeys([p["table"] for p in pts] + [b["table"] for b in baselines]))
    for ax, key, xlabel in ((axes[0], "flops", "pretraining FLOPs (incl. earlier runs of the pipeline)"),
                            (axes[1], "wall", "pretraining wall seconds (incl. earlier runs of the pipeline)")):
        for p in pts:
            x = p.get(key)
            if x is None or not x > 0 or not math.isfinite(x):
                continue
            c = colors[tables.index(p["table"]) % len(colors)]
            err = None if p["lo"] is None else [[p["score"] - p["lo"]], [p["hi"] - p["score"]]]
            ax.errorbar([x], [p["score"]], yerr=err, fmt="o", color=c, capsize=3)
            ax.annotate(p["label"], (x, p["score"]), fontsize=6, xytext=(3, 3), textcoords="offset points")
        for b in baselines:
            c = colors[tables.index(b["table"]) % len(colors)]
            ax.axhline(b["score"], color=c, linestyle=":", linewidth=1, label=f"fbank ({b['table']})")
            if b["lo"] is not None:
                ax.axhspan(b["lo"], b["hi"], color=c, alpha=0.08)
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(_plt().NullFormatter())  # minor labels overlap on short log ranges
        ax.set(xlabel=xlabel, ylabel="overall bench score")
        ax.xaxis.label.set_fontsize(8)
        for t in tables:
            ax.plot([], [], "o", color=colors[tables.index(t) % len(colors)], label=t)
        ax.legend(fontsize=6)
    fig.suptitle("learning per unit of compute (whiskers: 95 % CI)", fontsize=9)
    fig.tight_layout()
    return _save(fig, path)
