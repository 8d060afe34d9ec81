"""Build and run fairseq2's ``Trainer`` for any pretraining family (:mod:`audiossl.models.families`), chosen by ``model.family``.

Single process on CPU or one GPU, or ``torchrun --nproc_per_node=N`` (the gangs come from the
torchrun environment; DDP by default, FSDP with ``data_parallelism=fsdp``). A run directory
``OUT`` holds::

    OUT/run_config.json          the resolved run config (a resume must match its model section) and the
                                 family's analytic training FLOPs per audio-second
    OUT/checkpoints/step_N/      fairseq2 checkpoints: model, optimizer, LR scheduler, RNG, data reader
    OUT/metrics/{train,valid}.jsonl, OUT/tb/   per-step metrics (JSONL, TensorBoard)
    OUT/checkpoint/              the final model: model.safetensors + config.json + tokenizer.json

Running the same command again resumes from the last checkpoint and continues the identical
loss trace (model, optimizer, scheduler, data position and RNG are all restored).

With N processes nothing in a step waits for the host beyond what fairseq2 itself does: SIGTERM /
SIGINT is agreed over the ranks every ``stop_check_every`` steps (default ``log_every``, where the
metrics sync anyway), so a signal stops every rank at the same step, at most K steps later; and
ranks end each data epoch together by construction (:mod:`audiossl.pretrain.data`).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

import audiossl.pretrain.fairseq2_trainer  # noqa: F401  (first: fairseq2.trainer without fairseq2.recipe's 3.5-s __init__)
from fairseq2.checkpoint import NOOP_HG_EXPORTER, StandardCheckpointManager
from fairseq2.device import Device
from fairseq2.early_stopper import NOOP_EARLY_STOPPER
from fairseq2.file_system import LocalFileSystem
from fairseq2.gang import FakeGang, Gangs, ProcessGroupGang, create_fsdp_gangs, create_parallel_gangs
from fairseq2.io import (
    TensorFileDumper,
    TensorFileDumpOptions,
    TensorFileLoader,
    TensorFileLoadOptions,
    _TorchTensorFileDumper,
    _TorchTensorFileLoader,
)
from fairseq2.metrics.recorders import (
    NOOP_METRIC_RECORDER,
    CompositeMetricRecorder,
    JsonlMetricRecorder,
    LogMetricRecorder,
    MetricRecorder,
    TensorBoardRecorder,
)
from fairseq2.optim.fp16_loss_scaler import NOOP_FP16_LOSS_SCALER, StandardFloat16LossScaler
from fairseq2.optim.lr_schedulers import PolynomialDecayLR
from fairseq2.profilers import NOOP_PROFILER
from fairseq2.utils.device_stat import NOOP_DEVICE_STAT_TRACKER
from fairseq2.utils.gc import NOOP_GARBAGE_COLLECTOR
from fairseq2.utils.progress import NOOP_PROGRESS_REPORTER
from fairseq2.utils.stopwatch import Stopwatch
from fairseq2.validator import NOOP_VALIDATOR, StandardValidator

from audiossl.data.frame_labels import read_frame_labels
from audiossl.data.label_checks import LabelCheckContext, run_label_checks, settle_from_labels
from audiossl.data.lengths import probe_lengths
from audiossl.data.manifest import read_manifest
from audiossl.models.families import FamilyError, get_family, num_codebooks
from audiossl.models.flops import peak_flops, cached_gemm_peak
from audiossl.models.transformer import uses_layerdrop
from audiossl.pretrain.config import ConfigError, PretrainConfig
from audiossl.pretrain.data import BucketBatchSampler, PretrainDataReader, PretrainDataset
from audiossl.pretrain.export import export_model
from audiossl.pretrain.health import GuardedAdamW, StopSignal, TrainingDiverged
from audiossl.pretrain.stoppable import SaveThreads, StopRun, StoppableTrainer, discard_partial_checkpoints
from audiossl.pretrain.unit import DEFAULT_METRICS, PretrainEvalUnit, PretrainTrainUnit, metric_descriptors
from audiossl.utils.cpu import has_native_bf16
from audiossl.utils.fileio import atomic_write_json

log = logging.getLogger(__name__)


@dataclass
class RunPaths:
    manifest_dir: Path
    train_split: str
    labels: str | None
    """Label extension (``<split>.<labels>``), or None for a family trained on audio alone."""
    out: Path
    valid_split: str | None = None


@dataclass
class RunResult:
    step_nr: int
    num_skipped: int
    checkpoint_dir: Path | None
    last_metrics: dict[str, Any]
    stopped_by: str | None = None
    """``None`` (finished or ``stop_after_steps``), ``"SIGTERM"`` / ``"SIGINT"`` (checkpointed, resumable)."""


class _SafeTensorFileLoader(TensorFileLoader):
    """fairseq2's loader with ``weights_only=True`` for every kind of state, not just the model."""

    def __init__(self, inner: TensorFileLoader) -> None:
        self._inner = inner

    def load(self, path: Path, options: TensorFileLoadOptions | None = None) -> dict[str, object]:
        options = options or TensorFileLoadOptions()
        options.restrict = True
        return self._inner.load(path, options)


