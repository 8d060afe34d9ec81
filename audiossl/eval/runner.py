"""The one generic train / select-on-dev / test loop for every bench task.

Features come from the cache (``[frames, layers, dim]`` per utterance, or pooled ``[1, layers, dim]``);
the :class:`~audiossl.eval.featurizer.Featurizer` mixes the layers and the task's head predicts. What
differs between tasks is only the :class:`Objective` (targets, loss, decoding, metric), chosen by the
spec's ``objective``. CTC decoding is greedy (best path) while training and on dev; the ``asr`` task
(CTC over ``.ltr`` letters, WER) is also decoded on test with a lexicon-constrained beam search and a
word n-gram LM (:mod:`audiossl.eval.ctc_decode`), reported as ``wer_lm`` / ``cer_lm``. Test evaluation
also returns per-item statistics (:class:`~audiossl.eval.confidence.Items`) for confidence intervals.
"""

from __future__ import annotations

import copy
import importlib
import logging
import math
import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from audiossl.data.frame_labels import LabelError
from audiossl.eval import metrics as M
from audiossl.eval.batching import collate, frame_budget, make_batches
from audiossl.eval.confidence import Items
from audiossl.eval.ctc_decode import (
    DecodeConfig,
    LexiconLMDecoder,
    build_lexicon,
    read_lexicon,
    greedy,
    char_errors,
    word_errors,
)
from audiossl.eval.featurizer import Featurizer
from audiossl.eval.heads import build_head
from audiossl.eval.lm import arpa_unigrams
from audiossl.eval.splits import SplitData
from audiossl.eval.tasks import TaskSpec, ctc_tile, read_trials
from audiossl.utils.cpu import has_native_bf16

log = logging.getLogger(__name__)


@dataclass
class RunConfig:
    lr: float = 1e-3
    epochs: int = 20
    device: str = "cpu"
    seed: int = 0
    grad_clip: float = 1.0
    label_subsample: int = 1
    """frame tasks: keep every k-th label (100 Hz labels, 50 Hz upstream → 2)"""
    lm: str | None = None
    """word LM (ARPA / KenLM binary) for the lexicon beam search of word-level CTC tasks (asr); None = greedy only"""
    decode: DecodeConfig = field(default_factory=DecodeConfig)
    workdir: str | None = None
    """where the decoder's lexicon file is written"""
    amp: str = "fp32"
    """``fp32`` or ``bf16``: autocast of the training forward (the loss and the evaluation stay fp32)"""


@dataclass
class RunResult:
    dev: float
    test: dict[str, float]
    best_epoch: int
    curve: list[dict] = field(default_factory=list)
    layer_weights: list[float] = field(default_factory=list)
    state: dict[str, torch.Tensor] = field(default_factory=dict)
    items: Items | None = None
    """per-test-item statistics of the test metrics (confidence intervals, paired tests)"""


# -- objectives -----------------------------------------------------------------------------------


class Objective:
    """Targets, loss, predictions and metric of one objective kind; ``vocab`` comes from train."""

    def __init__(self, spec: TaskSpec, train: SplitData, cfg: RunConfig) -> None:
        self.spec, self.cfg = spec, cfg
        self.vocab = sorted({t for lab in train.labels for t in self.tokens(lab)})
        if not self.vocab:
            raise LabelError(f"{train.label_file}: no labels in the training split")
        self.index = {t: i for i, t in enumerate(self.vocab)}

    def tokens(self, label: str) -> list[str]:
        return [label.strip()]

    @property
    def out_dim(self) -> int:
        return len(self.vocab)

    def target(self, split: SplitData, i: int, frames: int):
        return self.index.get(split.labels[i].strip(), -100)

    def collate(self, targets: list) -> torch.Tensor:
        return torch.tensor(targets, dtype=torch.long)

    def loss(self, head, x, lengths, lengths_cpu, targets) -> torch.Tensor:
        return F.cross_entropy(head(x, lengths), targets, ignore_index=-100)

    def predict(self, head, x, lengths, lengths_cpu) -> list:
        return [self.vocab[k] for k in head(x, lengths).argmax(-1).tolist()]

    def score(self, split: SplitData, preds: list) -> dict[str, float]:
        refs = [l.strip() for l in split.labels]
        if self.spec.metric == "key":
            return {"key": M.key_weighted_score(refs, preds), "acc": M.accuracy(refs, preds)}
        return {"acc": M.accuracy(refs, preds)}

    def items(self, split: SplitData, preds: list) -> Items:
        """Per-item statistics of :meth:`score`'s metrics (see :class:`~audiossl.eval.confidence.Items`)."""
        refs = [l.strip() for l in split.labels]
        one = np.ones(len(refs))
        ratio = {"acc": (np.array([r == p for r, p in zip(refs, preds)], dtype=np.float64), one)}
        if self.spec.metric == "key":
            ratio["key"] = (np.array([M.key_score(r, p) for r, p in zip(refs, preds)]), one)
        return Items(list(split.ids), ratio)


