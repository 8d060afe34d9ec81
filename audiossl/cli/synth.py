"""Generate the offline demo corpus: synthetic speech (eSpeak NG: pretraining, phone
recognition, ASR, speaker ID/verification, keyword spotting, prosody classes) and music
(General MIDI SoundFont: instrument family + pitch notes, key of chord progressions), with
fairseq manifests and labels. The same --size and --seed give bit-identical files."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "generate the offline demo corpus (speech + music) with labels"
TASK_CHOICES = ("speech,speakers_unseen,keywords,prosody,music_notes,music_keys (music = both music tasks); "
                "opt-in, not in 'all': intents,conversations,music_beats,qbe,music_genre,music_tagging (e.g. all,intents)")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("out", type=Path, help="output directory (must be empty or new unless --overwrite)")
    p.add_argument("--size", choices=["tiny", "small", "full"], default="small",
                   help="tiny: unit tests (~200 clips); small: `make demo` on 2 CPUs (~20 min speech); full: GPU run (hours)")
    p.add_argument("--seed", type=int, default=0, help="random seed; the same seed gives bit-identical files")
    p.add_argument("--workers", type=int, default=2, help="synthesis processes (output does not depend on it)")
    p.add_argument("--tasks", default="all", help=f"comma-separated subset of {TASK_CHOICES}, or 'all'")
    p.add_argument("--overwrite", action="store_true", help="replace a previous corpus in OUT")


def run(args: argparse.Namespace) -> int:
    from audiossl.data.synth.corpus import synthesize

    tasks = None if args.tasks.strip() == "all" else [t for t in args.tasks.split(",") if t.strip()]
    try:
        summary = synthesize(args.out, args.size, args.seed, args.workers, tasks, overwrite=args.overwrite)
    except (FileExistsError, ValueError) as e:
        print(f"audiossl synth: {e}")
        return 2
    print(f"wrote {args.out} (size={summary['size']}, seed={summary['seed']}) in {summary['seconds']:.1f} s")
    for task, splits in summary["counts"].items():
        secs = summary["durations_s"][task]
        parts = ", ".join(f"{s} {n} clips / {secs[s] / 60:.1f} min" for s, n in splits.items())
        print(f"  {task:<16} {parts}")
    print(f"skipped {summary['skipped']} clips" + (f" (see {args.out / 'skipped.txt'})" if summary["skipped"] else ""))
    return 0
