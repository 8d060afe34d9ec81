"""``run_bench``: every (upstream, task) pair → cached features → lr grid → best dev head → test.

Output directory::

    OUT/cache/<upstream>/<split>_<hash>/     feature caches (FeatureStore), reused across runs
    OUT/runs/<upstream>/<task>/result.json   one finished pair (its presence = done; resume skips it)
    OUT/runs/<upstream>/<task>/head.safetensors   best-dev head + layer weights (per fold: head_<fold>...)
    OUT/runs/<upstream>/<task>/items.npz     per-test-item statistics (bootstrap CIs, paired tests; one set
                                             per head seed with --head-seeds N)
    OUT/lm/<task>_train_3gram.arpa           ASR word LM estimated from the training transcripts (no --lm)
    OUT/results.json / results.csv / results.md / plots/*.png   (see :mod:`audiossl.eval.report`)

All data checks (labels present, splits non-empty, trial lists, frame rates) run for every pair
before the first head trains, so a bad input fails in seconds rather than hours in.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np
from safetensors.torch import save

from audiossl.eval.cache import CacheConfig, build_cache
from audiossl.eval.confidence import Items, SeedItems, confidence_intervals, task_seed
from audiossl.eval.ctc_decode import DecodeConfig
from audiossl.eval.lm import LMError, check_lm, transcript_lm
from audiossl.eval.names import slug
from audiossl.eval.qbe import run_pair
from audiossl.eval.report import write_reports
from audiossl.eval.reuse import pair_settings, reuse_pair
from audiossl.eval.runner import RunConfig, resolve_amp, train_and_evaluate
from audiossl.eval.splits import concat_splits, load_split
from audiossl.eval.tasks import BenchError, TaskData, available, check_frame_rate, ctc_tile, effective, get_task, resolve
from audiossl.upstream.load import load_upstream
from audiossl.utils.fileio import atomic_open, atomic_write_json

log = logging.getLogger(__name__)


@dataclass
class BenchConfig:
    epochs: int | None = None
    """override every task's default number of epochs"""
    lr_grid: tuple[float, ...] | None = None
    """learning rates tried per task, chosen on dev (None = the task's default lr)"""
    layer: int | None = None
    """use this single upstream layer instead of the learnable weighted sum"""
    device: str = "cpu"
    seed: int = 0
    add_fbank: bool = True
    """always add the FBANK baseline row"""
    max_batch_seconds: float | None = None
    """padded audio per upstream batch while caching"""
    lm: str | None = None
    """ASR word LM (ARPA or KenLM binary) for the lexicon beam search; None = a Kneser-Ney 3-gram estimated
    from the training transcripts; "none" = greedy decoding only"""
    lexicon: str | None = None
    """extra ASR lexicon (``word<TAB>letters |``) added to the training words (and the LM's ARPA unigrams)"""
    lm_weight: float = 2.0
    word_score: float = 0.0
    beam_size: int = 50
    bootstrap: int = 1000
    """bootstrap resamples of the test items for the 95 % confidence intervals (0 = none)"""
    amp: str = "fp32"
    """head training precision: ``fp32``, ``bf16`` autocast, or ``auto`` (bf16 where the device multiplies it in
    hardware: :func:`audiossl.eval.runner.resolve_amp`); evaluation is always fp32"""
    reuse: tuple[str, ...] = ()
    """other bench output dirs whose finished pairs with equal settings are copied instead of rerun
    (:mod:`audiossl.eval.reuse`)"""
    report: bool = True
    """write results.md/json/csv and the plots (False: only the pairs, for a later call to tabulate:
    several processes filling one table share the report step)"""
    head_seeds: int = 1
    """heads trained per (task, lr), with seeds ``seed .. seed + head_seeds - 1``: the lr is chosen on the
    mean dev metric, the test value is the mean over seeds and the CI resamples items × seeds
    (:mod:`audiossl.eval.confidence`); 1 = one head, an items-only bootstrap. QbE trains no head: unaffected"""


