"""Benchmark: our HuBERT upstream vs transformers ``HubertModel`` (SDPA) vs torchaudio ``hubert_base``.

One random-init torchaudio ``hubert_base()`` supplies the weights; they are converted onto our
model (audiossl.models.hubert.torchaudio) and from ours onto transformers (audiossl.models.hubert.hf),
so all three run the SAME weights on the SAME inputs, in one process, with the same threads.
Runs are interleaved, in an order rotated every repeat, so machine-load drifts hit all alike; the
median of ``--repeats`` timed passes (after one warm-up) is reported.

Prints throughput (audio-seconds per second), real-time factor, the ratio vs transformers, and
the max abs difference of every hidden state vs transformers (and of the last layer vs torchaudio).
``--dtype bfloat16|float16`` runs every implementation under the same autocast.

Roofline: each implementation's achieved FLOP/s (analytic forward FLOPs of
``audiossl.models.hubert.flops``, identical for all three since they compute the same thing) is shown
against a peak: on CPU the fp32 GEMM rate measured on this machine in the same run, on CUDA the
device's dense bf16 peak. On CPU it also prints the *ceiling*: the ratio vs transformers that an
implementation running every FLOP at the measured GEMM rate would reach.

``--pipeline N`` also runs the whole ``audiossl extract`` engine (decode → forward → write npy)
on N synthetic files of 2–16 s and prints where the time went (forward / waiting for audio / writing).

    .venv/bin/python tools/bench/extract.py                  # base, 8 x 10 s (slow on 2 CPU cores)
    .venv/bin/python tools/bench/extract.py --batch 2 --seconds 5 --repeats 3 --no-torchaudio
    .venv/bin/python tools/bench/extract.py --quick          # tiny model, seconds
    .venv/bin/python tools/bench/extract.py --profile        # + torch.profiler table of our forward
    python tools/bench/extract.py --device cuda --dtype bfloat16 --batch 16 --seconds 15 --pipeline 400

Target: ours >= 1.5x transformers at <= 1e-4 max abs diff (fp32, CPU); on GPU in bf16.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def build(quick: bool):
    """(our upstream, hf model, torchaudio model) sharing one set of random weights."""
    import torchaudio

    from audiossl.upstream.encoder import EncoderUpstream
    from audiossl.models.hubert.hf import ours_to_hf
    from audiossl.models.hubert.torchaudio import from_torchaudio

    if quick:
        ta = torchaudio.models.wav2vec2_model(
            extractor_mode="group_norm", extractor_conv_layer_config=[(64, 10, 5)] + [(64, 3, 2)] * 4 + [(64, 2, 2)] * 2,
            extractor_conv_bias=False, encoder_embed_dim=128, encoder_projection_dropout=0.0,
            encoder_pos_conv_kernel=32, encoder_pos_conv_groups=8, encoder_num_layers=2, encoder_num_heads=2,
            encoder_attention_dropout=0.0, encoder_ff_interm_features=512, encoder_ff_interm_dropout=0.0,
            encoder_dropout=0.0, encoder_layer_norm_first=False, encoder_layer_drop=0.0, aux_num_out=None,
        )
    else:
        ta = torchaudio.models.hubert_base()
    ta.eval()
    ours = from_torchaudio(ta).eval()
    hf = ours_to_hf(ours)
    hf.config._attn_implementation = "sdpa"
    hf = hf.eval()
    return EncoderUpstream(ours, name="audiossl"), hf, ta


def gemm_peak(device: torch.device, dtype: torch.dtype, repeats: int = 5) -> float:
    """FLOP/s of a 2048³ matmul on ``device`` in ``dtype`` (best of ``repeats``; :func:`audiossl.models.flops.gemm_peak`)."""
    from audiossl.models.flops import gemm_peak as measure

    return measure(device, dtype, n=2048, repeats=repeats, budget_s=float("inf"))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def pipeline(ours, num_files: int, device: str, dtype: str) -> dict:
    """Run the extract engine on ``num_files`` synthetic 2–16 s files; return its time split."""
    import numpy as np
    import soundfile as sf

    from audiossl.extract.run import extract, ExtractConfig

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        wav_dir = Path(tmp) / "wavs"
        wav_dir.mkdir()
        for i in range(num_files):
            n = int(rng.uniform(2.0, 16.0) * 16000)
            sf.write(wav_dir / f"utt{i:05d}.flac", (0.1 * rng.standard_normal(n)).astype(np.float32), 16000)
        report = extract(ours, wav_dir, Path(tmp) / "out", ExtractConfig(device=device, dtype=dtype, layers="all"))
    return {"files": report.written, "audio_s": report.audio_seconds, "forward_s": report.forward_s,
            "wait_s": report.wait_s, "write_s": report.write_s, "summary": report.timing()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=8, help="utterances per forward")
    p.add_argument("--seconds", type=float, default=10.0, help="length of each utterance")
    p.add_argument("--repeats", type=int, default=3, help="timed passes per implementation (median reported)")
    p.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch CPU threads")
    p.add_argument("--quick", action="store_true", help="tiny model, 2 x 2 s: a smoke run")
    p.add_argument("--no-torchaudio", action="store_true", help="skip the torchaudio peer")
    p.add_argument("--profile", action="store_true", help="print a torch.profiler table of our forward")
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    p.add_argument("--device", default="cpu", help="torch device: cpu or cuda[:N] (default: cpu)")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"],
                   help="compute dtype; low precision runs every implementation under the same autocast (default: float32)")
    p.add_argument("--pipeline", type=int, default=0, metavar="N",
                   help="also run the extract engine on N synthetic 2-16 s files and print its time split (default: 0, off)")
    args = p.parse_args()
    if args.quick:
        args.batch, args.seconds = 2, 2.0
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[args.dtype]
    ours, hf, ta = build(args.quick)
    ours, hf, ta = ours.to(device), hf.to(device), ta.to(device)
    wavs = torch.randn(args.batch, int(args.seconds * 16000), device=device)
    audio_s = args.batch * args.seconds
    autocast = torch.autocast(device.type, dtype=dtype) if dtype != torch.float32 else contextlib.nullcontext()

    runners = {
        "audiossl": lambda: ours(wavs).hidden_states,
        "transformers": lambda: hf(wavs, output_hidden_states=True).hidden_states,
    }
    if not args.no_torchaudio:
        runners["torchaudio"] = lambda: ta.extract_features(wavs)[0]
    outputs, times = {}, {k: [] for k in runners}
    with torch.inference_mode(), autocast:
        for name, fn in runners.items():
            outputs[name] = fn()  # warm-up, and the outputs compared below
        names = list(runners)
        for r in range(args.repeats):
            # rotate the order each repeat so no implementation always runs first
            for name in names[r % len(names):] + names[: r % len(names)]:
                fn = runners[name]
                _sync(device)
                t0 = time.perf_counter()
                fn()
                _sync(device)
                times[name].append(time.perf_counter() - t0)
        if args.profile:
            from torch.profiler import ProfilerActivity, profile

            acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
            with profile(activities=acts) as prof:
                runners["audiossl"]()
            print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))

    ref = outputs["transformers"]
    diff_hf = max(float((a.float() - b.float()).abs().max()) for a, b in zip(outputs["audiossl"], ref))
    diff_ta = float((outputs["audiossl"][-1].float() - outputs["torchaudio"][-1].float()).abs().max()) if "torchaudio" in outputs else None
    med = {k: statistics.median(v) for k, v in times.items()}

    from audiossl.models.flops import peak_flops
    from audiossl.models.hubert.flops import forward_flops

    flops = args.batch * forward_flops(ours.model.cfg, wavs.shape[1], include_head=False)
    if device.type == "cuda":
        peak, peak_what = peak_flops(torch.cuda.get_device_name(device)), f"dense bf16 peak of {torch.cuda.get_device_name(device)}"
    elif dtype == torch.float32:
        peak, peak_what = gemm_peak(device, dtype), f"float32 2048^3 matmul measured now on {args.threads} threads"
    else:  # most CPUs emulate bf16/fp16 matmuls: no meaningful peak to compare with
        peak, peak_what = None, None
    ceiling = med["transformers"] / (flops / peak) if peak else None
    result = {
        "config": "tiny" if args.quick else "hubert_base", "batch": args.batch, "seconds": args.seconds,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu", "dtype": args.dtype,
        "threads": args.threads, "repeats": args.repeats, "torch": torch.__version__,
        "throughput_audio_s_per_s": {k: audio_s / v for k, v in med.items()},
        "real_time_factor": {k: v / audio_s for k, v in med.items()},
        "ratio_vs_transformers": {k: med["transformers"] / v for k, v in med.items()},
        "max_abs_diff_vs_transformers_all_layers": diff_hf,
        "max_abs_diff_vs_torchaudio_last_layer": diff_ta,
        "forward_gflop": flops / 1e9, "peak_gflop_per_s": peak / 1e9 if peak else None, "peak": peak_what,
        "fraction_of_peak": {k: flops / v / peak for k, v in med.items()} if peak else None,
        "ceiling_ratio_vs_transformers": ceiling,
    }
    print(f"{'impl':<14}{'median s':>10}{'audio-s/s':>12}{'RTF':>9}{'GFLOP/s':>9}{'of peak':>9}{'vs HF':>8}")
    for k in runners:
        of_peak = f"{100 * flops / med[k] / peak:>8.0f}%" if peak else f"{'-':>9}"
        print(f"{k:<14}{med[k]:>10.3f}{audio_s / med[k]:>12.1f}{med[k] / audio_s:>9.4f}{flops / med[k] / 1e9:>9.1f}"
              f"{of_peak}{med['transformers'] / med[k]:>7.2f}x")
    if peak:
        print(f"forward: {flops / 1e9:.1f} GFLOP per pass; peak {peak / 1e9:.1f} GFLOP/s ({peak_what})")
        print(f"ceiling: running every FLOP at that peak would be {ceiling:.2f}x transformers")
    print(f"max |ours - HF| over {len(ref)} hidden states: {diff_hf:.2e}")
    if diff_ta is not None:
        print(f"max |ours - torchaudio| last layer: {diff_ta:.2e}")
    if args.pipeline:
        result["pipeline"] = pipeline(ours, args.pipeline, args.device, args.dtype)
        print(f"extract engine, {args.pipeline} files: {result['pipeline']['summary']}")
    print(json.dumps(result))
    if args.json:
        from audiossl.utils.fileio import atomic_write_json

        atomic_write_json(args.json, result)


if __name__ == "__main__":
    main()
