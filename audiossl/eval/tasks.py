"""Bench task specs: which data and labels a task reads, its head, objective, metric and defaults.

One small :class:`TaskSpec` per task in :data:`TASKS`; the generic runner (:mod:`audiossl.eval.runner`)
does the rest. Splits are found under ``--data`` by trying relative paths in order: the demo
layout written by ``audiossl synth`` first (``speech/train``), then the corpus preparers' outputs
(``librispeech/train-clean-100``), then the bare split name (``--data`` pointing at one corpus).

Objectives: ``ctc`` (token sequences), ``frame`` (one label per frame, e.g. ``.ali``), ``utt``
(one class per utterance), ``multilabel`` (comma-separated tags per clip), ``asv`` (x-vector on train
speakers, cosine scoring of trials), ``diarization`` (2-speaker activity from ``.seg`` segments, PIT, DER;
:mod:`audiossl.eval.diarization`), ``beats`` (frame beat activation from ``.beats`` times, F-measure;
:mod:`audiossl.eval.beat_tracking`), ``qbe`` (no head: subsequence DTW of spoken queries over each layer's
features, layer picked on dev, MAP; :mod:`audiossl.eval.qbe`).
"""

from __future__ import annotations

import importlib
import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path

from audiossl.data.frame_labels import LabelError
from audiossl.data.manifest import ManifestError, read_manifest
from audiossl.eval.heads import HeadConfig

# metric → (higher is better, is an error rate turned into 100 − x for the overall score)
METRICS: dict[str, tuple[bool, bool]] = {
    "per": (False, True),
    "wer": (False, True),
    "eer": (False, True),
    "acc": (True, False),
    "key": (True, False),
    "auc": (True, False),
    "ap": (True, False),
    "der": (False, True),
    "beat_f": (True, False),
    "map": (True, False),
}


class BenchError(ValueError):
    """Bench input that cannot be used; raised before any training, naming the file and the fix."""


@dataclass(frozen=True)
class TaskSpec:
    name: str
    description: str
    objective: str
    """ctc | frame | utt | multilabel | asv | diarization | beats | qbe"""
    label: str
    """label file extension read beside each split manifest (``phn``, ``ltr``, ``lbl``, ``spk`` ...)"""
    metric: str
    head: HeadConfig
    train: tuple[str, ...] = ()
    dev: tuple[str, ...] = ()
    test: tuple[str, ...] = ()
    """candidate split paths relative to ``--data`` (without ``.tsv``), first existing wins"""
    folds: tuple[tuple[str, ...], ...] = ()
    """cross-validation: candidate fold groups; each fold is the test set once (ESC-50)"""
    trials: tuple[str, ...] = ()
    """ASV trial list candidates (``<1|0> <utt1> <utt2>`` per line)"""
    pooled: bool = False
    """cache mean-pooled features only (exact for mean-pool heads: pooling commutes with the weighted sum)"""
    label_rate: float | None = None
    """frame-label rate in Hz (``frame`` objective; a ``<split>.<label>.json`` sidecar overrides it)"""
    lr: float = 1e-3
    epochs: int = 20
    batch_frames: int = 8000
    """batch size as total feature frames counted at ``batch_frame_rate`` (pooled tasks: clips)"""
    batch_frame_rate: float = 50.0
    """the rate ``batch_frames`` is counted at: an upstream at another frame rate gets the same seconds of
    audio per batch (FBANK at 100 Hz: twice the frames; BEATs at 6.25 Hz: an eighth), so every row of a
    table trains its head on the same batches of clips, as SUPERB's utterance-count batches do"""
    ctc_tile_rate: float = 0.0
    """CTC tasks: an upstream slower than this rate has each frame repeated ``k = ceil(rate / upstream
    rate)`` times before the head (ESPnet's ``S3prlFrontend`` ``tile_factor``), so CTC can emit more
    tokens than the upstream has frames (BEATs at 6.25 Hz: ×8 → 50 Hz); 0 = never"""
    demo_head: HeadConfig | None = None
    demo_epochs: int | None = None
    demo_lr: float | None = None
    demo_batch_frames: int | None = None
    """the demo corpus's head (and its epochs/lr/batch) when it differs from the paper's: minutes of
    synthetic audio instead of hundreds of hours"""

    @property
    def higher_is_better(self) -> bool:
        return METRICS[self.metric][0]

    @property
    def is_error_rate(self) -> bool:
        return METRICS[self.metric][1]