class CTCObjective(Objective):
    """Token sequences (``.phn`` phones, ``.ltr`` letters); class 0 is the CTC blank.

    An upstream slower than ``spec.ctc_tile_rate`` has its frames tiled ``self.tile`` times first
    (:func:`~audiossl.eval.tasks.ctc_tile`): CTC needs at least one frame per token.
    """

    def __init__(self, spec: TaskSpec, train: SplitData, cfg: RunConfig) -> None:
        super().__init__(spec, train, cfg)
        self.tile = ctc_tile(spec, float(train.store.meta.get("frame_rate") or 0.0))

    def _tiled(self, x, lengths, lengths_cpu):
        """``[B, T, ...]`` → ``[B, k·T, ...]``, each frame ``k`` times; valid frames stay first (``k·n`` of them)."""
        k = self.tile
        if k == 1:
            return x, lengths, lengths_cpu
        return x.repeat_interleave(k, dim=1), lengths * k, lengths_cpu * k

    def tokens(self, label: str) -> list[str]:
        return label.split()

    @property
    def out_dim(self) -> int:
        return len(self.vocab) + 1

    def target(self, split, i, frames):
        return torch.tensor([self.index[t] + 1 for t in self.tokens(split.labels[i]) if t in self.index], dtype=torch.long)

    def collate(self, targets):
        return (torch.cat(targets), torch.tensor([len(t) for t in targets], dtype=torch.long))

    def loss(self, head, x, lengths, lengths_cpu, targets):
        x, lengths, _ = self._tiled(x, lengths, lengths_cpu)
        logp = head(x, lengths).log_softmax(-1)
        flat, tlens = targets
        return F.ctc_loss(logp.transpose(0, 1), flat, lengths, tlens.to(lengths.device), blank=0, zero_infinity=True)

    @property
    def word_level(self) -> bool:
        """Letters with word boundaries scored by WER (asr): decoded into words, LM decoding possible."""
        return self.spec.metric == "wer"

    def enable_lm(self, train: SplitData) -> None:
        """Decode with the lexicon + LM beam search from now on (test time); no-op without ``cfg.lm``."""
        if not (self.word_level and self.cfg.lm):
            return
        words = [w for lab in train.labels for w in M.letters_to_words(self.tokens(lab))]
        lex = build_lexicon(words + arpa_unigrams(self.cfg.lm), self.vocab)
        if self.cfg.decode.lexicon:
            lex = {**read_lexicon(self.cfg.decode.lexicon, self.vocab), **lex}
        workdir = Path(self.cfg.workdir or ".")
        workdir.mkdir(parents=True, exist_ok=True)
        self.lm_decoder = LexiconLMDecoder(self.vocab, lex, self.cfg.lm, workdir, self.cfg.decode)

    def predict(self, head, x, lengths, lengths_cpu):
        x, lengths, lengths_cpu = self._tiled(x, lengths, lengths_cpu)
        logits = head(x, lengths)
        best = logits.detach().cpu()
        out = [[self.vocab[k - 1] for k in greedy(best[b], n)] for b, n in enumerate(lengths_cpu.tolist())]
        dec = getattr(self, "lm_decoder", None)
        if dec is None:
            return out
        return list(zip(out, dec(best.log_softmax(-1), lengths_cpu)))

    def score(self, split, preds):
        it = self.items(split, preds)
        return {m: it.value(m) for m in it.ratio}

    def items(self, split, preds):
        refs = [self.tokens(l) for l in split.labels]
        greedy_preds = [p[0] if isinstance(p, tuple) else p for p in preds]
        if not self.word_level:
            n = np.array([len(r) for r in refs], dtype=np.float64)
            e = np.array([M.edit_distance(r, h) for r, h in zip(refs, greedy_preds)], dtype=np.float64)
            return Items(list(split.ids), {self.spec.metric: (e, n)})
        ref_w = [M.letters_to_words(r) for r in refs]
        hyps = {"": [M.letters_to_words(h) for h in greedy_preds]}
        if preds and isinstance(preds[0], tuple):
            hyps["_lm"] = [p[1] for p in preds]
        ratio = {}
        for suffix, h in hyps.items():
            ratio["wer" + suffix] = word_errors(ref_w, h)
            ratio["cer" + suffix] = char_errors(ref_w, h)
        return Items(list(split.ids), ratio)


