"""Bench reports: ``results.json``, ``results.csv``, ``results.md`` (one table) and PNG plots.

Table rows are upstreams, columns are tasks plus the **overall score**: the mean over the table's
tasks of each task's metric with error rates (PER, WER, EER) turned into ``100 − x`` (as in the
WavLM paper), so higher is always better. A row missing a task gets no overall score ("—").

Every value carries a 95 % confidence interval (percentile bootstrap over the test items, see
:mod:`audiossl.eval.confidence`); ▲/▼ mark rows significantly better/worse than the FBANK row
(paired bootstrap on the same items). Figures beside ``results.md``: ``results_bars.png`` (bars
with CI whiskers) and ``layer_weights_<upstream>.png`` (tasks × layers heatmaps).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from audiossl.eval.confidence import load_items, align, bootstrap, paired_test, percentile_ci, task_seed
from audiossl.eval.names import slug
from audiossl.eval.plots import layer_weight_heatmap, score_bars
from audiossl.eval.tasks import METRICS

CI_METHOD = ("95% percentile bootstrap over test items (fixed seed per task); overall: joint resampling of every "
             "task; significance: paired bootstrap against the fbank row on the common test items")
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


EXTRA_COLUMNS = ("wer_lm",)
"""test metrics shown as their own column beside the task's main one when present (ASR with the LM)"""
BASELINE = "fbank"


def lower_is_better(metric: str) -> bool:
    base = metric[: -len("_lm")] if metric.endswith("_lm") else metric
    return METRICS[base][1] if base in METRICS else base in ("cer", "min_dcf")


def columns(records: list[dict]) -> list[tuple[str, str]]:
    """The table's ``(task, metric)`` columns: each task's metric, then its :data:`EXTRA_COLUMNS` present."""
    _, tasks, _ = _table(records)
    out = []
    for t in tasks:
        recs = [r for r in records if r["task"] == t]
        out.append((t, recs[0]["metric"]))
        out += [(t, m) for m in EXTRA_COLUMNS if any(m in r.get("test", {}) for r in recs)]
    return out


def _value(r: dict, metric: str) -> float | None:
    return r["value"] if metric == r["metric"] else r.get("test", {}).get(metric)


def _ci(r: dict, metric: str) -> list[float] | None:
    return (r.get("ci") or {}).get(metric)


def _load_items(r: dict, out: Path | None):
    if out is None or not r.get("items"):
        return None
    p = Path(out) / r["items"]
    return load_items(p) if p.is_file() else None


def _seeds_note(records: list[dict]) -> str:
    """How head seeds enter the intervals (the footnote's last clause; unchanged text with one seed)."""
    n = sorted({r.get("head_seeds", 1) for r in records})
    if n == [1]:
        return "Head-training seeds are not resampled."
    return (f"Rows with N = {'/'.join(map(str, n))} head seeds (seeds --seed .. --seed+N−1, lr chosen on their mean "
            "dev metric): the value is the mean over the N heads, and the interval a two-way bootstrap over test "
            "items × head seeds (each resample draws the items, and independently N of the N seeds, with "
            "replacement, and averages the drawn seeds' metrics on the drawn items), so it covers head-seed "
            "variance too; the paired tests resample the same way.")


