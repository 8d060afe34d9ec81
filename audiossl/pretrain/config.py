"""Run configuration for `audiossl pretrain`: one dataclass, loaded from a recipe YAML, then
``key=value`` overrides (dotted keys reach into ``model.`` / ``optim.`` / ...; values are parsed as
YAML, so ``optim.lr=1e-4``, ``model.num_classes=500`` and ``amp=bf16`` all do what they say).
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

import yaml

log = logging.getLogger(__name__)
_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


class ConfigError(ValueError):
    """A recipe or override that cannot be used; the message names the key and the fix."""


@dataclass
class ModelSection:
    family: str = "hubert"
    """Model family: ``hubert`` | ``beats`` | ``mert`` | ``wavlm`` (:mod:`audiossl.models.families`)."""
    size: str = "tiny"
    """Builder name in the family's ``CONFIGS`` (HuBERT: ``tiny`` | ``base`` | ``large`` | ``xlarge``)."""
    overrides: dict[str, Any] = field(default_factory=dict)
    """Model config fields to change, e.g. ``{num_classes: 500, mask_prob: 0.8}``."""


@dataclass
class DataSection:
    max_tokens: int = 1_400_000
    """Samples per device per batch, padding included (fairseq ``max_tokens``)."""
    max_sample_size: int = 250_000
    """Longer utterances are randomly cropped to this many samples (fairseq ``max_sample_size``)."""
    min_sample_size: int = 32_000
    """Shorter utterances are left out (fairseq ``min_sample_size``)."""
    label_rate: float | None = None
    """Expected label frame rate in Hz (fairseq ``label_rate``); None = accept the sidecar's rate."""
    num_workers: int = 4
    """DataLoader worker processes per rank."""
    num_accumulate: int = 1
    """Batches per optimizer step (gradient accumulation, fairseq ``update_freq``)."""
    batching: str = "bucket"
    """``bucket``: duration-bucketed batches padded to their longest item (attention gets a key-padding
    mask) | ``crop_to_shortest``: the same batches, every item randomly cropped to the batch's shortest
    on the frame grid (fairseq HuBERT's default): rectangular batches, attention without a mask."""


@dataclass
class OptimSection:
    lr: float = 5e-4
    """Peak learning rate."""
    betas: tuple[float, float] = (0.9, 0.98)
    """AdamW betas (fairseq ``adam_betas``)."""
    eps: float = 1e-6
    """AdamW epsilon (fairseq ``adam_eps``)."""
    weight_decay: float = 0.01
    """AdamW weight decay."""
    warmup_steps: int = 32_000
    """Linear warmup steps (fairseq ``warmup_updates``)."""
    final_lr: float = 0.0
    """LR at ``max_steps`` after polynomial decay."""
    power: float = 1.0
    """Polynomial decay power (1 = linear, fairseq ``polynomial_decay``)."""
    max_grad_norm: float = 10.0
    """Gradient clipping norm (fairseq ``clip_norm``)."""


@dataclass
class PretrainConfig:
    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    optim: OptimSection = field(default_factory=OptimSection)
    max_steps: int = 400_000
    """Optimizer steps (fairseq ``max_update``)."""
    stop_after_steps: int | None = None
    """End this process after this many steps of *this* process (checkpointed there) while the LR
    schedule still targets ``max_steps``; run the same command again to continue (time-limited jobs)."""
    checkpoint_every: int = 10_000
    """Save a resumable checkpoint every N steps (and at the end)."""
    keep_last_checkpoints: int | None = 2
    """Delete older checkpoints beyond this many (None keeps all)."""
    validate_every: int | None = None
    """Validation loss on the valid split every N steps (None: only at the end)."""
    log_every: int = 100
    """Log and record metrics every N steps (checkpoint/validate intervals must be multiples)."""
    stop_check_every: int | None = None
    """With more than one process: agree on a SIGTERM/SIGINT stop every N steps (None = ``log_every``,
    where the metrics already sync the host). A signal takes effect within N steps, on every rank at
    the same step; smaller N stops sooner but adds a collective + host read every N steps."""
    seed: int = 1
    """Seed for model init, masks, crops and batch order."""
    amp: str = "auto"
    """``auto`` | ``bf16`` | ``fp16`` | ``fp32``. ``auto``: bf16 autocast on GPU and on CPUs that multiply
    bf16 in hardware (AVX512-BF16 or AMX: HuBERT-tiny trains 1.47x faster, ``tools/bench/pretrain.py
    --trainer``), fp32 on other CPUs (bf16 is emulated there). Weights and optimizer stay fp32."""
    data_parallelism: str = "ddp"
    """``ddp`` | ``fsdp`` (used when more than one process is launched)."""
    fsdp_version: str = "v2"
    """FSDP implementation (``v1`` | ``v2``)."""
    find_unused_parameters: bool | None = None
    """DDP ``find_unused_parameters``; None = on exactly when the model uses LayerDrop (a dropped
    layer's parameters get no gradient in that step, which plain DDP refuses)."""
    max_consecutive_nonfinite: int = 20
    """Steps with NaN/inf loss or gradients are skipped (weights and optimizer state untouched) and
    counted; after this many in a row the run stops with a message (the last checkpoint is intact)."""
    peak_tflops: float | None = None
    """Peak dense TFLOP/s per device for MFU; None = look it up from the device name."""
    gemm_peak_probe: bool = True
    """On CPU, measure the fp32 GEMM rate once at startup (< 1 s) and log the model FLOP/s as a fraction
    of it ("Of GEMM Peak"); False: that metric is n/a."""
    tensorboard: bool = True
    """Write TensorBoard event files under OUT/tb."""

    def to_dict(self) -> dict:
        d = asdict(self)
        d["optim"]["betas"] = list(self.optim.betas)
        return d


