"""Finished (upstream, task) pairs taken from another bench output (``audiossl bench --reuse DIR``).

Two tables that share rows (the FBANK baseline, or one upstream in a speech table and a music table)
need not train the same heads twice. A pair is taken from ``DIR/runs/<upstream>/<task>/`` only when
its ``settings`` — the split files, the upstream's files (names, sizes, modification times), the
task's spec, and every bench option that changes a number — equal this run's; it is then copied
(result, head, per-item statistics) so this output stays self-contained. Records written before
``settings`` existed are never reused.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import asdict
from pathlib import Path

log = logging.getLogger(__name__)


def upstream_fingerprint(spec: str) -> list:
    """``[[relative name, size, mtime_ns], ...]`` of the files behind an upstream spec (``[]`` for a
    built-in such as ``fbank``); a retrained checkpoint at the same path gets another fingerprint."""
    path = Path(spec.split(":", 1)[1] if ":" in spec and not Path(spec).exists() else spec)
    if not path.exists():
        return []
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return [[str(f.relative_to(path)) if f != path else f.name, f.stat().st_size, f.stat().st_mtime_ns] for f in files]


def pair_settings(upstream: str, td, layer: int | None, cfg, amp: str, lm: str | None) -> dict:
    """Everything that decides a pair's numbers, as JSON values (compared for equality)."""
    return {
        "upstream": upstream_fingerprint(upstream),
        "splits": {role: str(Path(p).resolve()) for role, p in sorted(td.splits.items())},
        "trials": str(Path(td.trials).resolve()) if td.trials else None,
        "spec": json.loads(json.dumps(asdict(td.spec), default=str)),
        "layer": layer, "seed": cfg.seed, "amp": amp, "head_seeds": cfg.head_seeds, "bootstrap": cfg.bootstrap,
        "lr_grid": list(cfg.lr_grid) if cfg.lr_grid else None, "lm": cfg.lm, "decodes_with_lm": lm is not None,
        "lexicon": cfg.lexicon,
        "lm_weight": cfg.lm_weight, "word_score": cfg.word_score, "beam_size": cfg.beam_size,
    }


def reuse_pair(sources: list[str | Path], rel_dir: Path, run_dir: Path, settings: dict) -> dict | None:
    """Copy the first finished pair under ``SOURCE/rel_dir`` whose settings equal ``settings`` into
    ``run_dir`` and return its record; None when no source has one."""
    for src_root in sources:
        src = Path(src_root) / rel_dir
        try:
            rec = json.loads((src / "result.json").read_text())
        except (OSError, ValueError):
            continue
        if rec.get("settings") != settings:
            continue
        tmp = run_dir.with_name(run_dir.name + ".reuse.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        # result.json last: its presence marks the pair done
        shutil.copytree(src, tmp, ignore=shutil.ignore_patterns("result.json", "*.tmp"))
        shutil.copy2(src / "result.json", tmp / "result.json")
        shutil.rmtree(run_dir, ignore_errors=True)
        tmp.rename(run_dir)
        log.info("%s: reused from %s (same settings)", rel_dir, src)
        return rec
    return None
