"""Corpus preparers: a corpus on disk → ``OUT/<split>.tsv`` manifests + parallel label files.

Every preparer is ``prepare_<corpus>(src, out, **options) -> PrepareResult`` and shares the
options of :class:`~audiossl.data.prepare.common.ProbeConfig` (workers, min_duration, ...).
:data:`PREPARERS` maps the CLI name to (module, function, expected layout).
"""

from __future__ import annotations

import importlib
from typing import Callable

from audiossl.data.prepare.common import PrepareError, PrepareResult, ProbeConfig

PREPARERS: dict[str, tuple[str, str, str]] = {
    "audioset": (
        "audiossl.data.prepare.audioset",
        "prepare_audioset",
        "SRC/**/{<YTID>,Y<YTID>,<YTID>_<start>[_<end>]}.<wav|flac|...> + --csv balanced_train_segments.csv ...",
    ),
    "librispeech": (
        "audiossl.data.prepare.librispeech",
        "prepare_librispeech",
        "SRC/<split>/<spk>/<chap>/<spk>-<chap>-NNNN.flac + <spk>-<chap>.trans.txt (SRC: LibriSpeech/ or one split dir)",
    ),
    "speech_commands": (
        "audiossl.data.prepare.speech_commands",
        "prepare_speech_commands",
        "SRC/<word>/<hash>_nohash_<n>.wav, SRC/_background_noise_/*.wav, validation_list.txt, testing_list.txt",
    ),
    "voxceleb1": (
        "audiossl.data.prepare.voxceleb1",
        "prepare_voxceleb1",
        "SRC/wav/<idXXXXX>/<ytid>/<nnnnn>.wav + iden_split.txt and/or veri_test.txt (in SRC or SRC/meta)",
    ),
    "esc50": (
        "audiossl.data.prepare.esc50",
        "prepare_esc50",
        "SRC/audio/<fold>-<clip>-<take>-<target>.wav + SRC/meta/esc50.csv",
    ),
    "gtzan": (
        "audiossl.data.prepare.gtzan",
        "prepare_gtzan",
        "SRC/genres[_original]/<genre>/<genre>.000NN.wav (+ optional {train,valid,test}_filtered.txt)",
    ),
    "magnatagatune": (
        "audiossl.data.prepare.magnatagatune",
        "prepare_magnatagatune",
        "SRC/annotations_final.csv (tab-separated: clip_id, 188 tags, mp3_path) + SRC/mp3/<0-9a-f>/*.mp3",
    ),
    "nsynth": (
        "audiossl.data.prepare.nsynth",
        "prepare_nsynth",
        "SRC/nsynth-{train,valid,test}/audio/<note_str>.wav + nsynth-<split>/examples.json",
    ),
    "fluent_speech_commands": (
        "audiossl.data.prepare.fluent_speech_commands",
        "prepare_fluent_speech_commands",
        "SRC/data/{train,valid,test}_data.csv (path,speakerId,transcription,action,object,location) + SRC/wavs/speakers/<spk>/*.wav",
    ),
    "diarization": (
        "audiossl.data.prepare.diarization",
        "prepare_diarization",
        "Kaldi data dirs SRC/<split>/wav.scp + rttm (or segments + utt2spk), or SRC = one such dir",
    ),
    "beats": (
        "audiossl.data.prepare.beats",
        "prepare_beats",
        "SRC/<genre>/<name>.<wav|flac|...> + <name>.beats ('<time> [<beat in bar>]' lines) beside them or in --annotations DIR",
    ),
    "dir": ("audiossl.data.prepare.generic", "prepare_dir", "SRC/**/*.{wav,flac,ogg,mp3,...} (no labels)"),
    "wav.scp": (
        "audiossl.data.prepare.generic",
        "prepare_wav_scp",
        "Kaldi SRC=wav.scp ('<uttid> <path>', no pipes) + optional text, utt2spk beside it",
    ),
    "lhotse": (
        "audiossl.data.prepare.lhotse_cuts",
        "prepare_lhotse",
        "SRC = a lhotse CutSet file (cuts_<split>.jsonl.gz: recordings + supervisions)",
    ),
}


def get_preparer(name: str) -> Callable[..., PrepareResult]:
    """The ``prepare_<corpus>`` function registered under ``name``."""
    if name not in PREPARERS:
        raise KeyError(f"unknown corpus {name!r}; known: {', '.join(PREPARERS)}")
    module, func, _ = PREPARERS[name]
    return getattr(importlib.import_module(module), func)


def prepare(name: str, src, out, **options) -> PrepareResult:
    """``prepare("esc50", SRC, OUT, workers=4)`` → :class:`PrepareResult`."""
    return get_preparer(name)(src, out, **options)


__all__ = ["PREPARERS", "PrepareError", "PrepareResult", "ProbeConfig", "get_preparer", "prepare"]
