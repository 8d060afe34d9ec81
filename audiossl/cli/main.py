"""`audiossl <verb> ...`: a thin typed layer over library functions.

Each verb lives in ``audiossl/cli/<verb>.py`` with ``HELP`` (one line), ``add_arguments(parser)``
and ``run(args) -> int | None``. Modules are imported only for the verb being run, so
``audiossl --help`` is instant and a verb's heavy imports (torch, librosa) load only when needed.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from audiossl.utils.malloc import tune_malloc

# verb → (module, one-line help). Verbs whose module is None are not built yet: they are
# listed so users see the whole tool, and say which issue delivers them.
VERBS: dict[str, tuple[str | None, str]] = {
    "synth": ("audiossl.cli.synth", "generate the offline demo corpus (speech + music) with labels"),
    "prepare": ("audiossl.cli.prepare", "turn a corpus on disk (or a directory / wav.scp) into manifests"),
    "validate": ("audiossl.cli.validate", "check audio files and report every bad one with its reason"),
    "features": ("audiossl.cli.features", "compute MFCC / fbank / CQT (or model layer) features into a sharded store"),
    "kmeans": ("audiossl.cli.kmeans", "fit k-means on features, label a corpus, measure label quality [HuBERT issue #3]"),
    "tokenizer": ("audiossl.cli.tokenizer", "train acoustic tokenizers (BEATs VQ, MERT RVQ) and label a corpus with them"),
    "pretrain": ("audiossl.cli.pretrain", "pretrain HuBERT / BEATs / MERT on fairseq2's trainer [issue #3]"),
    "extract": ("audiossl.cli.extract", "extract hidden states of any upstream to npy / hdf5 / ark"),
    "export": ("audiossl.cli.export", "export a checkpoint to HF transformers or fairseq format"),
    "export-manifest": ("audiossl.cli.export_manifest", "export a manifest to another toolkit's format (lhotse CutSet)"),
    "bench": ("audiossl.cli.bench", "SUPERB-style evaluation: frozen upstream, weighted layers, task heads"),
    "report": ("audiossl.cli.report", "one-page report of an experiment directory: curves, PNMI, bench CIs, compute, claims"),
}


class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    pass


def _top_help() -> str:
    width = max(map(len, VERBS))
    lines = ["usage: audiossl [-h] [--version] <verb> [args...]", "", "verbs:"]
    for verb, (module, help_) in VERBS.items():
        lines.append(f"  {verb:<{width}}  {help_}" + ("" if module else "  (not built yet)"))
    lines += ["", "Run `audiossl <verb> --help` for a verb's options (defaults shown)."]
    return "\n".join(lines)


def make_parser(verb: str) -> tuple[argparse.ArgumentParser, object]:
    module_name, help_ = VERBS[verb]
    module = importlib.import_module(module_name)
    parser = argparse.ArgumentParser(
        prog=f"audiossl {verb}", description=(module.__doc__ or help_).strip(), formatter_class=_Formatter
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    module.add_arguments(parser)
    return parser, module


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in {"-h", "--help", "help"}:
        print(_top_help())
        return 0
    if argv[0] == "--version":
        from audiossl import __version__

        print(f"audiossl {__version__}")
        return 0
    verb = argv[0]
    if verb not in VERBS:
        print(f"audiossl: unknown verb {verb!r}\n\n{_top_help()}", file=sys.stderr)
        return 2
    if VERBS[verb][0] is None:
        print(f"audiossl {verb}: not built yet — {VERBS[verb][1]}", file=sys.stderr)
        return 2
    parser, module = make_parser(verb)
    args = parser.parse_args(argv[1:])
    setup_logging(args.verbose)
    tune_malloc()
    try:
        rc = module.run(args)
    except KeyboardInterrupt:
        print(f"audiossl {verb}: interrupted", file=sys.stderr)
        return 130
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