def run_bench(upstreams: list[str], tasks: list[str] | None, data: str | Path, out: str | Path,
              cfg: BenchConfig | None = None, loader: Callable = load_upstream) -> list[dict]:
    """Run the bench and write the reports; returns the result records (one per pair).

    ``loader(spec, device)`` builds an upstream (default :func:`audiossl.upstream.load.load_upstream`).
    """
    cfg = cfg or BenchConfig()
    data, out = Path(data), Path(out)
    ups = list(dict.fromkeys(upstreams))
    if cfg.head_seeds < 1:
        raise BenchError(f"--head-seeds {cfg.head_seeds}: need at least 1 head per task")
    if cfg.add_fbank and "fbank" not in ups:
        ups.append("fbank")
    if tasks:
        tds = [resolve(effective(get_task(n), data, cfg.epochs), data) for n in tasks]
    else:  # every task with data; one whose labels are incomplete is reported and left out
        tds = []
        for n in available(data):
            try:
                tds.append(resolve(effective(get_task(n), data, cfg.epochs), data))
            except BenchError as e:
                log.warning("leaving out task %s: %s", n, e)
    if not tds:
        raise BenchError(f"no bench task data found under {data}; run `audiossl synth OUT` or a corpus preparer.")
    lms = _prepare_lms(tds, out, cfg)
    models = {}
    for u in ups:  # load all upstreams and check rates up front
        up = loader(u, device=cfg.device)
        # the one-layer feature baselines ignore --layer (their only layer is the feature)
        layer = None if u in ("fbank", "mfcc") else cfg.layer
        if layer is not None and not 0 <= layer < up.num_layers:
            raise BenchError(f"--layer {layer}: upstream {u} has layers 0..{up.num_layers - 1}")
        for td in tds:
            check_frame_rate(td, up.frame_rate, u)
        models[u] = (up, layer)
    records = []
    for u, (up, layer) in models.items():
        for td in tds:
            records.append(_run_pair(u, up, layer, td, out, cfg, lms.get(td.spec.name)))
    if cfg.report:
        write_reports(records, out, cfg.bootstrap, cfg.seed)
    return records


def _rel(path: str | None, out: Path) -> str | None:
    """``path`` relative to the output dir when inside it (records stay equal across output dirs)."""
    if path is None:
        return None
    try:
        return str(Path(path).resolve().relative_to(out.resolve()))
    except ValueError:
        return str(path)


def _word_ctc(td: TaskData) -> bool:
    return td.spec.objective == "ctc" and td.spec.metric == "wer"


def _prepare_lms(tds: list[TaskData], out: Path, cfg: BenchConfig) -> dict[str, str]:
    """Task → word LM path for the word-level CTC tasks (asr); the user's LM is loaded once here, before
    any training, so a file KenLM cannot read fails in seconds with its name."""
    lms = {}
    for td in tds:
        if not _word_ctc(td) or (cfg.lm or "").lower() == "none":
            continue
        try:
            if cfg.lm:
                lms[td.spec.name] = str(check_lm(cfg.lm))
            else:
                ltr = td.splits["train"].with_suffix(f".{td.spec.label}")
                lm = transcript_lm(ltr, out / "lm" / f"{td.spec.name}_train_3gram.arpa", order=3)
                lms[td.spec.name] = str(check_lm(lm))
            if cfg.lexicon and not Path(cfg.lexicon).is_file():
                raise LMError(f"lexicon {cfg.lexicon}: no such file")
        except LMError as e:
            raise BenchError(f"task {td.spec.name}: {e}") from None
    return lms


def _mean_of_seeds(runs: list):
    """One :class:`~audiossl.eval.runner.RunResult` for the heads of several seeds: the dev and test metrics
    are their means; head, curve, layer weights and items are the first seed's (the harness keeps all
    seeds' items). A single run is returned as it is."""

    if len(runs) == 1:
        return runs[0]
    return replace(runs[0], dev=float(np.mean([r.dev for r in runs])),
                   test={m: float(np.mean([r.test[m] for r in runs])) for m in runs[0].test})


