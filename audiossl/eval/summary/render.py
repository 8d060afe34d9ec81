"""``report.md`` of an experiment directory: stage times, pretraining curves, label PNMI, bench
tables with their CIs and layer weights, learning per unit of compute, and the demo's claims.

Reads files only (see the sibling modules for each input); a section whose inputs are missing
says "not run" and the rest still renders.
"""

from __future__ import annotations

import logging
import os
from datetime import datetime, timezone
from pathlib import Path

from audiossl.eval.names import slug
from audiossl.eval.report import BASELINE, figures, markdown
from audiossl.eval.summary import figures as F, claims as C
from audiossl.eval.summary.bench import BenchTable, Score, find_benches
from audiossl.eval.summary.claims import demo_claims, evaluate
from audiossl.eval.summary.quality import QualityTable, find_quality
from audiossl.eval.summary.runs import LOSS, MASKED_ACC, PretrainRun, find_runs, pipeline_totals
from audiossl.eval.summary.stages import find_stage_times
from audiossl.utils.fileio import atomic_write_text

log = logging.getLogger(__name__)
NOT_RUN = "_not run_ (no inputs found under the experiment directory)"


def _rel(path: Path, base: Path) -> str:
    return Path(os.path.relpath(path, base)).as_posix()


def _num(x: float | None, fmt: str = ".3f") -> str:
    return "—" if x is None else format(x, fmt)


def _sci(x: float | None) -> str:
    return "—" if x is None else f"{x:.3g}"


def _table(head: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)] + ["| " + " | ".join(r) + " |" for r in rows]


def stages_section(root: Path) -> list[str]:
    times = find_stage_times(root)
    out = ["## Stage times", ""]
    if not times:
        return out + [NOT_RUN, ""]
    rows = [[s.recipe, str(s.stage), s.description, datetime.fromtimestamp(s.start, timezone.utc).strftime("%H:%M:%S"),
             f"{s.seconds:.0f}"] for s in times]
    return out + ["Start in UTC; a top-level stage that runs a nested recipe includes that recipe's stages.", ""] + \
        _table(["recipe", "stage", "description", "start", "seconds"], rows) + [""]


def _last(run: PretrainRun, split: str, metric: str) -> float | None:
    _, ys = run.curve(split, metric)
    return ys[-1] if ys else None


def curves_section(runs: list[PretrainRun], root: Path, figdir: Path, base: Path) -> list[str]:
    out = ["## Pretraining: loss and masked accuracy vs steps", ""]
    if not runs:
        return out + [NOT_RUN, ""]
    rows = [[r.name, r.family, _num(r.steps, "d") if r.steps is not None else "—", _num(_last(r, "train", LOSS)),
             _num(_last(r, "valid", LOSS)), _num(_last(r, "train", MASKED_ACC)), _num(_last(r, "valid", MASKED_ACC))]
            for r in runs]
    out += ["Last logged values (masked accuracy as a fraction; — = not logged by the family or no line yet).", ""]
    out += _table(["run", "family", "steps", "train loss", "valid loss", "train masked acc", "valid masked acc"], rows) + [""]
    p = F.learning_curves(runs, figdir / "curves.png")
    if p is not None:
        out += [f"![learning curves per family]({_rel(p, base)})", ""]
    return out


def quality_section(tables: list[QualityTable], figdir: Path, base: Path) -> list[str]:
    out = ["## Label quality (PNMI against reference labels)", ""]
    if not tables:
        return out + [NOT_RUN, ""]
    for t in tables:
        out += [f"### {t.pipeline}", ""]
        if t.text is not None:
            out += [t.text.strip(), ""]
            continue
        rows = [[str(r.get("name", "")), str(r.get("iteration", "")), str(r.get("reference", "")),
                 "—" if r.get("frame_rate") is None else f"{r['frame_rate']:g} Hz", f"{r['pnmi']:.3f}",
                 _num(r.get("pnmi_best")), _num(r.get("phone_purity")), _num(r.get("codebook_usage"))] for r in t.rows]
        out += _table(["labels", "targets of", "reference", "frame rate", "PNMI", "best band", "purity", "usage"], rows) + [""]
    p = F.pnmi_bars(tables, figdir / "pnmi.png")
    if p is not None:
        out += [f"![PNMI]({_rel(p, base)})", ""]
    return out


