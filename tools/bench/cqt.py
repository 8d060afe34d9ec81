"""Benchmark: MERT's CQT teacher — audiossl ``TorchCQT`` (``fft`` and ``direct``) vs nnAudio ``CQT1992v2``.

All three compute the same 336-bin magnitude CQT (MERT's ``model_cqt_pred`` settings: 24 kHz, hop 320,
fmin 32.7 Hz, 48 bins per octave) of the same random batch in one run, with the same threads. Prints
milliseconds per batch (best of ``--repeats``), the ratio to nnAudio, and each output's largest
difference from nnAudio relative to its peak.

    .venv/bin/python tools/bench/cqt.py                          # MERT-tiny's training batch: 4 × 2 s, 1 thread
    .venv/bin/python tools/bench/cqt.py --batch 8 --seconds 5    # MERT's 5-s crops
    python tools/bench/cqt.py --device cuda --batch 32 --seconds 5

nnAudio is the peer and the parity reference (the ``parity`` extra); without it only ours run.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from audiossl.audio.cqt_torch import TorchCQT  # noqa: E402

SR, HOP, BINS, BPO, FMIN = 24000, 320, 336, 48, 32.7


def _time(fn, x: torch.Tensor, repeats: int) -> float:
    fn(x)  # warm-up: oneDNN primitives, FFT plans, kernel spectra
    best = float("inf")
    for _ in range(repeats):
        if x.is_cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn(x)
        if x.is_cuda:
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return best


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x = (0.1 * torch.randn(args.batch, int(args.seconds * SR))).to(args.device)
    frames = x.shape[-1] // HOP + 1
    runs = {}
    for method in ("fft", "direct"):
        cqt = TorchCQT(SR, HOP, BINS, BPO, FMIN, method=method).to(args.device)
        runs[f"audiossl {method}"] = (lambda c: (lambda w: c(w, frames)))(cqt)
    try:
        from nnAudio.features.cqt import CQT

        ref = CQT(sr=SR, hop_length=HOP, fmin=FMIN, n_bins=BINS, bins_per_octave=BPO, filter_scale=1, norm=1,
                  window="hann", center=True, pad_mode="constant", output_format="Magnitude", verbose=False).to(args.device)
        runs["nnAudio CQT1992v2"] = lambda w: ref(w).transpose(1, 2)
    except ImportError:
        print("nnAudio not installed (pip install '.[parity]'): no peer")
    with torch.no_grad():
        outs = {name: fn(x) for name, fn in runs.items()}
        times = {name: _time(fn, x, args.repeats) for name, fn in runs.items()}
    peer = "nnAudio CQT1992v2"
    print(f"CQT {BINS} bins, {args.batch} × {args.seconds:g} s at {SR} Hz ({frames} frames), {args.threads} thread(s), {args.device}")
    for name, t in times.items():
        line = f"  {name:20s} {1e3 * t:9.1f} ms"
        if peer in times:
            ref_out = outs[peer]
            err = float((outs[name] - ref_out).abs().max() / ref_out.abs().max())
            line += f"   {times[peer] / t:6.2f}x nnAudio   max |diff| / peak {err:.1e}"
        print(line)


if __name__ == "__main__":
    main()