class FrameObjective(Objective):
    """One label per frame (``.ali``), subsampled to the upstream rate; frame accuracy."""

    TOLERANCE = 3  # Kaldi-style windows drop up to 3 trailing frames versus ceil(samples / hop)

    def tokens(self, label):
        return label.split()

    def target(self, split, i, frames):
        labs = self.tokens(split.labels[i])[:: self.cfg.label_subsample]
        if abs(len(labs) - frames) > self.TOLERANCE:
            raise LabelError(
                f"{split.label_file}:{i + 1} ({split.ids[i]}): {len(labs)} labels (after subsampling by "
                f"{self.cfg.label_subsample}) but the upstream gives {frames} frames; the labels were made "
                f"for another frame rate or another audio file."
            )
        labs = (labs + [labs[-1]] * frames)[:frames]
        return torch.tensor([self.index.get(t, -100) for t in labs], dtype=torch.long)

    def collate(self, targets):
        return nn.utils.rnn.pad_sequence(targets, batch_first=True, padding_value=-100)

    def loss(self, head, x, lengths, lengths_cpu, targets):
        logits = head(x, lengths)
        return F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=-100)

    def predict(self, head, x, lengths, lengths_cpu):
        best = head(x, lengths).argmax(-1).cpu()
        return [[self.vocab[k] for k in best[b, :n].tolist()] for b, n in enumerate(lengths_cpu.tolist())]

    def score(self, split, preds):
        correct = total = 0
        for i, p in enumerate(preds):
            ref = self.tokens(split.labels[i])[:: self.cfg.label_subsample]
            ref = (ref + [ref[-1]] * len(p))[: len(p)]
            correct += sum(a == b for a, b in zip(ref, p))
            total += len(p)
        return {"acc": 100.0 * correct / max(total, 1)}

    def items(self, split, preds):
        num, den = np.zeros(len(preds)), np.zeros(len(preds))
        for i, p in enumerate(preds):
            ref = self.tokens(split.labels[i])[:: self.cfg.label_subsample]
            ref = (ref + [ref[-1]] * len(p))[: len(p)]
            num[i], den[i] = sum(a == b for a, b in zip(ref, p)), len(p)
        return Items(list(split.ids), {"acc": (num, den)})


class MultiLabelObjective(Objective):
    """Comma-separated tags per clip; BCE; macro ROC-AUC and AP."""

    def tokens(self, label):
        return [t.strip() for t in label.split(",") if t.strip()]

    def target(self, split, i, frames):
        y = torch.zeros(len(self.vocab))
        for t in self.tokens(split.labels[i]):
            if t in self.index:
                y[self.index[t]] = 1.0
        return y

    def collate(self, targets):
        return torch.stack(targets)

    def loss(self, head, x, lengths, lengths_cpu, targets):
        return F.binary_cross_entropy_with_logits(head(x, lengths), targets)

    def predict(self, head, x, lengths, lengths_cpu):
        return list(torch.sigmoid(head(x, lengths)).cpu().numpy())

    def score(self, split, preds):
        y = np.stack([self.target(split, i, 0).numpy() for i in range(len(split.ids))])
        auc, ap = M.multilabel_auc_ap(y, np.stack(preds))
        return {"auc": auc, "ap": ap}

    def items(self, split, preds):
        y = np.stack([self.target(split, i, 0).numpy() for i in range(len(split.ids))])
        return Items(list(split.ids), multilabel=(y, np.stack(preds).astype(np.float32)))


