"""SUPERB-style evaluation: each frozen UPSTREAM runs once per split into a feature cache, then a
learnable weighted sum of its layers and a light head per task are trained (learning rate chosen
on dev), and one table compares all upstreams (an FBANK baseline row is always added).

Writes OUT/results.json, results.csv, results.md (with the overall score, 95 % bootstrap confidence
intervals and paired-bootstrap significance against the FBANK row) and PNG plots.
Re-running with the same OUT skips finished (upstream, task) pairs.

Tasks (resolved under --data; the demo corpus of `audiossl synth` or the preparers' outputs):
  pr phone CTC (PER) · asr BiLSTM CTC (WER greedy, and with a lexicon + word LM beam search) · pf frame phones (.ali) · ks keywords · ic intents
  er emotion · sid speaker id · asv speaker verification (EER) · instrument · pitch · key (MIREX)
  genre · tagging (ROC-AUC) · esc50 (5-fold accuracy)
"""

from __future__ import annotations

import argparse
from pathlib import Path

from audiossl.upstream.specs import spec_help

HELP = "SUPERB-style evaluation: frozen upstream, weighted layers, task heads"


def _floats(s: str) -> tuple[float, ...]:
    try:
        return tuple(float(x) for x in s.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers like 1e-4,1e-3,1e-2, got {s!r}") from None


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("upstreams", nargs="+", metavar="UPSTREAM",
                   help=f"upstream spec: {spec_help()} (fbank is always added)")
    p.add_argument("--tasks", default=None,
                   help="comma-separated task names (e.g. pr,ks,sid); default: every task whose data is under --data")
    p.add_argument("--data", type=Path, required=True, help="demo corpus dir (`audiossl synth`) or prepared corpora root")
    p.add_argument("--out", type=Path, required=True, help="output dir (caches, heads, results); reused to resume")
    p.add_argument("--epochs", type=int, default=None, help="epochs per head; None = each task's own default")
    p.add_argument("--lr-grid", type=_floats, default=None,
                   help="learning rates to try, chosen on dev per task, e.g. 1e-4,1e-3,1e-2; None = the task's own lr")
    p.add_argument("--layer", type=int, default=None, help="use only layer N instead of the learned weighted sum")
    p.add_argument("--device", default="cpu", help="torch device for the upstream and the heads")
    p.add_argument("--seed", type=int, default=0, help="random seed of head training")
    p.add_argument("--no-fbank", action="store_true", help="do not add the FBANK baseline row")
    p.add_argument("--max-batch-seconds", type=float, default=None,
                   help="padded audio per upstream batch when caching (default: 160 s on a GPU, 10 s on CPU)")
    p.add_argument("--lm", default=None,
                   help="ASR word LM for the lexicon beam search: ARPA or KenLM binary (e.g. LibriSpeech's 4-gram); "
                        "default: a Kneser-Ney 3-gram estimated from the ASR training transcripts; 'none': greedy only")
    p.add_argument("--lexicon", default=None,
                   help="extra ASR lexicon, one 'word<TAB>l e t t e r s |' per line (training words and the ARPA's "
                        "words are always included)")
    p.add_argument("--lm-weight", type=float, default=2.0, help="LM weight of the ASR beam search")
    p.add_argument("--word-score", type=float, default=0.0, help="score added per word in the ASR beam search")
    p.add_argument("--beam-size", type=int, default=50, help="beam size of the ASR beam search")
    p.add_argument("--bootstrap", type=int, default=1000,
                   help="bootstrap resamples of the test items for 95%% confidence intervals (0 = none)")
    p.add_argument("--amp", choices=["fp32", "bf16", "auto"], default="fp32",
                   help="head training precision: fp32 (default: the same numbers on every CPU), bf16 autocast, or "
                        "auto = bf16 on GPUs and on CPUs that multiply bf16 in hardware (AVX512-BF16/AMX), else fp32. "
                        "Evaluation stays fp32")
    p.add_argument("--reuse", action="append", default=[], metavar="DIR",
                   help="another bench output: a pair it finished with the same settings (data, upstream files, "
                        "task, options) is copied from DIR/runs/ instead of trained again (repeatable)")
    p.add_argument("--no-report", action="store_true",
                   help="train and evaluate the pairs only (kept under OUT/runs/); a later call on the same OUT "
                        "writes the tables and plots. For several processes that fill one table")
    p.add_argument("--head-seeds", type=int, default=1,
                   help="heads trained per task and lr with seeds SEED..SEED+N-1 (lr chosen on their mean dev "
                        "metric; value = mean over seeds; CI = bootstrap over test items x head seeds). 1 = one head, "
                        "CI over test items only")


def run(args: argparse.Namespace) -> int:
    from audiossl.data.frame_labels import LabelError
    from audiossl.data.manifest import ManifestError
    from audiossl.eval.harness import BenchConfig, run_bench
    from audiossl.eval.tasks import BenchError

    cfg = BenchConfig(epochs=args.epochs, lr_grid=args.lr_grid, layer=args.layer, device=args.device,
                      seed=args.seed, add_fbank=not args.no_fbank, max_batch_seconds=args.max_batch_seconds,
                      lm=args.lm, lexicon=args.lexicon, lm_weight=args.lm_weight, word_score=args.word_score,
                      beam_size=args.beam_size, bootstrap=args.bootstrap, head_seeds=args.head_seeds,
                      amp=args.amp, reuse=tuple(args.reuse), report=not args.no_report)
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()] if args.tasks else None
    try:
        records = run_bench(args.upstreams, tasks, args.data, args.out, cfg)
    except (BenchError, LabelError, ManifestError) as e:
        print(f"audiossl bench: {e}")
        return 2
    from audiossl.cli.status import produced_or_fail

    if not args.no_report and (args.out / "results.md").is_file():
        print((args.out / "results.md").read_text())
    skipped = sum(r["skipped_files"] for r in records)
    print(f"{len(records)} (upstream, task) results in {args.out}; {skipped} bad audio files skipped")
    return produced_or_fail("bench", len(records), len(records), "(upstream, task) results")