def _c(dirs: tuple[str, ...], names: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(f"{d}/{n}" for d in dirs for n in names) + names


_TRAIN, _DEV, _TEST = ("train",), ("valid", "dev"), ("test",)
_KS, _NS = ("keywords", "speech_commands", "speechcommands"), ("music/notes", "nsynth")
_LS = ("speech", "librispeech", "mini_librispeech")
_IC, _SD = ("intents", "fluent_speech_commands", "fsc"), ("conversations", "diarization")
_BEAT = ("music/beats", "beats", "gtzan_beats", "ballroom")
_GENRE, _TAGS = ("music/genre", "gtzan"), ("music/tags", "mtt", "magnatagatune")
_LS_TRAIN, _LS_DEV, _LS_TEST = ("train", "train-clean-100", "train-clean-5"), ("valid", "dev-clean", "dev-clean-2"), ("test", "test-clean")

TASKS: dict[str, TaskSpec] = {
    t.name: t
    for t in [
        TaskSpec("pr", "phoneme recognition: linear CTC over phones (SUPERB PR)", "ctc", "phn", "per",
                 HeadConfig("linear"), _c(_LS, _LS_TRAIN), _c(_LS, _LS_DEV), _c(_LS, _LS_TEST), lr=1e-2, epochs=20, demo_epochs=30,
                 ctc_tile_rate=50.0),
        # demo ASR head: 1000-frame batches (~8 utterances) for 12 epochs, chosen on the demo's dev WER
        # (HuBERT-tiny it1, greedy): 38.3 % in 41 s, against 59.4 % in 95 s with 8000-frame batches for
        # 30 epochs (8 updates per epoch left it on CTC's blank plateau for 13 epochs); 1000 x 15: 32.8 %
        # in 56 s; 2000 x 20: 37.1 % in 52 s.
        TaskSpec("asr", "speech recognition: 2-layer BiLSTM CTC over characters; WER greedy and with lexicon beam search + word n-gram LM (SUPERB ASR)",
                 "ctc", "ltr", "wer", HeadConfig("bilstm", hidden=1024, num_layers=2, dropout=0.2),
                 _c(_LS, _LS_TRAIN), _c(_LS, _LS_DEV), _c(_LS, _LS_TEST), lr=1e-4, epochs=20,
                 demo_head=HeadConfig("bilstm", hidden=128, num_layers=2, dropout=0.1), demo_epochs=12, demo_lr=1e-3,
                 demo_batch_frames=1000, ctc_tile_rate=50.0),
        TaskSpec("pf", "frame phone classification from 100 Hz alignments (.ali): linear probe", "frame", "ali",
                 "acc", HeadConfig("linear"), _c(("speech",), _TRAIN), _c(("speech",), _DEV),
                 _c(("speech",), _TEST), label_rate=100.0, lr=1e-3, epochs=10),
        TaskSpec("ks", "keyword spotting: mean-pool + linear (SUPERB KS)", "utt", "lbl", "acc",
                 HeadConfig("pool_linear"), _c(_KS, _TRAIN),
                 _c(_KS, _DEV), _c(_KS, _TEST),
                 pooled=True, lr=1e-2, epochs=50, batch_frames=64),
        TaskSpec("ic", "intent classification: mean-pool + linear (SUPERB IC, Fluent Speech Commands)", "utt",
                 "lbl", "acc", HeadConfig("pool_linear"), _c(_IC, _TRAIN), _c(_IC, _DEV), _c(_IC, _TEST),
                 pooled=True, lr=1e-2, epochs=50, batch_frames=64),
        TaskSpec("er", "emotion recognition: mean-pool + linear (SUPERB ER)", "utt", "lbl", "acc",
                 HeadConfig("pool_linear"), _c(("prosody", "iemocap"), _TRAIN), _c(("prosody", "iemocap"), _DEV),
                 _c(("prosody", "iemocap"), _TEST), pooled=True, lr=1e-2, epochs=50, batch_frames=64),
        TaskSpec("sid", "speaker identification: mean-pool + linear (SUPERB SID)", "utt", "spk", "acc",
                 HeadConfig("pool_linear"), _c(("speech",), _TRAIN) + ("voxceleb1/sid_train", "sid_train"),
                 _c(("speech",), _DEV) + ("voxceleb1/sid_valid", "sid_valid"),
                 _c(("speech",), _TEST) + ("voxceleb1/sid_test", "sid_test"),
                 pooled=True, lr=1e-2, epochs=50, batch_frames=64),
        TaskSpec("asv", "speaker verification: x-vector + AM-softmax on train speakers, cosine trials, EER (SUPERB ASV)",
                 "asv", "spk", "eer", HeadConfig("xvector", hidden=512, embed_dim=512),
                 ("speech/train", "voxceleb1/asv_train", "voxceleb/asv_train", "asv_train"), ("speech/valid",),
                 ("speakers_unseen/test", "voxceleb1/asv_test", "voxceleb/asv_test", "asv_test"),
                 trials=("speakers_unseen/trials.txt", "voxceleb1/asv_trials.txt", "voxceleb/asv_trials.txt", "asv_trials.txt"),
                 lr=1e-3, epochs=20, demo_head=HeadConfig("xvector", hidden=64, embed_dim=64), demo_epochs=30),
        TaskSpec("instrument", "instrument family: pooled features + 1-hidden-layer MLP (MARBLE NSynth)", "utt",
                 "lbl", "acc", HeadConfig("pool_mlp", hidden=512), _c(_NS, _TRAIN),
                 _c(_NS, _DEV), _c(_NS, _TEST),
                 pooled=True, lr=1e-3, epochs=50, batch_frames=64),
        TaskSpec("pitch", "pitch (MIDI number): pooled features + MLP (MARBLE NSynth pitch)", "utt", "pitch",
                 "acc", HeadConfig("pool_mlp", hidden=512), _c(_NS, _TRAIN),
                 _c(_NS, _DEV), _c(_NS, _TEST),
                 pooled=True, lr=1e-3, epochs=50, batch_frames=64),
        TaskSpec("key", "key detection: pooled features + MLP, MIREX weighted score (MARBLE GiantSteps)", "utt",
                 "lbl", "key", HeadConfig("pool_mlp", hidden=512), _c(("music/keys", "giantsteps"), _TRAIN),
                 _c(("music/keys", "giantsteps"), _DEV), _c(("music/keys", "giantsteps"), _TEST),
                 pooled=True, lr=1e-3, epochs=50, batch_frames=64),
        TaskSpec("genre", "genre: pooled features + MLP, accuracy (MARBLE GTZAN; demo: synthesized styles)", "utt",
                 "lbl", "acc", HeadConfig("pool_mlp", hidden=512), _c(_GENRE, _TRAIN), _c(_GENRE, _DEV),
                 _c(_GENRE, _TEST), pooled=True, lr=1e-3, epochs=50, batch_frames=64),
        TaskSpec("tagging", "music tagging (comma-separated .tags): pooled + MLP, macro ROC-AUC and AP (MARBLE MTT)",
                 "multilabel", "tags", "auc", HeadConfig("pool_mlp", hidden=512),
                 _c(_TAGS, _TRAIN), _c(_TAGS, _DEV), _c(_TAGS, _TEST), pooled=True, lr=1e-3, epochs=50, batch_frames=64),
        TaskSpec("audioset", "audio event tagging (AudioSet .tags from `audiossl prepare audioset`): pooled + MLP, "
                 "mAP (BEATs/HEAR AudioSet)", "multilabel", "tags", "ap", HeadConfig("pool_mlp", hidden=512),
                 _c(("audioset",), _TRAIN + ("balanced_train",)), _c(("audioset",), _DEV),
                 _c(("audioset",), _TEST + ("eval",)), pooled=True, lr=1e-3, epochs=50, batch_frames=64),
        TaskSpec("esc50", "sound events: pooled + MLP, 5-fold accuracy (train 3 folds, dev 1, test 1; ESC-50)",
                 "utt", "lbl", "acc", HeadConfig("pool_mlp", hidden=512),
                 folds=tuple(_c(("esc50", "esc-50"), (f"fold{k}",)) for k in range(1, 6)),
                 pooled=True, lr=1e-3, epochs=50, batch_frames=64),
        TaskSpec("sd", "speaker diarization, 2 speakers: BiLSTM frame head, permutation-invariant BCE, DER with "
                 "collar 0 via pyannote.metrics (SUPERB SD)", "diarization", "seg", "der",
                 HeadConfig("bilstm", hidden=512, num_layers=1), _c(_SD, _TRAIN), _c(_SD, _DEV), _c(_SD, _TEST),
                 lr=1e-3, epochs=30, batch_frames=16000,
                 # the demo trains a linear PIT head: CPU LSTM backward costs ~4 s per batch of 8-s clips
                 demo_head=HeadConfig("linear"), demo_epochs=40),
        TaskSpec("beat", "beat tracking: linear frame activation, peak picking, mir_eval F-measure ±70 ms "
                 "(MARBLE GTZAN-beats / Ballroom)", "beats", "beats", "beat_f", HeadConfig("linear"),
                 _c(_BEAT, _TRAIN), _c(_BEAT, _DEV), _c(_BEAT, _TEST), lr=1e-3, epochs=30, batch_frames=16000,
                 demo_epochs=60),
        TaskSpec("qbe", "query by example: subsequence DTW (librosa) of spoken queries over one layer's features, "
                 "layer picked on dev, MAP (SUPERB QbE; SUPERB reports MTWV on QUESST)", "qbe", "kw", "map",
                 HeadConfig("linear"), (), ("qbe/valid", "qbe/dev"), ("qbe/test",), epochs=0),
    ]
}

# Label checks beyond "the file exists", run by :func:`resolve` on every split before training:
# task → "module:function(manifest, label_path)" raising LabelError naming the file and line.
LABEL_CHECKS = {
    "ic": "audiossl.eval.intents:check_labels",
    "sd": "audiossl.eval.diarization:check_labels",
    "beat": "audiossl.eval.beat_tracking:check_labels",
    "qbe": "audiossl.eval.qbe:check_labels",
}


def get_task(name: str) -> TaskSpec:
    if name not in TASKS:
        raise BenchError(f"unknown task {name!r}; known tasks: {', '.join(TASKS)}")
    return TASKS[name]


def is_demo(data: Path) -> bool:
    """``--data`` is a corpus written by ``audiossl synth`` (smaller heads and epochs then)."""
    return (Path(data) / "corpus.json").is_file()


def effective(spec: TaskSpec, data: Path, epochs: int | None = None) -> TaskSpec:
    """The spec with demo-size head/epochs/lr when ``data`` is the demo corpus, and ``--epochs`` applied."""
    if is_demo(data):
        spec = replace(spec, head=spec.demo_head or spec.head, epochs=spec.demo_epochs or spec.epochs,
                       lr=spec.demo_lr or spec.lr, batch_frames=spec.demo_batch_frames or spec.batch_frames)
    return replace(spec, epochs=epochs) if epochs and spec.epochs else spec


@dataclass
class TaskData:
    """Resolved files of one task: ``splits`` maps role (train/dev/test or fold1..) → manifest."""

    spec: TaskSpec
    splits: dict[str, Path] = field(default_factory=dict)
    trials: Path | None = None
    label_rate: float | None = None

    def folds(self) -> list[tuple[str, list[str], str, str]]:
        """``(run name, train roles, dev role, test role)``: one run, or one per fold."""
        if not self.spec.folds:
            return [("all", ["train"], "dev", "test")]
        roles = list(self.splits)
        n = len(roles)
        return [
            (roles[k], [roles[j] for j in range(n) if j not in (k, (k + 1) % n)], roles[(k + 1) % n], roles[k])
            for k in range(n)
        ]


def _find(data: Path, cands: tuple[str, ...]) -> Path | None:
    for c in cands:
        p = data / f"{c}.tsv"
        if p.is_file():
            return p
    return None


def available(data: Path) -> list[str]:
    """Tasks whose manifests exist under ``data`` (their labels are checked by :func:`resolve`)."""
    out = []
    for name, spec in TASKS.items():
        groups = spec.folds or (spec.train or spec.dev, spec.test)
        if all(_find(Path(data), g) is not None for g in groups):
            out.append(name)
    return out


def resolve(spec: TaskSpec, data: Path) -> TaskData:
    """Find the task's manifests and check labels, row counts and non-empty splits before training.

    Raises :class:`BenchError` naming the missing/empty file and how to make it.
    """
    data = Path(data)
    td = TaskData(spec)
    roles = {f"fold{k + 1}": g for k, g in enumerate(spec.folds)} if spec.folds else {"train": spec.train, "dev": spec.dev, "test": spec.test}
    for role, cands in roles.items():
        if not cands:
            continue  # a task that trains nothing (qbe) has no train split
        tsv = _find(data, cands)
        if tsv is None:
            if role == "dev" and spec.objective == "asv":
                continue  # ASV without a dev split: a slice of the train utterances is held out
            raise BenchError(
                f"task {spec.name}: no {role} manifest under {data} (looked for "
                f"{', '.join(c + '.tsv' for c in cands[:4])}, ...); run `audiossl synth` or the corpus "
                f"preparer, or pass --data pointing at the corpus directory."
            )
        try:
            m = read_manifest(tsv, labels=[spec.label] if role in ("train", "dev") or spec.objective != "asv" else [])
        except ManifestError as e:
            raise BenchError(f"task {spec.name} ({role}): {e}; task {spec.name} needs '.{spec.label}' labels beside "
                             f"every split manifest.") from None
        if len(m) == 0:
            raise BenchError(f"task {spec.name}: {role} split {tsv} is empty (0 rows); re-run the preparer for it.")
        _check_labels(spec, m)
        td.splits[role] = tsv
    if spec.objective == "asv":
        trials = next((data / t for t in spec.trials if (data / t).is_file()), None)
        if trials is None:
            raise BenchError(f"task asv: no trial list under {data} (looked for {', '.join(spec.trials)}).")
        _check_trials(trials, read_manifest(td.splits["test"], labels=[]).ids)
        td.trials = trials
    if spec.objective == "frame":
        td.label_rate = spec.label_rate
        side = Path(str(td.splits["train"].with_suffix(f".{spec.label}")) + ".json")
        if side.is_file():
            td.label_rate = float(json.loads(side.read_text())["frame_rate"])
    return td


def _check_labels(spec: TaskSpec, m) -> None:
    if spec.name not in LABEL_CHECKS:
        return
    module, func = LABEL_CHECKS[spec.name].split(":")
    try:
        getattr(importlib.import_module(module), func)(m, m.label_path(spec.label))
    except LabelError as e:
        raise BenchError(f"task {spec.name}: {e}") from None


def _check_trials(trials: Path, test_ids: list[str]) -> None:
    ids = set(test_ids)
    n = 0
    for lineno, line in enumerate(trials.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 3 or parts[0] not in ("0", "1"):
            raise BenchError(f"{trials}:{lineno}: expected '<1|0> <utt_id_1> <utt_id_2>', got {line!r}")
        for u in parts[1:]:
            if u not in ids:
                raise BenchError(f"{trials}:{lineno}: utterance {u!r} is not in the test manifest; ids are "
                                 f"manifest relpaths without extension.")
        n += 1
    if n == 0:
        raise BenchError(f"{trials}: no trials (empty file)")


def read_trials(trials: Path) -> list[tuple[int, str, str]]:
    return [(int(p[0]), p[1], p[2]) for p in (l.split() for l in trials.read_text().splitlines()) if len(p) == 3]


def ctc_tile(spec: TaskSpec, upstream_rate: float) -> int:
    """How many times each upstream frame is repeated before a CTC head (1: not at all)."""
    if spec.objective != "ctc" or spec.ctc_tile_rate <= 0 or upstream_rate <= 0:
        return 1
    return max(1, math.ceil(spec.ctc_tile_rate / upstream_rate - 1e-9))


def check_frame_rate(td: TaskData, upstream_rate: float, upstream_name: str) -> int:
    """For frame-label tasks: the label subsampling factor for this upstream (1 = same rate).

    Labels at an integer multiple of the upstream rate (100 Hz labels, 50 Hz model) are subsampled;
    any other mismatch raises :class:`BenchError` with both rates.
    """
    if td.spec.objective != "frame":
        return 1
    lr, ur = float(td.label_rate), float(upstream_rate)
    ratio = lr / ur
    if ur <= 0 or abs(ratio - round(ratio)) > 1e-6 or round(ratio) < 1:
        raise BenchError(
            f"task {td.spec.name}: labels {td.splits['train'].with_suffix('.' + td.spec.label)} are at {lr:g} Hz "
            f"but upstream {upstream_name} gives {ur:g} frames/s; frame labels need the same rate (or an integer "
            f"multiple of it). Re-align the labels at {ur:g} Hz or use an upstream at {lr:g} Hz."
        )
    return int(round(ratio))
