"""One-page markdown report of an experiment directory (e.g. the demo's ``demo_out``).

  audiossl report demo_out                      writes demo_out/report.md + demo_out/report_figures/*.png
  audiossl report demo_out --out /tmp/r.md      elsewhere (figures beside it, in r_figures/)

Sections: stage times (``**/stage_times.tsv``), pretraining loss / masked accuracy vs steps
(``**/run_config.json`` runs with ``metrics/{train,valid}.jsonl``), label PNMI (``*/quality.json``),
bench tables with 95 % CIs, significance and layer weights (``**/results.json``), bench score
against pretraining FLOPs and wall time, and the demo's claims (met / not met / not significant
by whether the CIs separate). A section without inputs says "not run".
"""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "one-page markdown report (curves, PNMI, bench CIs, compute, claims) of an experiment directory"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("root", type=Path, metavar="DEMO_OUT", help="experiment directory (egs/demo/run.sh --out)")
    p.add_argument("--out", type=Path, default=None, help="report file (default DEMO_OUT/report.md); figures go to "
                                                         "<out stem>_figures/ beside it")


def run(args: argparse.Namespace) -> int:
    import sys

    from audiossl.eval.summary import write_summary

    try:
        path = write_summary(args.root, args.out)
    except FileNotFoundError as e:
        print(f"audiossl report: {e}", file=sys.stderr)
        return 1
    print(f"report: {path}")
    return 0
