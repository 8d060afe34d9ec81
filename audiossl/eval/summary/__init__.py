"""One-page report of an experiment directory (``audiossl report DEMO_OUT``): stage times,
pretraining curves, label PNMI, bench tables with CIs and layer weights, learning per unit of
compute, and the demo's claims. Reads files only; :func:`write_summary` is the entry point."""

from audiossl.eval.summary.render import write_summary

__all__ = ["write_summary"]