def _from_dict(cls, d: dict, where: str):
    if not isinstance(d, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(d).__name__}")
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(d) - set(known))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; known keys: {sorted(known)}")
    kwargs = {}
    defaults = cls()
    for name, value in d.items():
        current = getattr(defaults, name)
        kwargs[name] = _from_dict(type(current), value, f"{where}.{name}") if is_dataclass(current) else _coerce(value, current, f"{where}.{name}")
    obj = cls(**kwargs)
    if hasattr(obj, "betas"):
        obj.betas = tuple(float(b) for b in obj.betas)
    return obj


def _coerce(value: Any, default: Any, where: str) -> Any:
    """YAML 1.1 reads ``1e-4`` as a string; fix numbers by the type of the field's default."""
    try:
        if isinstance(default, bool) or default is None or value is None:
            return value
        if isinstance(default, float) and isinstance(value, (str, int)):
            return float(value)
        if isinstance(default, int) and isinstance(value, (str, float)):
            if float(value) != int(float(value)):
                raise ValueError
            return int(float(value))
    except ValueError:
        raise ConfigError(f"{where}: {value!r} is not a {type(default).__name__}") from None
    return value


def load_config(path: str | os.PathLike | None, overrides: list[str] | None = None) -> PretrainConfig:
    """Recipe YAML (or defaults when ``path`` is None) with ``key=value`` overrides applied."""
    raw: dict = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"{path}: recipe not found (see recipes/hubert/*.yaml)")
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: not valid YAML: {e}") from None
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"override {item!r}: expected key=value, e.g. optim.lr=1e-4")
        key, value = item.split("=", 1)
        node = raw
        parts = key.strip().split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {p} is not a section")
        # model.<field> that is not a ModelSection field goes into model.overrides
        if parts[0] == "model" and len(parts) == 2 and parts[1] not in {f.name for f in fields(ModelSection)}:
            node = raw.setdefault("model", {}).setdefault("overrides", {})
        parsed = yaml.safe_load(value)
        if isinstance(parsed, str) and _NUMBER.fullmatch(parsed.strip()):
            parsed = float(parsed)  # 1e-4 (YAML 1.1 wants 1.0e-4)
        node[parts[-1]] = parsed
    cfg = _from_dict(PretrainConfig, raw, str(path) if path else "config")
    validate(cfg)
    return cfg


def validate(cfg: PretrainConfig) -> None:
    d = cfg.data
    if d.max_sample_size > d.max_tokens:
        raise ConfigError(
            f"data.max_sample_size={d.max_sample_size} exceeds data.max_tokens={d.max_tokens}: a single crop "
            f"would not fit a batch; lower max_sample_size or raise max_tokens."
        )
    if d.batching not in ("bucket", "crop_to_shortest"):
        raise ConfigError(f"data.batching must be 'bucket' or 'crop_to_shortest', got {d.batching!r}")
    if d.min_sample_size > d.max_sample_size:
        raise ConfigError(f"data.min_sample_size={d.min_sample_size} > data.max_sample_size={d.max_sample_size}")
    if cfg.max_steps <= 0 or cfg.log_every <= 0 or cfg.checkpoint_every <= 0:
        raise ConfigError("max_steps, log_every and checkpoint_every must be >= 1")
    if cfg.stop_check_every is not None and cfg.stop_check_every < 1:
        raise ConfigError(f"stop_check_every={cfg.stop_check_every} must be >= 1 (or null = log_every)")
    if cfg.checkpoint_every % cfg.log_every:
        raise ConfigError(f"checkpoint_every={cfg.checkpoint_every} must be a multiple of log_every={cfg.log_every}")
    if cfg.validate_every is not None and cfg.validate_every % cfg.log_every:
        raise ConfigError(f"validate_every={cfg.validate_every} must be a multiple of log_every={cfg.log_every}")
    if cfg.stop_after_steps is not None and cfg.stop_after_steps % cfg.checkpoint_every:
        raise ConfigError(
            f"stop_after_steps={cfg.stop_after_steps} must be a multiple of checkpoint_every={cfg.checkpoint_every} "
            f"so the run stops on a checkpoint"
        )
    if cfg.max_consecutive_nonfinite < 1:
        raise ConfigError("max_consecutive_nonfinite must be >= 1")
    if cfg.amp not in {"auto", "bf16", "fp16", "fp32"}:
        raise ConfigError(f"amp={cfg.amp!r}: choose auto, bf16, fp16 or fp32")
    if cfg.data_parallelism not in {"ddp", "fsdp"}:
        raise ConfigError(f"data_parallelism={cfg.data_parallelism!r}: choose ddp or fsdp")
    if cfg.optim.warmup_steps >= cfg.max_steps and cfg.max_steps > 1:
        # fairseq2's PolynomialDecayLR needs num_steps > warmup (short smoke runs of a big recipe).
        log.warning("optim.warmup_steps=%d >= max_steps=%d; using warmup_steps=%d", cfg.optim.warmup_steps, cfg.max_steps, cfg.max_steps - 1)
        cfg.optim.warmup_steps = cfg.max_steps - 1
