"""Benchmark: our HuBERT upstream vs transformers ``HubertModel`` (SDPA) vs torchaudio ``hubert_base``.

One random-init torchaudio ``hubert_base()`` supplies the weights; they are converted onto our
model (audiossl.interop.torchaudio_hubert) and from ours onto transformers (audiossl.interop.hf),
so all three run the SAME weights on the SAME inputs, in one process, with the same threads.
Runs are interleaved, in an order rotated every repeat, so machine-load drifts hit all alike; the
median of ``--repeats`` timed passes (after one warm-up) is reported.

Prints throughput (audio-seconds per second), the ratio vs transformers, and the max abs
difference of every hidden state vs transformers (and of the last layer vs torchaudio).

    .venv/bin/python tools/bench/extract.py                  # base, 8 x 10 s (slow on 2 CPU cores)
    .venv/bin/python tools/bench/extract.py --batch 4 --seconds 5 --repeats 3
    .venv/bin/python tools/bench/extract.py --quick          # tiny model, seconds
    .venv/bin/python tools/bench/extract.py --profile        # + torch.profiler table of our forward

Target: ours >= 1.5x transformers at <= 1e-4 max abs diff (fp32, CPU).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def build(quick: bool):
    """(our upstream, hf model, torchaudio model) sharing one set of random weights."""
    import torchaudio

    from audiossl.eval.upstream import HubertUpstream
    from audiossl.interop.hf import ours_to_hf
    from audiossl.interop.torchaudio_hubert import from_torchaudio

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
    return HubertUpstream(ours, name="audiossl"), hf, ta


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
    args = p.parse_args()
    if args.quick:
        args.batch, args.seconds = 2, 2.0
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    ours, hf, ta = build(args.quick)
    wavs = torch.randn(args.batch, int(args.seconds * 16000))
    audio_s = args.batch * args.seconds

    runners = {
        "audiossl": lambda: ours(wavs).hidden_states,
        "transformers": lambda: hf(wavs, output_hidden_states=True).hidden_states,
    }
    if not args.no_torchaudio:
        runners["torchaudio"] = lambda: ta.extract_features(wavs)[0]
    outputs, times = {}, {k: [] for k in runners}
    with torch.inference_mode():
        for name, fn in runners.items():
            outputs[name] = fn()  # warm-up, and the outputs compared below
        names = list(runners)
        for r in range(args.repeats):
            # rotate the order each repeat so no implementation always runs first
            for name in names[r % len(names):] + names[: r % len(names)]:
                fn = runners[name]
                t0 = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t0)
        if args.profile:
            from torch.profiler import ProfilerActivity, profile

            with profile(activities=[ProfilerActivity.CPU]) as prof:
                runners["audiossl"]()
            print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))

    ref = outputs["transformers"]
    diff_hf = max(float((a - b).abs().max()) for a, b in zip(outputs["audiossl"], ref))
    diff_ta = float((outputs["audiossl"][-1] - outputs["torchaudio"][-1]).abs().max()) if "torchaudio" in outputs else None
    med = {k: statistics.median(v) for k, v in times.items()}
    result = {
        "config": "tiny" if args.quick else "hubert_base", "batch": args.batch, "seconds": args.seconds,
        "threads": args.threads, "repeats": args.repeats, "torch": torch.__version__,
        "throughput_audio_s_per_s": {k: audio_s / v for k, v in med.items()},
        "ratio_vs_transformers": {k: med["transformers"] / v for k, v in med.items()},
        "max_abs_diff_vs_transformers_all_layers": diff_hf,
        "max_abs_diff_vs_torchaudio_last_layer": diff_ta,
    }
    print(f"{'impl':<14}{'median s':>10}{'audio-s/s':>12}{'vs HF':>8}")
    for k in runners:
        print(f"{k:<14}{med[k]:>10.3f}{audio_s / med[k]:>12.1f}{med['transformers'] / med[k]:>7.2f}x")
    print(f"max |ours - HF| over {len(ref)} hidden states: {diff_hf:.2e}")
    if diff_ta is not None:
        print(f"max |ours - torchaudio| last layer: {diff_ta:.2e}")
    print(json.dumps(result))
    if args.json:
        from audiossl.utils.fileio import atomic_write_json

        atomic_write_json(args.json, result)


if __name__ == "__main__":
    main()
