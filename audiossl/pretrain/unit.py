"""fairseq2 ``TrainUnit`` / ``EvalUnit`` for every pretraining family, and the metrics they report.

Every published line carries the loss, the family's loss terms (masked CE and accuracy for the
masked-prediction families, ``extra_losses`` such as MERT's CQT MSE), audio-seconds per second
per device, the audio-seconds of the window (all ranks; JSONL ``Audio Seconds``), padding efficiency,
MFU (model FLOPs per audio-second × throughput / peak FLOP/s), the model FLOP/s themselves and, on
CPU, their fraction of the fp32 GEMM rate measured at startup (``gemm_frac``: how close the step runs
to what this machine's matmul reaches).
Which terms a family reports is declared by its ``METRICS`` / ``EXTRA_METRICS``
(:mod:`audiossl.models.families`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, MutableMapping

import torch
from torch import Tensor, nn

import audiossl.pretrain.fairseq2_trainer  # noqa: F401  (first: fairseq2.trainer without fairseq2.recipe's 3.5-s __init__)
from fairseq2.evaluator import EvalUnit
from fairseq2.metrics import Mean, MetricBag, Sum
from fairseq2.metrics.formatters import format_as_float, format_as_int, format_as_percentage, format_as_seconds
from fairseq2.metrics.recorders import MetricDescriptor, MetricDescriptorRegistry
from fairseq2.trainer import TrainUnit

from audiossl.models.transformer import seed_layerdrop
from audiossl.pretrain.data import PretrainBatch

_SUMS = ("real_samples", "padded_samples", "num_examples")
DEFAULT_METRICS = ("loss", "loss_masked", "feature_pen", "masked_acc")
"""What a masked-prediction family reports (``masked_acc`` from ``correct_masked / num_masked``)."""


def _fmt_mfu(v: object) -> str:
    return v if isinstance(v, str) else f"{100 * float(v):.2f}%"  # type: ignore[arg-type]


def metric_descriptors(extra: dict[str, str] | None = None) -> MetricDescriptorRegistry:
    """Display names and formats for the console log, TensorBoard and metrics JSONL.

    ``extra``: a family's additional loss terms, name → display name (shown after the loss).
    """
    d = MetricDescriptor
    extras = [d(name, display, 96 + i, format_as_float) for i, (name, display) in enumerate((extra or {}).items())]
    return MetricDescriptorRegistry(
        extras + [
            d("loss", "Loss", 90, format_as_float),
            d("loss_masked", "Masked CE", 95, format_as_float),
            d("feature_pen", "Feature Penalty", 110, format_as_float),
            d("masked_acc", "Masked Accuracy", 200, format_as_percentage, higher_better=True),
            d("audio_sec_per_sec", "Audio s/s/device", 250, lambda v: f"{float(v):.1f}"),  # type: ignore[arg-type]
            d("audio_sec", "Audio Seconds", 249, lambda v: f"{float(v):.1f}", log=False),  # type: ignore[arg-type]
            d("padding_eff", "Padding Efficiency", 251, format_as_percentage),
            d("mfu", "MFU", 252, _fmt_mfu),
            d("model_gflops", "Model GFLOP/s", 253, lambda v: f"{float(v):.1f}"),  # type: ignore[arg-type]
            d("gemm_frac", "Of GEMM Peak", 254, _fmt_mfu),
            d("skipped_steps", "Skipped Steps (non-finite)", 260, format_as_int),
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


def step_lengths(batch: PretrainBatch) -> Tensor | None:
    """``batch.lengths``, or None when no item is padded (``crop_to_shortest`` batches, or a bucket
    whose items happen to be equally long): the model then builds no attention mask and SDPA / flex
    run unmasked. Decided from host-side sample counts, never from the device tensor."""
    return None if batch.unpadded else batch.lengths


class _Metrics:
    """Which metrics a family reports, and how one output updates them."""

    def __init__(self, names: tuple[str, ...] = DEFAULT_METRICS, extra: tuple[str, ...] = ()) -> None:
        self.means = tuple(n for n in names if n != "masked_acc") + tuple(extra)
        self.extra = tuple(extra)
        self.accuracy = "masked_acc" in names

    def add(self, bag: MetricBag) -> None:
        for name in self.means:
            bag.add(name, Mean())
        for name in _SUMS + (("correct_masked", "num_masked") if self.accuracy else ()):
            bag.add(name, Sum())

    def update(self, bag: MetricBag, out, batch: PretrainBatch) -> None:
        n = 0 if batch.stand_in else batch.wavs.shape[0]  # a stand-in (unreadable batch) weighs nothing
        extra = getattr(out, "extra_losses", None) or {}
        for name in self.means:
            value = (extra[name] if name in self.extra else getattr(out, name)).detach().float()
            # A skipped non-finite step must not turn the window's mean into NaN (no host sync here).
            finite = torch.isfinite(value)
            bag.get(name, Mean).update(torch.where(finite, value, 0.0), weight=finite.float() * n)
        if self.accuracy and not batch.stand_in:
            bag.get("correct_masked", Sum).update(out.correct_masked.detach())
            bag.get("num_masked", Sum).update(out.num_masked.detach())
        bag.get("real_samples", Sum).update(batch.real_samples)
        bag.get("padded_samples", Sum).update(batch.padded_samples)
        bag.get("num_examples", Sum).update(n)

    def derive(self, values: MutableMapping[str, object]) -> None:
        """Turn the raw sums into accuracy and padding efficiency (in place)."""
        if self.accuracy:
            correct = float(values.pop("correct_masked", 0))  # type: ignore[arg-type]
            masked = float(values.pop("num_masked", 0))  # type: ignore[arg-type]
            values["masked_acc"] = correct / masked if masked else 0.0
        real = float(values.pop("real_samples", 0))  # type: ignore[arg-type]
        padded = float(values.pop("padded_samples", 0))  # type: ignore[arg-type]
        values["padding_eff"] = real / padded if padded else 0.0
        for k in self.means:
            if isinstance(values.get(k), Tensor):
                values[k] = float(values[k])  # type: ignore[arg-type]
        values["_real_samples"] = real


class PretrainTrainUnit(TrainUnit[PretrainBatch]):
    """Forward + loss of one batch; ``model`` may be wrapped in DDP/FSDP.

    ``metrics`` / ``extra_metrics``: what the family reports (its ``METRICS`` / ``EXTRA_METRICS``).

    ``flops_per_audio_second``: training FLOPs per second of audio (``audiossl.models.<family>.flops``);
    ``peak_flops``: dense peak FLOP/s of one device, or None when unknown (MFU then prints n/a).
    ``gemm_peak``: fp32 GEMM FLOP/s measured on this device (:func:`~audiossl.models.flops.cached_gemm_peak`),
    or None (``gemm_frac`` then prints n/a).
    ``before_step``: called with the step number before each step (may raise to end the run).
    ``seed``: the run's seed; LayerDrop decisions are drawn from ``(seed, step)`` (see
    :func:`~audiossl.models.transformer.seed_layerdrop`).

    Every submodule with a ``before_train_step(step_nr)`` method gets it called before each step
    (data2vec 2.0's EMA teacher absorbs the previous update there, once per optimizer step whatever
    the gradient accumulation).
    """

    def __init__(
        self, model: nn.Module, *, sample_rate: int, dp_size: int, flops_per_audio_second: float, peak_flops: float | None,
        before_step: Callable[[int], None] | None = None, metrics: tuple[str, ...] = DEFAULT_METRICS,
        extra_metrics: tuple[str, ...] = (), on_metrics: Callable[[dict], None] | None = None, seed: int = 0,
        gemm_peak: float | None = None,
    ) -> None:
        self._on_metrics = on_metrics
        self._seed = seed
        self._model = model
        self._metrics = _Metrics(metrics, extra_metrics)
        self._before_step = before_step
        self.sample_rate, self.dp_size = sample_rate, dp_size
        self.flops_per_audio_second, self.peak_flops, self.gemm_peak = flops_per_audio_second, peak_flops, gemm_peak
        self._t0: float | None = None
        self.last_values: dict[str, object] = {}
        self._step_hooks: list[Callable[[int], None]] | None = None

    def prepare_metric_bag(self, metric_bag: MetricBag) -> None:
        self._metrics.add(metric_bag)

    def set_step_nr(self, step_nr: int) -> None:
        if self._before_step is not None:
            self._before_step(step_nr)
        seed_layerdrop(self._model, self._seed, step_nr)
        if self._step_hooks is None:
            self._step_hooks = [m.before_train_step for m in self._model.modules() if callable(getattr(type(m), "before_train_step", None))]
        for hook in self._step_hooks:
            hook(step_nr)
        if self._t0 is None:
            self._t0 = time.perf_counter()

    def process_batch(self, batch: PretrainBatch, metric_bag: MetricBag) -> tuple[Tensor, int | None]:
        out = self._model(batch.wavs, step_lengths(batch), batch.targets)
        self._metrics.update(metric_bag, out, batch)
        # out.loss is already a per-frame mean; the trainer divides by the accumulation count.
        # A stand-in for an unreadable batch runs forward/backward (DDP/FSDP collectives) with no weight.
        return (out.loss * 0.0 if batch.stand_in else out.loss), None

    def process_metric_values(self, values: MutableMapping[str, object]) -> None:
        self._metrics.derive(values)
        now = time.perf_counter()
        elapsed = now - (self._t0 if self._t0 is not None else now)
        # The clock restarts at the next step, so validation / checkpoint time is not counted.
        self._t0 = None
        real = float(values.pop("_real_samples"))  # type: ignore[arg-type]
        # The sums are over all data-parallel ranks; report per device.
        per_device = real / self.sample_rate / self.dp_size / elapsed if elapsed > 0 else 0.0
        values["audio_sec_per_sec"] = per_device
        # Audio seen in this window over all ranks: summed over a run's lines it gives the audio
        # (and, with the family's FLOPs per audio-second, the training FLOPs) of the whole run.
        values["audio_sec"] = real / self.sample_rate
        # Unknown peak (CPU without peak_tflops): "n/a" rather than NaN, which is not valid JSON.
        achieved = per_device * self.flops_per_audio_second
        values["mfu"] = achieved / self.peak_flops if self.peak_flops else "n/a"
        values["model_gflops"] = achieved / 1e9
        values["gemm_frac"] = achieved / self.gemm_peak if self.gemm_peak else "n/a"
        self.last_values = dict(values)
        if self._on_metrics is not None:
            self._on_metrics(self.last_values)


class PretrainEvalUnit(EvalUnit[PretrainBatch]):
    """Validation loss and the family's terms (the model is in eval mode: no dropout, masks still drawn)."""

    def __init__(self, model: nn.Module, metrics: tuple[str, ...] = DEFAULT_METRICS, extra_metrics: tuple[str, ...] = ()) -> None:
        self._model = model
        self._metrics = _Metrics(metrics, extra_metrics)

    @property
    def name(self) -> str | None:
        return None

    def prepare_metric_bag(self, metric_bag: MetricBag) -> None:
        self._metrics.add(metric_bag)

    def process_batch(self, batch: PretrainBatch, metric_bag: MetricBag) -> None:
        with torch.no_grad():
            out = self._model(batch.wavs, step_lengths(batch), batch.targets)
        self._metrics.update(metric_bag, out, batch)

    def process_metric_values(self, values: MutableMapping[str, object]) -> None:
        self._metrics.derive(values)
        values.pop("_real_samples", None)