class ASVObjective(Objective):
    """x-vector trained with AM-softmax over train speakers; dev = speaker accuracy, test = trials."""

    def loss(self, head, x, lengths, lengths_cpu, targets):
        return head.amsoftmax(head(x, lengths), targets)

    def predict(self, head, x, lengths, lengths_cpu):
        return [self.vocab[k] for k in head.amsoftmax.logits(head(x, lengths)).argmax(-1).tolist()]


OBJECTIVES = {"utt": Objective, "ctc": CTCObjective, "frame": FrameObjective, "multilabel": MultiLabelObjective, "asv": ASVObjective}
# objectives kept beside their task's metric code, imported when a spec names them
TASK_OBJECTIVES = {"diarization": "audiossl.eval.diarization:DiarizationObjective",
                   "beats": "audiossl.eval.beat_tracking:BeatObjective"}


def objective_class(kind: str):
    if kind in OBJECTIVES:
        return OBJECTIVES[kind]

    module, name = TASK_OBJECTIVES[kind].split(":")
    return getattr(importlib.import_module(module), name)


class _Model(nn.Module):
    def __init__(self, featurizer: Featurizer, head: nn.Module) -> None:
        super().__init__()
        self.featurizer, self.head = featurizer, head

    def forward(self, x, lengths):
        return self.head(self.featurizer(x), lengths)


def setup(spec: TaskSpec, train: SplitData, cfg: RunConfig, num_layers: int, layer: int | None):
    """``(objective, model wrapper, optimizer)`` for a task: featurizer + head, AdamW over both."""
    obj = objective_class(spec.objective)(spec, train, cfg)
    hidden = int(train.store.meta["extra"]["hidden_dim"])
    model = _Model(Featurizer(num_layers, layer), build_head(spec.head, hidden, obj.out_dim)).to(cfg.device)
    # foreach: one kernel per op over all tensors; PyTorch enables it by default only on CUDA, and a small
    # head's per-tensor loop is ~5 % of a CPU step
    return obj, _Wrapped(model), torch.optim.AdamW(model.parameters(), lr=cfg.lr, foreach=True)


# -- the loop ---------------------------------------------------------------------------------------


def train_and_evaluate(spec: TaskSpec, train: SplitData, dev: SplitData, test: SplitData, cfg: RunConfig,
                       num_layers: int, layer: int | None, trials: Path | None = None) -> RunResult:
    """Train head + layer weights on ``train``, keep the best epoch on ``dev``, evaluate it on ``test``."""
    torch.manual_seed(cfg.seed)
    rng = random.Random(cfg.seed)
    obj, fwd, opt = setup(spec, train, cfg, num_layers, layer)
    model, feat = fwd.model, fwd.model.featurizer
    targets = _targets(obj, train)
    sign = 1.0 if spec.higher_is_better else -1.0
    dev_key = "acc" if spec.objective == "asv" else spec.metric
    best, best_epoch, best_state, curve = -math.inf, -1, None, []
    for epoch in range(1, cfg.epochs + 1):
        batches = make_batches(train, frame_budget(spec, train), True, rng)
        loss = train_epoch(fwd, obj, opt, batches, lambda idx: collate(train, idx, spec.pooled, cfg.device), targets, cfg,
                           desc=f"{spec.name} ep{epoch}")
        d = evaluate(obj, fwd, dev, spec, cfg)[dev_key]
        curve.append({"epoch": epoch, "train_loss": loss, "dev": d})
        if sign * d > best:
            best, best_epoch = sign * d, epoch
            best_state = copy.deepcopy(model.state_dict())
    model.load_state_dict(best_state)
    if spec.objective == "asv":
        test_metrics, items = evaluate_trials(obj, fwd, test, trials, cfg, with_items=True)
    else:
        if isinstance(obj, CTCObjective):
            obj.enable_lm(train)  # the LM beam search decodes the test set only (dev selection is greedy)
        test_metrics, items = evaluate(obj, fwd, test, spec, cfg, with_items=True)
    return RunResult(sign * best, test_metrics, best_epoch, curve, feat.layer_weights(), best_state, items)


