"""fairseq2 ``TrainUnit`` / ``EvalUnit`` for HuBERT masked prediction, and the metrics it reports.

Every published line carries loss, masked accuracy, audio-seconds per second per device,
padding efficiency and MFU (model FLOPs per audio-second × throughput / peak device FLOP/s).
"""

from __future__ import annotations

import time
from collections.abc import Callable, MutableMapping

import torch
from torch import Tensor, nn

import fairseq2.recipe  # noqa: F401  (must precede fairseq2.trainer: circular import otherwise)
from fairseq2.evaluator import EvalUnit
from fairseq2.metrics import Mean, MetricBag, Sum
from fairseq2.metrics.formatters import format_as_float, format_as_int, format_as_percentage, format_as_seconds
from fairseq2.metrics.recorders import MetricDescriptor, MetricDescriptorRegistry
from fairseq2.trainer import TrainUnit

from audiossl.pretrain.data import PretrainBatch

_SUMS = ("correct_masked", "num_masked", "real_samples", "padded_samples", "num_examples")


def _fmt_mfu(v: object) -> str:
    return v if isinstance(v, str) else f"{100 * float(v):.2f}%"  # type: ignore[arg-type]


def metric_descriptors() -> MetricDescriptorRegistry:
    """Display names and formats for the console log, TensorBoard and metrics JSONL."""
    d = MetricDescriptor
    return MetricDescriptorRegistry(
        [
            d("loss", "Loss", 90, format_as_float),
            d("loss_masked", "Masked CE", 95, format_as_float),
            d("feature_pen", "Feature Penalty", 110, format_as_float),
            d("masked_acc", "Masked Accuracy", 200, format_as_percentage, higher_better=True),
            d("audio_sec_per_sec", "Audio s/s/device", 250, lambda v: f"{float(v):.1f}"),  # type: ignore[arg-type]
            d("padding_eff", "Padding Efficiency", 251, format_as_percentage),
            d("mfu", "MFU", 252, _fmt_mfu),
            d("grad_norm", "Gradient Norm", 300, format_as_float),
            d("lr", "Learning Rate", 700, format_as_float),
            d("data_epoch", "Data Epoch", 490, format_as_int),
            d("batch_size", "Batch Size", 800, format_as_int),
            d("num_examples", "Examples", 820, format_as_int, log=False),
            d("data_time", "Data Time", 500, format_as_seconds, log=False),
            d("compute_time", "Compute Time", 501, format_as_seconds, log=False),
            d("lapse_time", "Lapse Time", 502, format_as_seconds),
            d("total_time", "Total Time", 505, format_as_seconds, log=False),
            d("wall_time", "Wall Time", 510, format_as_seconds, log=False),
        ]
    )


def _add_metrics(bag: MetricBag) -> None:
    for name in ("loss", "loss_masked", "feature_pen"):
        bag.add(name, Mean())
    for name in _SUMS:
        bag.add(name, Sum())


def _update_metrics(bag: MetricBag, out, batch: PretrainBatch) -> None:
    n = batch.wavs.shape[0]
    bag.get("loss", Mean).update(out.loss.detach(), weight=n)
    bag.get("loss_masked", Mean).update(out.loss_masked.detach(), weight=n)
    bag.get("feature_pen", Mean).update(out.feature_pen.detach(), weight=n)
    bag.get("correct_masked", Sum).update(out.correct_masked.detach())
    bag.get("num_masked", Sum).update(out.num_masked.detach())
    bag.get("real_samples", Sum).update(batch.real_samples)
    bag.get("padded_samples", Sum).update(batch.padded_samples)
    bag.get("num_examples", Sum).update(n)


def _derive(values: MutableMapping[str, object]) -> None:
    """Turn the raw sums into accuracy and padding efficiency (in place)."""
    correct = float(values.pop("correct_masked", 0))  # type: ignore[arg-type]
    masked = float(values.pop("num_masked", 0))  # type: ignore[arg-type]
    values["masked_acc"] = correct / masked if masked else 0.0
    real = float(values.pop("real_samples", 0))  # type: ignore[arg-type]
    padded = float(values.pop("padded_samples", 0))  # type: ignore[arg-type]
    values["padding_eff"] = real / padded if padded else 0.0
    for k in ("loss", "loss_masked", "feature_pen"):
        if isinstance(values.get(k), Tensor):
            values[k] = float(values[k])  # type: ignore[arg-type]
    values["_real_samples"] = real


class HubertTrainUnit(TrainUnit[PretrainBatch]):
    """Forward + loss of one batch; ``model`` may be wrapped in DDP/FSDP.

    ``flops_per_audio_second``: training FLOPs per second of audio (``audiossl.models.flops``);
    ``peak_flops``: dense peak FLOP/s of one device, or None when unknown (MFU then prints n/a).
    ``before_step``: called with the step number before each step (may raise to end the run).
    """

    def __init__(
        self, model: nn.Module, *, sample_rate: int, dp_size: int, flops_per_audio_second: float, peak_flops: float | None,
        before_step: Callable[[int], None] | None = None,
    ) -> None:
        self._model = model
        self._before_step = before_step
        self.sample_rate, self.dp_size = sample_rate, dp_size
        self.flops_per_audio_second, self.peak_flops = flops_per_audio_second, peak_flops
        self._t0: float | None = None
        self.last_values: dict[str, object] = {}

    def prepare_metric_bag(self, metric_bag: MetricBag) -> None:
        _add_metrics(metric_bag)

    def set_step_nr(self, step_nr: int) -> None:
        if self._before_step is not None:
            self._before_step(step_nr)
        if self._t0 is None:
            self._t0 = time.perf_counter()

    def process_batch(self, batch: PretrainBatch, metric_bag: MetricBag) -> tuple[Tensor, int | None]:
        out = self._model(batch.wavs, batch.lengths, batch.targets)
        _update_metrics(metric_bag, out, batch)
        # out.loss is already a per-frame mean; the trainer divides by the accumulation count.
        return out.loss, None

    def process_metric_values(self, values: MutableMapping[str, object]) -> None:
        _derive(values)
        now = time.perf_counter()
        elapsed = now - (self._t0 if self._t0 is not None else now)
        # The clock restarts at the next step, so validation / checkpoint time is not counted.
        self._t0 = None
        real = float(values.pop("_real_samples"))  # type: ignore[arg-type]
        # The sums are over all data-parallel ranks; report per device.
        per_device = real / self.sample_rate / self.dp_size / elapsed if elapsed > 0 else 0.0
        values["audio_sec_per_sec"] = per_device
        # Unknown peak (CPU without peak_tflops): "n/a" rather than NaN, which is not valid JSON.
        values["mfu"] = per_device * self.flops_per_audio_second / self.peak_flops if self.peak_flops else "n/a"
        self.last_values = dict(values)


class HubertEvalUnit(EvalUnit[PretrainBatch]):
    """Validation loss and masked accuracy (the model is in eval mode: no dropout, masks still drawn)."""

    def __init__(self, model: nn.Module) -> None:
        self._model = model

    @property
    def name(self) -> str | None:
        return None

    def prepare_metric_bag(self, metric_bag: MetricBag) -> None:
        _add_metrics(metric_bag)

    def process_batch(self, batch: PretrainBatch, metric_bag: MetricBag) -> None:
        with torch.no_grad():
            out = self._model(batch.wavs, batch.lengths, batch.targets)
        _update_metrics(metric_bag, out, batch)

    def process_metric_values(self, values: MutableMapping[str, object]) -> None:
        _derive(values)
        values.pop("_real_samples", None)