def analyse(records: list[dict], out: Path | None, n: int = 1000, seed: int = 0) -> dict:
    """Overall-score CIs and paired-bootstrap tests against the :data:`BASELINE` row.

    Per task, every row is resampled with the **same** resample indices over the test items common
    to all rows (percentile bootstrap, ``n`` resamples, seed fixed per task), so (a) a row's overall
    score on each resample is the mean of its task scores on that joint resample, giving the
    overall 95 % CI, and (b) a row minus the baseline on each resample gives the paired difference,
    significant when its 95 % interval excludes 0 (paired bootstrap, Koehn 2004). Rows without
    per-item statistics (results from before the CI code) get neither.
    """
    import numpy as np  # lazy: keeps torch/numpy out of startup (`prepare`, `validate`, `--help` start fast)

    ups, tasks, cell = _table(records)
    res = {"overall_ci": {u: None for u in ups}, "significance": []}
    if n <= 0:
        return res
    items = {k: _load_items(r, out) for k, r in cell.items()}
    samples: dict[tuple[str, str, str], np.ndarray] = {}
    n_common: dict[str, int] = {}
    points: dict[tuple[str, str, str], float] = {}
    for t in tasks:
        rows = [u for u in ups if items.get((u, t)) is not None]
        if not rows:
            continue
        common = items[rows[0], t]
        for u in rows[1:]:
            common, _ = align(common, items[u, t])
        if len(common) == 0:
            continue
        n_common[t] = len(common)
        for u in rows:
            it, _ = align(items[u, t], common)
            for tt, m in columns(records):
                if tt == t and m in it.metrics:
                    samples[u, t, m] = bootstrap(it, m, n, task_seed(t, seed))
                    points[u, t, m] = it.value(m)
    for u in ups:
        if all((u, t, cell[u, t]["metric"]) in samples for t in tasks if (u, t) in cell) and all((u, t) in cell for t in tasks):
            ov = np.mean([task_score(cell[u, t]["metric"], samples[u, t, cell[u, t]["metric"]]) for t in tasks], axis=0)
            samples[u, "overall", "score"] = ov
            ci = percentile_ci(ov)
            res["overall_ci"][u] = None if ci is None else [ci[0], ci[1]]
    if BASELINE in ups:
        keys = [(t, m) for t, m in columns(records)] + [("overall", "score")]
        for u in ups:
            if u == BASELINE:
                continue
            for t, m in keys:
                if (u, t, m) not in samples or (BASELINE, t, m) not in samples:
                    continue
                pa = points.get((u, t, m), float(np.nanmean(samples[u, t, m])))
                pb = points.get((BASELINE, t, m), float(np.nanmean(samples[BASELINE, t, m])))
                if t == "overall":
                    pa, pb = overall_score([cell[u, x] for x in tasks], tasks), overall_score([cell[BASELINE, x] for x in tasks], tasks)
                pt = paired_test(samples[u, t, m], samples[BASELINE, t, m], pa, pb)
                better = (pt.diff < 0) if (t != "overall" and lower_is_better(m)) else (pt.diff > 0)
                res["significance"].append({"upstream": u, "task": t, "metric": m, "baseline": BASELINE,
                                            "diff": pt.diff, "diff_ci": None if pt.ci is None else list(pt.ci),
                                            "p": pt.p, "significant": pt.significant, "better": bool(better),
                                            "n_items": n_common.get(t, min(n_common.values()))})
    return res


def _mark(sig: dict | None) -> str:
    if not sig or not sig["significant"]:
        return ""
    return " ▲" if sig["better"] else " ▼"


def _fmt(v: float, ci: list[float] | None) -> str:
    return f"{v:.2f}" if ci is None else f"{v:.2f} [{ci[0]:.2f}, {ci[1]:.2f}]"


