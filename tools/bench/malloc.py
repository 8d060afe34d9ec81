#!/usr/bin/env python
"""glibc malloc tuning (``audiossl.utils.malloc.tune_malloc``) against glibc's defaults, one run.

Times the same CPU training step in two fresh processes — one with the thresholds ``audiossl``
sets at start-up, one with glibc's defaults (``AUDIOSSL_MALLOC_TUNING=0``) — and prints ms/step,
audio-s/s and the ratio. The step: HuBERT-tiny (recipes/hubert/tiny.yaml's overrides) on a batch
of ``--batch`` random crops of ``--seconds`` s, forward + masked CE + backward + AdamW.

    python tools/bench/malloc.py                      # 12 crops of 2 s (the tiny recipe's batch)
    python tools/bench/malloc.py --batch 3 --steps 40
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

_CHILD = r"""
import json, sys, time
import torch
from audiossl.utils.malloc import tune_malloc
from audiossl.models.hubert.model import build_hubert, hubert_tiny

tuned = tune_malloc()
batch, seconds, steps = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
torch.manual_seed(0)
model = build_hubert(hubert_tiny(feature_grad_mult=1.0, pred_nomask_weight=1.0)).train()
opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
samples = int(seconds * 16000)
wavs = torch.randn(batch, samples)
targets = torch.randint(0, 100, (batch, model.encoder.num_frames(samples)))

def step():
    model(wavs, None, targets).loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)

for _ in range(3):
    step()
times = []
for _ in range(steps):
    t0 = time.perf_counter()
    step()
    times.append(time.perf_counter() - t0)
times.sort()
print(json.dumps({"tuned": tuned, "ms": 1e3 * times[len(times) // 2], "threads": torch.get_num_threads()}))
"""


def _run(tuning: bool, args) -> dict:
    env = dict(os.environ, AUDIOSSL_MALLOC_TUNING="1" if tuning else "0")
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, str(args.batch), str(args.seconds), str(args.steps)],
        env=env, check=True, capture_output=True, text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=12, help="crops per step")
    ap.add_argument("--seconds", type=float, default=2.0, help="crop length")
    ap.add_argument("--steps", type=int, default=20, help="timed steps (median reported)")
    args = ap.parse_args()
    audio_s = args.batch * args.seconds
    rows = {"glibc defaults": _run(False, args), "audiossl tune_malloc": _run(True, args)}
    for name, r in rows.items():
        print(f"{name:22s} tuned={r['tuned']!s:5s} {r['ms']:7.1f} ms/step  {audio_s / r['ms'] * 1e3:7.1f} audio-s/s  ({r['threads']} threads)")
    ratio = rows["glibc defaults"]["ms"] / rows["audiossl tune_malloc"]["ms"]
    print(f"speed-up (defaults / tuned): {ratio:.2f}x")


if __name__ == "__main__":
    main()