def _bench_figures(t: BenchTable, figdir: Path) -> list[Path]:
    """The bench's own bars / heatmaps beside results.md; drawn into ``figdir`` when missing."""
    ups = list(t.labels)
    have = [t.path / "results_bars.png"] + [t.path / f"layer_weights_{slug(u)}.png" for u in ups]
    if (t.path / "results_bars.png").is_file():
        return [p for p in have if p.is_file()]

    d = figdir / t.name.replace("/", "_")
    d.mkdir(parents=True, exist_ok=True)
    return [d / n for n in figures(t.data["records"], t.data, d)]


def _bench_markdown_table(t: BenchTable) -> list[str]:
    """results.md's table with rows named by run."""
    md = t.path / "results.md"
    if md.is_file():
        text = md.read_text()
    else:
        text = markdown(t.data["records"], t.data)
    lines = []
    for line in text.splitlines():
        if line.startswith("|"):
            lines.append(line)
        elif lines:
            break
    for i, line in enumerate(lines):
        cells = line.split("|")
        if len(cells) > 2 and cells[1].strip() in t.labels:
            cells[1] = f" {t.labels[cells[1].strip()]} "
            lines[i] = "|".join(cells)
    return lines


def bench_section(tables: list[BenchTable], figdir: Path, base: Path) -> list[str]:
    out = ["## Bench results (95 % CIs)", ""]
    if not tables:
        return out + [NOT_RUN, ""]
    for t in tables:
        out += [f"### {t.name}", "", f"Rows: {', '.join(t.rows)}. Source: `{_rel(t.path / 'results.json', base)}`.", ""]
        out += _bench_markdown_table(t) + [""]
        sig = t.data.get("significance") or []
        yes = [s for s in sig if s.get("significant")]
        if sig:
            out += [f"Paired bootstrap against `{BASELINE}` (same test items): {len(yes)} of {len(sig)} differences significant."]
            out += [f"- {t.labels.get(s['upstream'], s['upstream'])} {'better' if s['better'] else 'worse'} than {BASELINE} on "
                    f"{s['task']} ({s['metric']}): difference {s['diff']:+.2f}"
                    + ("" if not s.get("diff_ci") else f" [{s['diff_ci'][0]:+.2f}, {s['diff_ci'][1]:+.2f}]") for s in yes]
            out += [""]
        figs = _bench_figures(t, figdir)
        out += [f"![{p.stem}]({_rel(p, base)})" for p in figs] + [""]
    return out


def _delta(ov: Score | None, base: Score | None, sig: dict | None, pflops_of: float | None) -> str:
    if ov is None or base is None:
        return "—"
    d = ov.value - base.value
    mark = "" if not sig or not sig.get("significant") else " ▲" if sig.get("better") else " ▼"
    per = "" if not pflops_of else f" ({d / (pflops_of / 1e15):+.3g})"
    return f"{d:+.2f}{mark}{per}"