def markdown(records: list[dict], analysis: dict | None = None, figures: list[str] | None = None) -> str:
    ups, tasks, cell = _table(records)
    analysis = analysis or {"overall_ci": {}, "significance": []}
    sig = {(s["upstream"], s["task"], s["metric"]): s for s in analysis["significance"]}
    cols = columns(records)

    def title(t, m):
        name = t if m == cell_metric[t] else f"{t}+LM" if m.endswith("_lm") else f"{t} {m}"
        return f"{name} ({m.removesuffix('_lm').upper()}{' ↓' if lower_is_better(m) else ' ↑'})"

    cell_metric = {r["task"]: r["metric"] for r in records}
    head = ["upstream"] + [title(t, m) for t, m in cols] + ["overall ↑"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for u in ups:
        row = [u]
        for t, m in cols:
            v = _value(cell[u, t], m) if (u, t) in cell else None
            row.append("—" if v is None else _fmt(v, _ci(cell[u, t], m)) + _mark(sig.get((u, t, m))))
        ov = overall_score([cell[u, t] for t in tasks if (u, t) in cell], tasks)
        oci = analysis["overall_ci"].get(u)
        row.append("—" if ov is None else f"**{ov:.2f}**" + ("" if oci is None else f" [{oci[0]:.2f}, {oci[1]:.2f}]")
                   + _mark(sig.get((u, "overall", "score"))))
        lines.append("| " + " | ".join(row) + " |")
    lm = next((r.get("lm") for r in records if r.get("lm")), None)
    notes = [
        "",
        "Overall = mean over tasks, error rates (PER, WER, EER, DER) as 100 − x. ASR: the `asr` column is greedy CTC "
        "decoding (no LM); `asr+LM` is a lexicon-constrained beam search with the word n-gram LM "
        + (f"`{lm}`" if lm else "(none)") + " (torchaudio `ctc_decoder`, KenLM); WER/CER by jiwer.",
        "",
        "[a, b] = 95 % confidence interval: percentile bootstrap over test items (1000 resamples, fixed seed; "
        "utterances for WER/PER/CER, which recompute corpus-level error rates; trials for EER; clips for "
        "AUC/AP and beat F; conversations for DER, recomputed from their seconds; queries for QbE MAP). The overall interval resamples every task jointly. "
        + _seeds_note(records) + " "
        f"▲/▼ = significantly better/worse than the `{BASELINE}` row (paired bootstrap on the same test items, "
        "95 % interval of the difference excludes 0).",
        "",
        "Learning rate chosen on dev: " + ", ".join(f"{r['upstream']}/{r['task']}={r['lr']}" for r in records) + ".",
    ]
    if figures:
        notes += ["", "Figures: " + " · ".join(f"[{Path(f).stem}]({f})" for f in figures), ""]
        notes += [f"![{Path(f).stem}]({f})" for f in figures]
    return "\n".join(lines + notes) + "\n"


def write_csv(records: list[dict], path: Path, analysis: dict | None = None) -> None:
    buf = io.StringIO()
    w = csv.writer(buf)
    extra = [m for m in EXTRA_COLUMNS if any(m in r.get("test", {}) for r in records)]
    sig = {(s["upstream"], s["task"], s["metric"]): s for s in (analysis or {}).get("significance", [])}

    def f4(x):
        return "" if x is None else f"{x:.4f}"

    def vs(u, t, m):
        s = sig.get((u, t, m))
        return "" if s is None else ("better" if s["better"] else "worse") if s["significant"] else "same"

    w.writerow(["upstream", "task", "metric", "value", "score", "dev", "lr", "layer", "epochs", "skipped_files",
                "ci_low", "ci_high", f"vs_{BASELINE}"] + [c for m in extra for c in (m, f"{m}_ci_low", f"{m}_ci_high")])
    for r in records:
        ci = _ci(r, r["metric"]) or [None, None]
        row = [r["upstream"], r["task"], r["metric"], f"{r['value']:.4f}", f"{task_score(r['metric'], r['value']):.4f}",
               f"{r['dev']:.4f}", r["lr"], "" if r["layer"] is None else r["layer"], r["epochs"], r["skipped_files"],
               f4(ci[0]), f4(ci[1]), vs(r["upstream"], r["task"], r["metric"])]
        for m in extra:
            eci = _ci(r, m) or [None, None]
            row += [f4(_value(r, m)), f4(eci[0]), f4(eci[1])]
        w.writerow(row)
    atomic_write_text(path, buf.getvalue())


def plot(records: list[dict], out: Path) -> list[Path]:
    """``layer_weights_<task>.png`` (one line per upstream) and ``curve_<task>.png`` (dev metric / epoch)."""
    import matplotlib  # lazy: slow import; only plots need it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # lazy: slow import; only plots need it

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


def figures(records: list[dict], analysis: dict, out: Path) -> list[str]:
    """``results_bars.png`` (every column with CI whiskers, and the overall score) and
    ``layer_weights_<upstream>.png`` (tasks × layers heatmap, upstreams with more than one layer),
    written beside results.md; returns their names."""
    ups, tasks, cell = _table(records)
    cols = []
    for t, m in columns(records):
        cols.append({"title": f"{t} {m.removesuffix('_lm').upper()}{' + LM' if m.endswith('_lm') else ''}", "lower_better": lower_is_better(m),
                     "values": {u: _value(cell[u, t], m) for u in ups if (u, t) in cell and _value(cell[u, t], m) is not None},
                     "ci": {u: _ci(cell[u, t], m) for u in ups if (u, t) in cell}})
    ov = {u: overall_score([cell[u, t] for t in tasks if (u, t) in cell], tasks) for u in ups}
    cols.append({"title": "overall score", "values": {u: v for u, v in ov.items() if v is not None},
                 "ci": dict(analysis.get("overall_ci", {}))})
    names = [score_bars(cols, ups, out / "results_bars.png").name]
    for u in ups:
        w = {t: cell[u, t]["layer_weights"] for t in tasks if (u, t) in cell and len(cell[u, t].get("layer_weights", [])) > 1}
        if w:
            names.append(layer_weight_heatmap(w, f"{u}: learned layer weights (softmax)",
                                              out / f"layer_weights_{slug(u)}.png").name)
    return names


def write_reports(records: list[dict], out: str | Path, bootstrap: int = 1000, seed: int = 0) -> None:
    out = Path(out)
    ups, tasks, _ = _table(records)
    by_up = {u: overall_score([r for r in records if r["upstream"] == u], tasks) for u in ups}
    an = analyse(records, out, bootstrap, seed)
    seeded = any(r.get("head_seeds", 1) > 1 for r in records)
    atomic_write_json(out / "results.json", {"records": records, "overall": by_up, "tasks": tasks,
                                             "overall_ci": an["overall_ci"], "significance": an["significance"],
                                             "ci_method": CI_METHOD + ("; rows with head_seeds > 1: two-way bootstrap "
                                                                       "over test items x head seeds" if seeded else "")})
    write_csv(records, out / "results.csv", an)
    figs = figures(records, an, out)
    atomic_write_text(out / "results.md", markdown(records, an, figs))
    plot(records, out / "plots")
