#!/usr/bin/env python
"""HuBERT pretraining step throughput: audiossl vs torchaudio's ``HuBERTPretrainModel``, one run.

Both models get the same weights (converted with ``audiossl.models.hubert.torchaudio``), the
same random batch of equal-length crops and the same optimiser (AdamW); each step is forward +
masked cross-entropy + feature penalty + backward + optimiser step. Prints audio-seconds per second
per device, MFU (analytic FLOPs of ``audiossl.models.hubert.flops``, conv front end included), peak memory
on GPU, and our/torchaudio ratio. On CUDA both run under bf16 autocast.

    python tools/bench/pretrain.py --size base --batch 8 --seconds 10 --steps 20       # GPU
    python tools/bench/pretrain.py --size tiny --batch 4 --seconds 2 --steps 10        # CPU smoke

``--trainer`` instead times the real trainer step of a recipe (fairseq2 Trainer, data reader, metrics,
clipping, optimizer; tools/bench/pretrain_trainer.py) and prints audio-s/s (min / median / max over
``--repeats``) and the model FLOP/s as a fraction of the fp32 GEMM peak measured in the same run:

    python tools/bench/pretrain.py --trainer --recipe recipes/hubert/tiny.yaml --steps 40 --repeats 3
    python tools/bench/pretrain.py --trainer --steps 40 --repeats 3 data.max_tokens=96000   # the old tiny batch
"""

from __future__ import annotations

import argparse
import contextlib
import time
from pathlib import Path

import torch
import torch.nn.functional as F


def _torchaudio_model(size: str, num_classes: int):
    import torchaudio.models as tam

    if size == "base":
        return tam.hubert_pretrain_base(num_classes=num_classes)
    if size == "large":
        return tam.hubert_pretrain_large()
    # tiny: the same shapes as audiossl's hubert_tiny
    return tam.hubert_pretrain_model(
        extractor_mode="group_norm", extractor_conv_layer_config=[(64, 10, 5)] + [(64, 3, 2)] * 4 + [(64, 2, 2)] * 2,
        extractor_conv_bias=False, encoder_embed_dim=128, encoder_projection_dropout=0.1,
        encoder_pos_conv_kernel=32, encoder_pos_conv_groups=8, encoder_num_layers=2, encoder_num_heads=2,
        encoder_attention_dropout=0.1, encoder_ff_interm_features=512, encoder_ff_interm_dropout=0.0,
        encoder_dropout=0.1, encoder_layer_norm_first=False, encoder_layer_drop=0.0, mask_prob=0.8,
        mask_selection="static", mask_other=0.0, mask_length=10, no_mask_overlap=False, mask_min_space=1,
        mask_channel_prob=0.0, mask_channel_selection="static", mask_channel_other=0.0, mask_channel_length=10,
        no_mask_channel_overlap=False, mask_channel_min_space=1, skip_masked=False, skip_nomask=True,
        num_classes=num_classes, final_dim=64, feature_grad_mult=0.1,
    )


def _time_steps(step, steps: int, warmup: int, device: torch.device) -> float:
    for _ in range(warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", choices=["tiny", "base", "large"], default="tiny")
    ap.add_argument("--batch", type=int, default=4, help="crops per step")
    ap.add_argument("--seconds", type=float, default=2.0, help="crop length")
    ap.add_argument("--steps", type=int, default=10, help="timed steps per model")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--num-classes", type=int, default=500)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--peak-tflops", type=float, default=None, help="peak dense bf16 TFLOP/s (default: by GPU name)")
    ap.add_argument("--trainer", action="store_true", help="time the real trainer step of --recipe instead (CPU)")
    ap.add_argument("--recipe", type=Path, default=Path(__file__).resolve().parents[2] / "recipes/hubert/tiny.yaml",
                    help="--trainer: recipe YAML")
    ap.add_argument("--manifest-dir", type=Path, default=None,
                    help="--trainer: corpus with train.tsv + train.<labels> (default: a synthetic demo-like corpus)")
    ap.add_argument("--labels", default="km", help="--trainer: label extension in --manifest-dir (none: audio-only families, e.g. data2vec2)")
    ap.add_argument("--repeats", type=int, default=3, help="--trainer: runs (min / median / max reported)")
    ap.add_argument("overrides", nargs="*", help="--trainer: key=value recipe overrides, e.g. data.max_tokens=96000")
    args = ap.parse_args()
    if args.trainer:
        from pretrain_trainer import run

        run(args.recipe, args.manifest_dir, args.labels, args.steps, args.repeats, args.overrides)
        return
    if args.overrides:
        ap.error(f"key=value overrides {args.overrides} need --trainer")

    from audiossl.models.hubert.torchaudio import from_torchaudio
    from audiossl.models.flops import peak_flops
    from audiossl.models.hubert.flops import hubert_train_flops_per_second

    torch.manual_seed(0)
    device = torch.device(args.device)
    ta = _torchaudio_model(args.size, args.num_classes).to(device).train()
    ours = from_torchaudio(ta).to(device).train()
    cfg = ours.encoder.cfg
    samples = int(args.seconds * cfg.sample_rate)
    wavs = torch.randn(args.batch, samples, device=device)
    frames = ours.encoder.num_frames(samples)
    targets = torch.randint(0, args.num_classes, (args.batch, frames), device=device)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext()

    def stepper(model, loss_fn):
        opt = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=device.type == "cuda")

        def step():
            with autocast:
                loss = loss_fn(model)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

        return step

    def ours_loss(m):
        return m(wavs, None, targets).loss

    def ta_loss(m):
        logit_m, _, feature_pen = m(wavs, targets, None)
        # torchaudio puts the positive class first in each row of logit_m (its examples/hubert loss).
        target_m = torch.zeros(logit_m.shape[0], dtype=torch.long, device=device)
        return F.cross_entropy(logit_m.float(), target_m) + 10 * feature_pen

    audio_s = args.batch * args.seconds
    flops_per_audio_s = hubert_train_flops_per_second(cfg, samples)
    try:
        peak = peak_flops(None, args.peak_tflops * 1e12 if args.peak_tflops else None)
    except ValueError:
        peak = None
    rows = []
    for name, model, fn in [("audiossl", ours, ours_loss), ("torchaudio", ta, ta_loss)]:
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        dt = _time_steps(stepper(model, fn), args.steps, args.warmup, device)
        rate = audio_s / dt
        mfu = f"{100 * rate * flops_per_audio_s / peak:.1f} %" if peak else "n/a"
        mem = f"{torch.cuda.max_memory_allocated() / 2**30:.1f} GiB" if device.type == "cuda" else "n/a"
        rows.append((name, dt, rate, mfu, mem))
    dev_name = torch.cuda.get_device_name() if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    print(f"HuBERT-{args.size} pretraining step, batch {args.batch} × {args.seconds:g} s, {dev_name}")
    print(f"analytic training cost: {flops_per_audio_s / 1e9:.1f} GFLOP per audio-second")
    print(f"{'model':<11} {'s/step':>8} {'audio-s/s':>10} {'MFU':>8} {'peak mem':>9}")
    for name, dt, rate, mfu, mem in rows:
        print(f"{name:<11} {dt:8.3f} {rate:10.1f} {mfu:>8} {mem:>9}")
    print(f"ratio audiossl / torchaudio: {rows[1][1] / rows[0][1]:.2f}x step throughput")


if __name__ == "__main__":
    main()