class _Protocol2TensorFileDumper(TensorFileDumper):
    """fairseq2's dumper with pickle protocol 2 for all state (``weights_only`` cannot read protocol 5)."""

    def __init__(self, inner: TensorFileDumper) -> None:
        self._inner = inner

    def dump(self, data, file: Path, options: TensorFileDumpOptions | None = None) -> None:
        self._inner.dump(data, file, TensorFileDumpOptions(pickle_protocol=2))


def setup_gangs(data_parallelism: str = "ddp") -> Gangs:
    """Gangs from the torchrun environment (WORLD_SIZE, LOCAL_RANK), or fake gangs for one process.

    With ``fsdp`` the data-parallel gang is also the sharding gang, so checkpoints hold every shard.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
        device = Device("cuda", local_rank)
    else:
        device = Device("cpu")
    root = ProcessGroupGang.create_default_process_group(device) if world_size > 1 else FakeGang(device)
    gangs = create_parallel_gangs(root)
    if data_parallelism == "fsdp" and gangs.dp.size > 1:
        gangs = create_fsdp_gangs(gangs)
    return gangs


def family_of(cfg: PretrainConfig):
    try:
        return get_family(cfg.model.family)
    except FamilyError as e:
        raise ConfigError(f"model.family: {e}") from None


def build_model(cfg: PretrainConfig):
    """``(model, model_cfg)`` of ``cfg.model`` (family, size, overrides), initialised from ``cfg.seed``."""
    family = family_of(cfg)
    if cfg.model.size not in family.CONFIGS:
        raise ConfigError(f"model.size={cfg.model.size!r}: {cfg.model.family} sizes are {sorted(family.CONFIGS)}")
    allowed = getattr(family, "DATA_PARALLELISM", None)
    if allowed is not None and cfg.data_parallelism not in allowed:
        raise ConfigError(f"data_parallelism={cfg.data_parallelism!r}: model family {cfg.model.family} supports {', '.join(allowed)}")
    try:
        model_cfg = family.CONFIGS[cfg.model.size](**cfg.model.overrides)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"model.overrides {cfg.model.overrides}: {e}") from None
    torch.manual_seed(cfg.seed)
    return family.build_pretrain_model(model_cfg), model_cfg


def build_reader(paths: RunPaths, split: str, model, cfg: PretrainConfig, gangs: Gangs, *, train: bool) -> tuple[PretrainDataReader, Path | None]:
    """Manifest + labels → label checks → bucketed reader for this rank. Returns (reader, label path)."""
    tsv = paths.manifest_dir / f"{split}.tsv"
    manifest = read_manifest(tsv, labels=["ids"] if tsv.with_suffix(".ids").is_file() else [])
    enc = model.encoder
    lengths, problems = probe_lengths(manifest, model.cfg.sample_rate, progress=gangs.root.rank == 0)
    for p in problems:
        log.warning("skipping %s", p)
    labels, label_path, label_rate = None, None, enc.frame_rate
    if paths.labels is not None:
        label_path = paths.manifest_dir / f"{split}.{paths.labels}"
        labels, info = read_frame_labels(label_path)
        family = family_of(cfg)
        expected_rate = cfg.data.label_rate
        if expected_rate is None and getattr(family, "LABELS_AT_FRAME_RATE", False):
            expected_rate = enc.frame_rate  # codes per model frame (MERT): no silent stretching of other rates
        ctx = LabelCheckContext(
            label_path, manifest, labels, info, lengths, enc.num_frames, enc.frame_rate, model.cfg.num_classes,
            expected_rate, model_num_codebooks=num_codebooks(family, model.cfg),
        )
        run_label_checks(ctx)
        label_rate = info.frame_rate
    d = cfg.data
    dataset = PretrainDataset(
        manifest, labels, lengths, sample_rate=model.cfg.sample_rate, label_rate=label_rate, frame_rate=enc.frame_rate,
        num_frames=enc.num_frames, max_sample_size=d.max_sample_size, seed=cfg.seed,
    )
    crop = dataset.crop_lengths()
    crop[lengths < 0] = -1
    too_short = int(((lengths >= 0) & (lengths < d.min_sample_size)).sum())
    sampler = BucketBatchSampler(
        crop, d.max_tokens, seed=cfg.seed, rank=gangs.dp.rank, world_size=gangs.dp.size,
        min_length=max(1, d.min_sample_size), shuffle=train, crop_to_shortest=d.batching == "crop_to_shortest",
    )
    nb = len(sampler)
    if gangs.root.rank == 0:
        log.info(
            "%s: %d utterances, %d unreadable (skipped), %d shorter than %d samples (left out); %d batches per rank "
            "per epoch, batching %s: padding efficiency %.1f%%, audio kept %.1f%%", tsv, len(manifest), len(problems),
            too_short, d.min_sample_size, nb, d.batching, 100 * sampler.padding_efficiency(0), 100 * sampler.kept_fraction(0),
        )
    if nb == 0:
        raise ConfigError(
            f"{tsv}: no batches for rank {gangs.dp.rank} of {gangs.dp.size}: too few usable utterances "
            f"for max_tokens={d.max_tokens} (lower data.min_sample_size or use fewer processes)."
        )
    reader = PretrainDataReader(
        dataset, sampler, num_workers=d.num_workers, pin_memory=gangs.device.type == "cuda",
        num_accumulate=d.num_accumulate if train else 1, advance_epoch=train,
    )
    reader.num_unreadable = len(problems)
    return reader, label_path


def wrap_model(model: torch.nn.Module, cfg: PretrainConfig, gangs: Gangs, has_checkpoint: bool) -> torch.nn.Module:
    """Plain module on one process; DDP or FSDP (``gangs`` from :func:`setup_gangs`) otherwise."""
    model.to(gangs.device)
    if gangs.dp.size == 1:
        return model
    if cfg.data_parallelism == "ddp":
        from fairseq2.nn.ddp import to_ddp  # lazy: only a multi-rank run wraps the model

        find = cfg.find_unused_parameters
        return to_ddp(model, gangs, find_unused_parameters=uses_layerdrop(model) if find is None else find)
    from fairseq2.nn.fsdp import to_fsdp  # lazy: only a multi-rank run wraps the model

    def apply(module, wrapper):
        # Shard each transformer layer separately (overlaps their all-gathers), then the rest.
        layers = getattr(getattr(module.encoder, "encoder", None), "layers", None)
        for i, layer in enumerate(layers or []):
            layers[i] = wrapper(layer)
        return wrapper(module, reshard_after_forward=False)

    amp_dtype = _amp_dtype(cfg, gangs)
    return to_fsdp(
        model, gangs, apply, version=cfg.fsdp_version, mixed_precision_dtype=amp_dtype if amp_dtype != torch.float32 else None,
        broadcast_state=not has_checkpoint, skip_init=has_checkpoint,
    )


def _amp_dtype(cfg: PretrainConfig, gangs: Gangs) -> torch.dtype:
    if cfg.amp == "auto":
        if not getattr(family_of(cfg), "AUTO_BF16", True):
            return torch.float32  # a family that does not train under bf16 (its AUTO_BF16 says why)
        native = gangs.device.type == "cuda" or has_native_bf16()
        return torch.bfloat16 if native else torch.float32
    return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[cfg.amp]


def _check_run_dir(out: Path, cfg: PretrainConfig, model_cfg, label_path: Path | None, is_main: bool,
                   flops_per_audio_second: float | None = None) -> None:
    path = out / "run_config.json"
    record = {"run": cfg.to_dict(), "model": model_cfg.to_dict(), "label_path": str(label_path.resolve()) if label_path else None,
              # the family's analytic training FLOPs per audio-second at this crop (reports read it from here)
              "flops_per_audio_second": flops_per_audio_second}
    if path.is_file():
        old = json.loads(path.read_text())
        if old.get("model") != record["model"]:
            raise ConfigError(
                f"{path}: this run directory was started with a different model config; resume with the same "
                f"recipe and model overrides, or choose a new --out."
            )
    if is_main:
        atomic_write_json(path, record)


def _peak_flops(cfg: PretrainConfig, device: Device) -> float | None:
    if cfg.peak_tflops is not None:
        return cfg.peak_tflops * 1e12
    if device.type != "cuda":
        return None

    try:
        return peak_flops(torch.cuda.get_device_name(device))
    except ValueError as e:
        log.warning("MFU will print n/a: %s (set peak_tflops=...)", e)
        return None


def _gemm_peak(cfg: PretrainConfig, device: Device) -> float | None:
    """fp32 GEMM FLOP/s of this CPU (measured once per process, < 1 s), or None on GPU / when disabled."""
    if device.type != "cpu" or not cfg.gemm_peak_probe:
        return None

    peak = cached_gemm_peak()
    log.info("CPU fp32 GEMM peak measured at startup: %.1f GFLOP/s on %d threads (Of GEMM Peak = model FLOP/s / this)", peak / 1e9, torch.get_num_threads())
    return peak


def _recorder(out: Path, cfg: PretrainConfig, gangs: Gangs) -> MetricRecorder:
    if gangs.root.rank != 0:
        return NOOP_METRIC_RECORDER
    reg = metric_descriptors(getattr(family_of(cfg), "EXTRA_METRICS", None))
    recorders: list[MetricRecorder] = [LogMetricRecorder(reg), JsonlMetricRecorder(out, LocalFileSystem(), reg)]
    if cfg.tensorboard:
        recorders.append(TensorBoardRecorder(out, reg))
    return CompositeMetricRecorder(recorders)


def run_pretraining(cfg: PretrainConfig, paths: RunPaths, gangs: Gangs | None = None) -> RunResult:
    """Train (or resume) until ``cfg.max_steps``, then export ``OUT/checkpoint``."""
    gangs = gangs or setup_gangs(cfg.data_parallelism)
    out = paths.out
    is_main = gangs.root.rank == 0
    family = family_of(cfg)
    train_labels = paths.manifest_dir / f"{paths.train_split}.{paths.labels}" if paths.labels else None
    settle_from_labels(cfg, train_labels, getattr(family, "LABELS_AT_FRAME_RATE", False))
    model, model_cfg = build_model(cfg)
    flops_per_audio_second = family.train_flops_per_second(model_cfg, cfg.data.max_sample_size)
    _check_run_dir(out, cfg, model_cfg, train_labels, is_main, flops_per_audio_second)
    train_reader, label_path = build_reader(paths, paths.train_split, model, cfg, gangs, train=True)
    valid_reader = build_reader(paths, paths.valid_split, model, cfg, gangs, train=False)[0] if paths.valid_split else None

    fs, save_threads = LocalFileSystem(), SaveThreads(4)
    ckpt = StandardCheckpointManager(
        out, gangs, fs, _SafeTensorFileLoader(_TorchTensorFileLoader(fs)), _Protocol2TensorFileDumper(_TorchTensorFileDumper(fs)), save_threads
    )
    dp_model = wrap_model(model, cfg, gangs, ckpt.has_checkpoint(exclude_model_only=True))
    o = cfg.optim
    amp_dtype = _amp_dtype(cfg, gangs)
    if is_main and cfg.amp == "auto" and gangs.device.type == "cpu" and amp_dtype == torch.bfloat16:
        log.info("amp=auto: bf16 autocast, this CPU multiplies bf16 in hardware (amp=fp32 to opt out; "
                 "Of GEMM Peak stays against the fp32 peak)")
    if is_main and cfg.amp == "auto" and not getattr(family_of(cfg), "AUTO_BF16", True):
        log.info("amp=auto: fp32, model family %s does not train under bf16 (see its AUTO_BF16)", cfg.model.family)
    # fp16 runs skip overflowing steps through the loss scaler; everything else through GuardedAdamW.
    optim_cls = torch.optim.AdamW if amp_dtype == torch.float16 else GuardedAdamW
    optimizer = optim_cls(
        dp_model.parameters(), lr=o.lr, betas=o.betas, eps=o.eps, weight_decay=o.weight_decay, fused=True,
    )
    scheduler = PolynomialDecayLR(optimizer, cfg.max_steps, o.warmup_steps, power=o.power, final_lr=o.final_lr)
    scaler = StandardFloat16LossScaler(gangs) if amp_dtype == torch.float16 else NOOP_FP16_LOSS_SCALER
    first_step: list[int] = []

    unit_step = [0]

    def before_step(step_nr: int) -> None:
        unit_step[0] = step_nr
        if not first_step:
            first_step.append(step_nr)
        if cfg.stop_after_steps is not None and step_nr - first_step[0] >= cfg.stop_after_steps:
            ckpt.maybe_complete_save_operation(blocking=True)  # commit the checkpoint of the last step first
            raise StopRun(step_nr - 1)

    metrics = tuple(getattr(family, "METRICS", DEFAULT_METRICS))
    extra_metrics = tuple(getattr(family, "EXTRA_METRICS", {}))
    family_hook = getattr(family, "on_metrics", None)

    def on_metrics(values: dict) -> None:
        if isinstance(optimizer, GuardedAdamW):
            total, longest = optimizer.pop_longest_run()
            values["skipped_steps"] = total
            if longest >= cfg.max_consecutive_nonfinite:
                raise TrainingDiverged(
                    f"{longest} consecutive steps had NaN/inf loss or gradients (up to step {unit_step[0]}); "
                    f"their updates were skipped and the run is stopped. The checkpoints in {out / 'checkpoints'} "
                    f"hold only finite weights: lower optim.lr, raise optim.warmup_steps or check the data, then "
                    f"resume with the same command (max_consecutive_nonfinite={cfg.max_consecutive_nonfinite})."
                )
            if total:
                log.warning("%d step(s) so far skipped for NaN/inf loss or gradients", total)
        if family_hook is not None:
            family_hook(values)

    unit = PretrainTrainUnit(
        dp_model, sample_rate=model_cfg.sample_rate, dp_size=gangs.dp.size, before_step=before_step,
        flops_per_audio_second=flops_per_audio_second, peak_flops=_peak_flops(cfg, gangs.device),
        metrics=metrics, extra_metrics=extra_metrics, on_metrics=on_metrics, seed=cfg.seed,
        gemm_peak=_gemm_peak(cfg, gangs.device),
    )
    recorder = _recorder(out, cfg, gangs)
    wall_watch = Stopwatch()
    wall_watch.start()
    validator = NOOP_VALIDATOR
    if valid_reader is not None:
        validator = StandardValidator(
            units=[PretrainEvalUnit(dp_model, metrics, extra_metrics)], data_readers=[valid_reader], gangs=gangs, amp=amp_dtype != torch.float32,
            amp_dtype=amp_dtype, score_metric_descriptor=metric_descriptors().maybe_get("loss"), checkpoint_manager=ckpt,
            hg_exporter=NOOP_HG_EXPORTER, metric_recorder=recorder, profiler=NOOP_PROFILER,
            device_stat_tracker=NOOP_DEVICE_STAT_TRACKER, wall_watch=wall_watch, progress_reporter=NOOP_PROGRESS_REPORTER,
            seed=cfg.seed + 7,
        )
    stop_signal = StopSignal()
    trainer = StoppableTrainer(
        stop_signal=stop_signal, dp_gang=gangs.dp, stop_check_every=cfg.stop_check_every or cfg.log_every,
        model=dp_model, unit=unit, data_reader=train_reader, gangs=gangs, amp=amp_dtype != torch.float32,
        amp_dtype=amp_dtype, optimizer=optimizer, lr_scheduler=scheduler, fp16_loss_scaler=scaler, validator=validator,
        early_stopper=NOOP_EARLY_STOPPER, checkpoint_manager=ckpt, hg_exporter=NOOP_HG_EXPORTER, metric_recorder=recorder,
        garbage_collector=NOOP_GARBAGE_COLLECTOR, profiler=NOOP_PROFILER, device_stat_tracker=NOOP_DEVICE_STAT_TRACKER,
        wall_watch=wall_watch, progress_reporter=NOOP_PROGRESS_REPORTER, seed=cfg.seed, max_grad_norm=o.max_grad_norm,
        max_num_steps=cfg.max_steps, checkpoint_every_n_steps=cfg.checkpoint_every,
        keep_last_n_checkpoints=cfg.keep_last_checkpoints, publish_metrics_every_n_steps=cfg.log_every,
        validate_every_n_steps=cfg.validate_every if valid_reader is not None else None,
        validate_after_n_steps=0,
    )
    exported: list[Path] = []

    def export_final(args) -> None:
        # Runs on every rank right after the final checkpoint, while the gangs are still up
        # (gathering a full state dict is a collective under FSDP).
        if args.step_nr < cfg.max_steps:
            return
        state = _full_state_dict(dp_model, gangs)
        if is_main:
            exported.append(export_model(model, model_cfg, out / "checkpoint", label_path, step_nr=args.step_nr, state=state))

    trainer.register_checkpoint_save_hook(export_final)
    stopped, stopped_by = False, None
    try:
        with stop_signal:
            trainer.run()
    except StopRun as e:
        stopped, stopped_by = True, e.signal_name
        why = e.signal_name or "stop_after_steps"
        log.info("stopped after step %d (%s), checkpoint saved; run the same command to continue", e.step_nr, why)
    except BaseException:
        if not stop_signal.forced:
            raise
        # The second Ctrl-C may land in torch.save, whose writer turns it into a RuntimeError (and
        # fairseq2 into "not picklable"): it is still an interrupt.
        raise KeyboardInterrupt from None
    finally:
        trainer.close()
        if stop_signal.forced and is_main:
            discard_partial_checkpoints(out / "checkpoints", save_threads)
    export_dir = exported[0] if exported else None
    if is_main and export_dir is None and not stopped and trainer.step_nr >= cfg.max_steps and gangs.sdp.size == 1:
        # Resumed a run that had already finished: the model was restored, export it now.
        export_dir = export_model(model, model_cfg, out / "checkpoint", label_path, step_nr=trainer.step_nr)
    if export_dir is not None:
        log.info("exported the final model to %s", export_dir)
    step = trainer.step_nr - 1 if stopped and stopped_by is None else trainer.step_nr
    if is_main:
        log.info("done at step %d; %d utterance(s) skipped as unreadable", step, train_reader.num_skipped)
    return RunResult(step, train_reader.num_skipped, export_dir, unit.last_values, stopped_by)


def _full_state_dict(dp_model: torch.nn.Module, gangs: Gangs) -> dict | None:
    """Unsharded CPU state dict of the wrapped model (None = use the plain module as is)."""
    if gangs.dp.size == 1 or not gangs.sdp.size > 1:
        return None
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict  # lazy: heavy distributed modules; only with a process group

    return get_model_state_dict(dp_model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
