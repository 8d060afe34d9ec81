#!/usr/bin/env python
"""One family's pretraining step: MFU, audio-s/s, padding efficiency, peak memory, per batching mode.

A batch of ``--batch`` items whose lengths spread evenly from ``(1 - spread) × seconds`` to
``seconds`` is run as the trainer runs it in each mode: ``bucket`` (padded to the longest, lengths
passed: key-padding mask) and ``crop_to_shortest`` (cropped to the shortest, no lengths: no mask).
Audio-s/s counts real audio only; MFU = audio-s/s × the family's analytic training FLOPs per
audio-second (``train_flops_per_second``) / peak. bf16 autocast on CUDA; fp32 on CPU.

    python tools/bench/family_step.py --family hubert --size base --batch 8 --seconds 10 --json out.json   # GPU
    python tools/bench/family_step.py --family beats --size tiny --batch 2 --seconds 2 --steps 1 --warmup 1  # CPU smoke
"""

from __future__ import annotations

import argparse
import contextlib
import json
import time
from pathlib import Path

import torch


def _targets(model, family: str, batch: int, frames: int, num_classes: int, device) -> torch.Tensor:
    if family == "hubert":
        return torch.randint(0, num_classes, (batch, frames), device=device)
    return torch.randint(0, num_classes, (batch, frames, model.cfg.num_codebooks), device=device)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--family", choices=["hubert", "beats", "mert"], default="hubert")
    ap.add_argument("--size", default="tiny", help="builder name in the family's CONFIGS (base, 95m, ...)")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=2.0, help="longest item")
    ap.add_argument("--spread", type=float, default=0.2, help="shortest item = (1 - spread) × seconds")
    ap.add_argument("--modes", default="bucket,crop_to_shortest")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--peak-tflops", type=float, default=None)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    from audiossl.models.families import get_family
    from audiossl.models.flops import peak_flops

    fam = get_family(args.family)
    cfg = fam.CONFIGS[args.size]()
    torch.manual_seed(0)
    device = torch.device(args.device)
    model = fam.build_pretrain_model(cfg).to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=device.type == "cuda")
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext()
    sr = cfg.sample_rate
    longest = int(args.seconds * sr)
    lens = torch.linspace((1 - args.spread) * longest, longest, args.batch).long()
    try:
        peak = peak_flops(None, args.peak_tflops * 1e12 if args.peak_tflops else None)
    except ValueError:
        peak = None
    results = {"family": args.family, "size": args.size, "batch": args.batch, "seconds": args.seconds,
               "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu", "modes": {}}
    for mode in args.modes.split(","):
        n = int(lens.min()) if mode == "crop_to_shortest" else longest
        wavs = torch.randn(args.batch, n, device=device)
        lengths = None if mode == "crop_to_shortest" else lens.to(device)
        if lengths is not None:
            wavs = wavs * (torch.arange(n, device=device)[None, :] < lengths[:, None])
        real = args.batch * n if lengths is None else int(lens.sum())
        targets = _targets(model, args.family, args.batch, model.encoder.num_frames(n), cfg.num_classes, device)
        gen = torch.Generator(device=device).manual_seed(0)

        def step():
            with autocast:
                out = model(wavs, lengths, targets, generator=gen)
            out.loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

        for _ in range(args.warmup):
            step()
        if device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        for _ in range(args.steps):
            step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        dt = (time.perf_counter() - t0) / args.steps
        rate = real / sr / dt
        flops = fam.train_flops_per_second(cfg, n)
        results["modes"][mode] = {
            "s_per_step": dt, "audio_s_per_s": rate, "padding_eff": real / (args.batch * n),
            "mfu": rate * flops / peak if peak else None,
            "peak_mem_gib": torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None,
        }
    print(json.dumps(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
