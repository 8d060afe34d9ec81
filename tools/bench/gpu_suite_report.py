#!/usr/bin/env python
"""Merge the step outputs of ``tools/bench/gpu_suite.sh`` into ``gpu_suite.json`` and a short table."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

STEPS = ("gpu_tests", "hubert_base", "hubert_vs_ta", "beats_base", "mert_95m", "extract_bf16", "kmeans_stream")


def _load(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _pct(v) -> str:
    return "n/a" if v is None else f"{100 * v:.1f} %"


def _gib(v) -> str:
    return "n/a" if v is None else f"{v:.1f} GiB"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("out", type=Path)
    ap.add_argument("--dry-run", default="0")
    args = ap.parse_args()
    out = args.out
    suite: dict = {"dry_run": args.dry_run == "1", "steps": {}}
    for name in STEPS:
        status = (out / f"{name}.status").read_text().split() if (out / f"{name}.status").is_file() else ["-1", "0"]
        rc, wall = int(status[0]), int(status[1])
        log = (out / f"{name}.log").read_text(errors="replace") if (out / f"{name}.log").is_file() else ""
        step = {"rc": rc, "timed_out": rc in (124, 137), "wall_s": wall, "result": _load(out / f"{name}.json")}
        if name == "gpu_tests":
            m = re.findall(r"(\d+) (passed|failed|skipped|error)", log)
            step["result"] = {k: int(v) for v, k in m}
        if name == "hubert_vs_ta":
            rows = re.findall(r"^(audiossl|torchaudio)\s+([\d.]+)\s+([\d.]+)\s+(\S+(?: %)?)\s+(\S+(?: GiB)?)$", log, re.M)
            ratio = re.search(r"ratio audiossl / torchaudio: ([\d.]+)x", log)
            step["result"] = {r[0]: {"s_per_step": float(r[1]), "audio_s_per_s": float(r[2]), "mfu": r[3], "peak_mem": r[4]} for r in rows}
            step["result"]["ratio"] = float(ratio.group(1)) if ratio else None
        suite["steps"][name] = step
    (out / "gpu_suite.json").write_text(json.dumps(suite, indent=1))
    lines = [f"{'step':<14} {'rc':>4} {'wall s':>7}  result"]
    for name, st in suite["steps"].items():
        r = st["result"]
        if name in ("hubert_base", "beats_base", "mert_95m") and r:
            txt = "; ".join(
                f"{m}: {v['audio_s_per_s']:.0f} audio-s/s, MFU {_pct(v['mfu'])}, "
                f"pad {100 * v['padding_eff']:.0f} %, mem {_gib(v['peak_mem_gib'])}"
                for m, v in r["modes"].items()
            )
        elif name == "hubert_vs_ta" and r:
            txt = f"ratio {r.get('ratio')}x vs torchaudio"
        else:
            txt = json.dumps(r)[:100] if r else "-"
        lines.append(f"{name:<14} {st['rc']:>4} {st['wall_s']:>7}  {txt}")
    (out / "gpu_suite.txt").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