def compute_section(runs: list[PretrainRun], tables: list[BenchTable], figdir: Path, base: Path) -> list[str]:
    out = ["## Learning per unit of compute", ""]
    points, baselines, rows = [], [], []
    for t in tables:
        base_ov = t.overall(BASELINE) if BASELINE in t.rows else None
        sig = {s["upstream"]: s for s in t.data.get("significance") or [] if s.get("task") == "overall"}
        for lab in t.rows:
            ov = t.overall(lab)
            run = t.runs.get(lab)
            if run is None:
                if lab == BASELINE and ov is not None:
                    baselines.append({"table": t.name, "score": ov.value, "lo": ov.lo, "hi": ov.hi})
                continue
            pf, pw = pipeline_totals(run, runs)
            audio = None if run.audio_seconds is None else f"{run.audio_seconds:.0f}" + ("" if run.audio_exact else " ≈")
            rows.append([t.name, lab, run.family, "—" if ov is None else ov.text(), _num(run.steps, "d") if run.steps else "—",
                         audio or "—", _sci(run.flops_per_audio_second), _sci(run.train_flops), _sci(pf),
                         _num(run.wall_seconds, ".0f"), _num(pw, ".0f"), _delta(ov, base_ov, sig.get(t.upstream(lab)), pf)])
            points.append({"label": lab, "table": t.name, "score": None if ov is None else ov.value,
                           "lo": None if ov is None else ov.lo, "hi": None if ov is None else ov.hi, "flops": pf, "wall": pw})
    if not rows:
        return out + [NOT_RUN + " — needs bench tables whose rows are pretraining runs of this directory", ""]
    out += ["Training FLOPs are analytic: the family's `train_flops_per_second(cfg, crop)` × the audio-seconds the "
            "run's train log says it saw (≈: estimated from audio s/s × window time, for logs without `Audio Seconds`). "
            "Wall seconds are the trainer's wall clock (CPU-seconds on a CPU run). *Pipeline* adds every earlier run of the "
            "same pipeline directory (previous iterations, tokenizers) that ended before this one began. The overall "
            "score is per table (each table has its own tasks).", ""]
    out += _table(["table", "row", "family", "overall [95 % CI]", "steps", "audio s", "FLOPs / audio s", "run FLOPs",
                   "pipeline FLOPs", "run wall s", "pipeline wall s", f"Δ overall vs {BASELINE} (per pipeline PFLOP)"],
                  rows) + [""]
    out += [f"▲/▼: the difference to `{BASELINE}` is significant (paired bootstrap in the bench's results.json).", ""]
    p = F.compute_scatter(points, baselines, figdir / "compute.png")
    if p is not None:
        out += [f"![learning per unit of compute]({_rel(p, base)})", ""]
    return out


def claims_section(tables: list[BenchTable]) -> list[str]:
    out = ["## Claims (issue #20)", "", "Decided only by whether the 95 % confidence intervals separate (" +
           "`>`: met when A's interval lies above B's, not met when below, else not significant; `≥`: not met only when "
           "A's interval lies below B's).", ""]
    for res in evaluate(demo_claims(), tables):
        out += [f"### ({res.claim.key}) {res.claim.text}: **{res.outcome}**", ""]
        if res.outcome == C.NOT_RUN:
            out += ["No bench table holds these rows and tasks.", ""]
            continue
        rows = []
        for c in res.checks:
            cmp = c.comparison
            op = "≥" if cmp.op == ">=" else ">"
            rows.append([f"{c.rows[0] if c.rows else cmp.a.text()} {op} {c.rows[1] if c.rows else cmp.b.text()}", c.task,
                         *(c.shown or ("—", "—")), c.table or "—", c.outcome])
        out += _table(["comparison", "task", "A", "B", "table", "outcome"], rows) + [""]
        if any(c.outcome == C.NO_CI for c in res.checks):
            out += ["no CI: a row has no interval (results from before the bootstrap, or `--bootstrap 0`).", ""]
    return out


def write_summary(root: str | Path, out: str | Path | None = None) -> Path:
    """Write ``out`` (default ``root/report.md``) and its figures in ``<out stem>_figures/``; returns ``out``."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such experiment directory (run egs/demo/run.sh --out {root} first)")
    out = Path(out) if out is not None else root / "report.md"
    base = out.parent
    figdir = base / f"{out.stem}_figures"
    runs = find_runs(root)
    tables = find_benches(root, runs)
    lines = [f"# Experiment report: {root}", "",
             f"Generated {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')} by `audiossl report` from the files "
             f"under `{root}`: {len(runs)} pretraining run(s) ({', '.join(sorted({r.family for r in runs})) or 'none'}), "
             f"{len(tables)} bench table(s).", ""]
    lines += stages_section(root)
    lines += curves_section(runs, root, figdir, base)
    lines += quality_section(find_quality(root), figdir, base)
    lines += bench_section(tables, figdir, base)
    lines += compute_section(runs, tables, figdir, base)
    lines += claims_section(tables)
    atomic_write_text(out, "\n".join(lines).rstrip() + "\n")
    return out