def _run_pair(u: str, up, layer: int | None, td: TaskData, out: Path, cfg: BenchConfig, lm: str | None = None) -> dict:
    spec = td.spec
    run_dir = out / "runs" / slug(u) / spec.name
    done = run_dir / "result.json"
    if done.is_file():
        rec = json.loads(done.read_text())
        if spec.objective != "qbe" and rec.get("head_seeds", 1) != cfg.head_seeds:
            raise BenchError(f"{done}: this pair was run with --head-seeds {rec.get('head_seeds', 1)}, not "
                             f"{cfg.head_seeds}; use another --out, or delete {run_dir} to rerun it.")
        log.info("%s / %s: done already (%s), skipping", u, spec.name, done)
        return rec
    amp = resolve_amp(cfg.amp, cfg.device)
    settings = pair_settings(u, td, layer, cfg, amp, lm)
    if cfg.reuse:
        rec = reuse_pair(cfg.reuse, Path("runs") / slug(u) / spec.name, run_dir, settings)
        if rec is not None:
            return rec
    if spec.objective == "qbe":
        rec = run_pair(u, up, layer, td, out, cfg)
        rec["settings"] = settings
        atomic_write_json(done, rec)
        return rec
    ccfg = CacheConfig(layer=layer, pooled=spec.pooled, max_batch_seconds=cfg.max_batch_seconds, device=cfg.device)
    splits, skipped = {}, 0
    for role, tsv in td.splits.items():
        store = build_cache(up, u, tsv, out / "cache" / slug(u), ccfg)
        skipped += len(store.meta["extra"].get("skipped", []))
        lab = spec.label if (spec.objective != "asv" or role != "test") else None
        splits[role] = load_split(store, tsv, lab)
        if not splits[role].ids:
            raise BenchError(f"task {spec.name}: every file of {tsv} was skipped as bad audio; nothing to {role} on.")
    if spec.objective == "asv" and "dev" not in splits:
        tr = splits["train"]
        splits["train"] = tr.subset([i for i in range(len(tr.ids)) if i % 10])
        splits["dev"] = tr.subset([i for i in range(len(tr.ids)) if i % 10 == 0])
    grid = list(cfg.lr_grid or (spec.lr,))
    sub = check_frame_rate(td, up.frame_rate, u)
    tile = ctc_tile(spec, float(up.frame_rate))
    if tile > 1:
        log.info("%s / %s: %g frames/s is below the CTC head's %g: each frame repeated %d times", u, spec.name,
                 up.frame_rate, spec.ctc_tile_rate, tile)
    folds = []
    for fold, train_roles, dev_role, test_role in td.folds():
        train = splits[train_roles[0]] if len(train_roles) == 1 else concat_splits([splits[r] for r in train_roles])
        per_lr, seeds_at = {}, {}
        for lr in grid:
            runs = []
            for k in range(cfg.head_seeds):
                rcfg = RunConfig(lr=lr, epochs=spec.epochs, device=cfg.device,
                                 seed=cfg.seed + k, label_subsample=sub, lm=lm, workdir=str(run_dir), amp=amp,
                                 decode=DecodeConfig(lm=lm, lexicon=cfg.lexicon, lm_weight=cfg.lm_weight,
                                                     word_score=cfg.word_score, beam_size=cfg.beam_size))
                log.info("%s / %s%s: lr %g, %d epochs%s", u, spec.name, "" if fold == "all" else f" ({fold})", lr,
                         spec.epochs, f", head seed {cfg.seed + k}" if cfg.head_seeds > 1 else "")
                runs.append(train_and_evaluate(spec, train, splits[dev_role], splits[test_role], rcfg,
                                               int(up.num_layers), layer, td.trials))
            per_lr[lr], seeds_at[lr] = _mean_of_seeds(runs), runs
        sign = 1 if spec.higher_is_better else -1
        lr_best = max(grid, key=lambda lr: sign * per_lr[lr].dev)
        best = per_lr[lr_best]
        ckpt = run_dir / ("head.safetensors" if fold == "all" else f"head_{fold}.safetensors")
        with atomic_open(ckpt, "wb") as f:
            f.write(save({k: v.detach().contiguous().cpu() for k, v in best.state.items()},
                         metadata={"task": spec.name, "upstream": u, "lr": str(lr_best)}))
        folds.append({"fold": fold, "lr": lr_best, "dev": best.dev, "test": best.test, "best_epoch": best.best_epoch,
                      "lr_grid": {str(k): v.dev for k, v in per_lr.items()}, "curve": best.curve,
                      "layer_weights": best.layer_weights, "items": best.items, "seed_runs": seeds_at[lr_best]})
    seed_runs = [f.pop("seed_runs") for f in folds]  # [fold][seed]
    items = [f.pop("items") for f in folds]
    test = {k: float(np.mean([f["test"][k] for f in folds])) for k in folds[0]["test"]}
    ci, items_file = {}, None
    if cfg.head_seeds > 1 and all(r.items is not None for runs in seed_runs for r in runs):
        items = [SeedItems([Items.concat([runs[k].items for runs in seed_runs]) for k in range(cfg.head_seeds)])]
    if all(i is not None for i in items):
        items = items[0] if isinstance(items[0], SeedItems) else Items.concat(items)
        items_file = run_dir / "items.npz"
        items.save(items_file)
        items_file = str(items_file.relative_to(out))
        if cfg.bootstrap > 0:
            ci = confidence_intervals(items, [k for k in test if k in items.metrics], n=cfg.bootstrap,
                                      seed=task_seed(spec.name, cfg.seed))
    rec = {
        "upstream": u, "upstream_name": up.name, "task": spec.name, "metric": spec.metric,
        "value": test[spec.metric], "test": test, "dev": float(np.mean([f["dev"] for f in folds])),
        "lr": folds[0]["lr"] if len(folds) == 1 else [f["lr"] for f in folds],
        "lr_grid": folds[0]["lr_grid"], "layer": layer, "layer_weights": folds[0]["layer_weights"],
        "curve": folds[0]["curve"], "folds": folds if len(folds) > 1 else [], "skipped_files": skipped,
        "head": asdict(spec.head), "epochs": spec.epochs, "frame_rate": float(up.frame_rate),
        "ci": ci, "items": items_file, "lm": _rel(lm, out),
    }
    rec["settings"] = settings
    if tile > 1:
        rec["ctc_tile"] = tile
    if amp != "fp32":
        rec["amp"] = amp
    if cfg.head_seeds > 1:
        rec["head_seeds"] = cfg.head_seeds
        rec["seeds"] = [{"seed": cfg.seed + k, "dev": float(np.mean([runs[k].dev for runs in seed_runs])),
                         "test": {m: float(np.mean([runs[k].test[m] for runs in seed_runs])) for m in test}}
                        for k in range(cfg.head_seeds)]
    atomic_write_json(done, rec)
    if skipped:
        log.warning("%s / %s: %d bad audio files were skipped", u, spec.name, skipped)
    return rec