def resolve_amp(amp: str, device: str) -> str:
    """``fp32``/``bf16`` for ``--amp``: ``auto`` is bf16 on CUDA and on CPUs with native bf16, else fp32."""
    if amp not in ("fp32", "bf16", "auto"):
        raise ValueError(f"amp must be fp32, bf16 or auto, got {amp!r}")
    if amp != "auto":
        return amp
    return "bf16" if torch.device(device).type == "cuda" or has_native_bf16() else "fp32"


def _autocast(cfg: RunConfig):
    return torch.autocast(torch.device(cfg.device).type, dtype=torch.bfloat16, enabled=cfg.amp == "bf16")


def train_epoch(fwd, obj: Objective, opt, batches: list[list[int]], features, targets: list, cfg: RunConfig, desc: str = "") -> float:
    """One pass over ``batches``; ``features(idx)`` → ``(x, lengths, lengths_cpu)``. Returns the mean loss.

    The feature source is a parameter so the cache benchmark can time the same loop fed by a live
    upstream (what s3prl does) against the cache.
    """

    fwd.model.train()
    total, n = 0.0, 0
    for idx in tqdm(batches, desc=desc, leave=False):
        x, lens, lens_cpu = features(idx)
        y = _to(obj.collate([targets[i] for i in idx]), cfg.device)
        with _autocast(cfg):
            loss = obj.loss(fwd, x, lens, lens_cpu, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(fwd.model.parameters(), cfg.grad_clip)
        opt.step()
        total += float(loss.detach()) * len(idx)
        n += len(idx)
    return total / max(n, 1)


class _Wrapped:
    """Lets objectives call ``head(x, lengths)`` and ``head.amsoftmax`` on featurizer + head."""

    def __init__(self, model: _Model) -> None:
        self.model = model

    def __call__(self, x, lengths):
        return self.model(x, lengths)

    def __getattr__(self, name):
        return getattr(self.model.head, name)


def _targets(obj: Objective, split: SplitData) -> list:
    return [obj.target(split, i, split.store[u].shape[0]) for i, u in enumerate(split.ids)]


def _to(y, device):
    return tuple(t.to(device) for t in y) if isinstance(y, tuple) else y.to(device)


@torch.no_grad()
def evaluate(obj: Objective, fwd, split: SplitData, spec: TaskSpec, cfg: RunConfig, with_items: bool = False):
    """Metrics of ``split`` (``{name: value}``); with ``with_items`` also the per-item :class:`Items`."""
    fwd.model.eval()
    if spec.objective == "frame":
        _targets(obj, split)  # checks the label counts of this split too
    preds: list = [None] * len(split.ids)
    for idx in make_batches(split, frame_budget(spec, split), False, random.Random(0)):
        x, lens, lens_cpu = collate(split, idx, spec.pooled, cfg.device)
        for i, p in zip(idx, obj.predict(fwd, x, lens, lens_cpu)):
            preds[i] = p
    if with_items:
        return obj.score(split, preds), obj.items(split, preds)
    return obj.score(split, preds)


@torch.no_grad()
def evaluate_trials(obj: Objective, fwd, test: SplitData, trials: Path, cfg: RunConfig, with_items: bool = False):
    """Cosine scores of x-vector embeddings on the trial list → EER and minDCF (p_target 0.01).

    With ``with_items`` also the per-trial :class:`Items` (ids ``"utt1 utt2"``)."""
    fwd.model.eval()
    emb: dict[str, torch.Tensor] = {}
    for idx in make_batches(test, frame_budget(obj.spec, test), False, random.Random(0)):
        x, lens, _ = collate(test, idx, False, cfg.device)
        e = F.normalize(fwd(x, lens), dim=-1).cpu()
        for i, v in zip(idx, e):
            emb[test.ids[i]] = v
    scores, labels, keys, missing = [], [], [], 0
    for lab, a, b in read_trials(trials):
        if a not in emb or b not in emb:
            missing += 1
            continue
        scores.append(float(emb[a] @ emb[b]))
        labels.append(lab)
        keys.append(f"{a} {b}")
    if missing:
        log.warning("%s: %d trials skipped because one of their files was skipped", trials, missing)
    res = {"eer": M.eer(scores, labels), "min_dcf": M.min_dcf(scores, labels, 0.01), "trials": float(len(scores))}
    if with_items:
        return res, Items(keys, trials=(np.asarray(scores), np.asarray(labels, dtype=np.int64)))
    return res
