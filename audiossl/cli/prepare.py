"""Turn a corpus on disk (or a plain directory / Kaldi wav.scp) into fairseq manifests:
OUT/<split>.tsv (root line + 'relpath<TAB>num_samples') and parallel label files.
Bad audio files are reported with path and reason and skipped (listed in OUT/skipped.txt);
the run ends with the count. `audiossl prepare CORPUS --help` shows a corpus' options.

corpora and expected layouts:
{layouts}
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HELP = "turn a corpus on disk (or a directory / wav.scp) into manifests"

TITLES = {
    "librispeech": "LibriSpeech / mini_librispeech: .wrd .ltr .spk (+ .phn with --lexicon)",
    "speech_commands": "Speech Commands v0.01/v0.02, SUPERB 12 classes: .lbl",
    "voxceleb1": "VoxCeleb1: SID splits (.spk) and ASV trials",
    "esc50": "ESC-50: fold1..fold5 with .lbl (category) and .target",
    "gtzan": "GTZAN: train/valid/test with .lbl (genre)",
    "magnatagatune": "MagnaTagATune, MARBLE MTT: top-50 .tags, dirs 0-b/c/d-f → train/valid/test",
    "nsynth": "NSynth: train/valid/test with .lbl (family), .pitch, .source",
    "fluent_speech_commands": "Fluent Speech Commands, SUPERB IC: .lbl (action|object|location) .action .object .location .wrd .spk",
    "diarization": "a Kaldi-style diarization data dir (wav.scp + rttm or segments/utt2spk), SUPERB SD: .seg .reco",
    "beats": "beat-annotated music (Ballroom, GTZAN beats): .beats .downbeats",
    "dir": "a directory of audio files (recursive), no labels",
    "wav.scp": "a Kaldi data dir: wav.scp (+ text, utt2spk) → .ids .wrd .spk",
    "lhotse": "a lhotse CutSet (cuts.jsonl.gz) → .ids .wrd .ltr .spk; partial / channel-subset cuts written out as mono audio",
    "audioset": "AudioSet: segments CSVs + downloaded clips → .tags (display names) .mid (label ids)",
}


def _layouts() -> str:
    from audiossl.data.prepare import PREPARERS

    width = max(map(len, PREPARERS))
    return "\n".join(f"  {name:<{width}}  {layout}" for name, (_, _, layout) in PREPARERS.items())


__doc__ = __doc__.format(layouts=_layouts())


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workers", type=int, default=4, help="processes reading audio headers (used for more than 256 files)")
    p.add_argument("--min-duration", type=float, default=0.1, help="seconds; shorter files are skipped")
    p.add_argument("--max-duration", type=float, default=None, help="seconds; longer files are skipped (None: no limit)")
    p.add_argument("--sample-rate", type=int, default=None, help="expected rate; other rates are reported as warnings (None: any rate)")
    p.add_argument("--scan-samples", action="store_true", help="decode every file (NaN/inf, truncation); slower than header checks")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _per_corpus(name: str, p: argparse.ArgumentParser) -> None:
    if name == "librispeech":
        p.add_argument("--splits", nargs="+", default=None, help="split dirs to prepare (None: all found)")
        p.add_argument("--lexicon", type=Path, default=None, help="'WORD PH1 PH2 ...' lexicon; writes .phn (None: no phones)")
        p.add_argument("--strip-stress", action="store_true", help="drop stress digits from phones (AH0 → AH)")
        p.add_argument("--skip-oov", action="store_true", help="skip utterances with words not in the lexicon instead of stopping with an error")
    elif name == "speech_commands":
        p.add_argument("--test-set", type=Path, default=None, help="SUPERB test set dir (speech_commands_test_set_v0.01) to use as the test split (None: testing_list.txt)")
    elif name == "voxceleb1":
        p.add_argument("--iden-split", type=Path, default=None, help="iden_split.txt (None: looked for in SRC and SRC/meta)")
        p.add_argument("--trials", type=Path, default=None, help="veri_test.txt / veri_test2.txt (None: looked for in SRC and SRC/meta)")
    elif name == "esc50":
        p.add_argument("--esc10", action="store_true", help="only the ESC-10 subset")
    elif name == "gtzan":
        p.add_argument("--split-dir", type=Path, default=None, help="directory with {train,valid,test}_filtered.txt (None: SRC or the genres dir)")
        p.add_argument("--seed", type=int, default=0, help="seed of the stratified 80/10/10 split used when no lists exist")
    elif name == "magnatagatune":
        p.add_argument("--top-n", type=int, default=50, help="number of most frequent tags kept")
        p.add_argument("--keep-untagged", action="store_true", help="keep clips without any of the top-N tags (empty .tags)")
    elif name == "nsynth":
        p.add_argument("--splits", nargs="+", default=None, choices=["train", "valid", "test"], help="splits (None: all found)")
    elif name == "diarization":
        p.add_argument("--base-dir", type=Path, default=None, help="directory relative wav.scp paths are resolved against (None: the current directory)")
        p.add_argument("--tolerance", type=float, default=0.1, help="seconds a speaker turn may run past the end of its recording")
    elif name == "beats":
        p.add_argument("--annotations", type=Path, default=None, help="directory searched for <name>.beats (None: SRC)")
        p.add_argument("--seed", type=int, default=0, help="seed of the stratified 80/10/10 split")
        p.add_argument("--tolerance", type=float, default=0.5, help="seconds beats may run past the end of their clip")
    elif name == "dir":
        p.add_argument("--split", default="train", help="name of the manifest written (OUT/<split>.tsv)")
    elif name == "wav.scp":
        p.add_argument("--split", default=None, help="manifest name (None: the name of the directory holding the scp)")
        p.add_argument("--text", type=Path, default=None, help="Kaldi text (None: 'text' beside the scp if present)")
        p.add_argument("--utt2spk", type=Path, default=None, help="Kaldi utt2spk (None: 'utt2spk' beside the scp if present)")
        p.add_argument("--base-dir", type=Path, default=None, help="directory relative paths are resolved against (None: the current directory)")
    elif name == "lhotse":
        p.add_argument("--split", default=None, help="manifest name (None: the file name without .jsonl.gz)")
    elif name == "audioset":
        p.add_argument("--csv", dest="csv_files", nargs="+", default=None, metavar="[NAME=]CSV",
                       help="segments CSV(s), one split each, named after the file (balanced_train_segments.csv → balanced_train) "
                            "or NAME=CSV (None: the standard CSVs found in SRC, SRC/meta or SRC/..)")
        p.add_argument("--class-labels", type=Path, default=None,
                       help="class_labels_indices.csv: .tags get display names (None: .tags hold the label ids)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from audiossl.data.prepare import PREPARERS

    sub = parser.add_subparsers(dest="corpus", metavar="CORPUS", required=True)
    for name, (_, func, layout) in PREPARERS.items():
        p = sub.add_parser(name, help=TITLES[name], description=f"{TITLES[name]}; layout: {layout}", formatter_class=parser.formatter_class)
        p.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="debug logging")
        p.add_argument("src", type=Path, help="corpus directory" + {"wav.scp": " (the wav.scp file)", "lhotse": " (the CutSet .jsonl.gz file)"}.get(name, ""))
        p.add_argument("out", type=Path, help="output directory for <split>.tsv and label files")
        _common(p)
        _per_corpus(name, p)


_NOT_OPTIONS = {"verbose", "corpus", "src", "out", "no_progress"}


def run(args: argparse.Namespace) -> int:
    from audiossl.data.manifest import ManifestError
    from audiossl.data.prepare import PrepareError, prepare

    options = {k: v for k, v in vars(args).items() if k not in _NOT_OPTIONS}
    options["progress"] = not args.no_progress
    try:
        result = prepare(args.corpus, args.src, args.out, **options)
    except (PrepareError, ManifestError) as e:
        print(f"audiossl prepare {args.corpus}: error: {e}", file=sys.stderr)
        return 2
    # Each skipped file was already logged with its reason by the preparer.
    print(result.summary())
    from audiossl.cli.status import produced_or_fail

    rows = sum(result.counts.values())
    return produced_or_fail(f"prepare {args.corpus}", rows, rows + len(result.skipped), "audio files")
