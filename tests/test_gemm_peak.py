"""The "Of GEMM Peak" training metric: model FLOP/s over the fp32 GEMM rate measured at startup (CPU)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from audiossl.models.flops import cached_gemm_peak, gemm_peak
from audiossl.pretrain.unit import PretrainTrainUnit, metric_descriptors


def test_gemm_probe_is_short_cached_and_leaves_the_global_rng_alone():
    state = torch.get_rng_state()
    t0 = time.perf_counter()
    first = cached_gemm_peak()
    assert first > 1e8  # any CPU that runs torch does more than 0.1 GFLOP/s
    assert torch.equal(torch.get_rng_state(), state)  # masks and dropout of the run are unchanged
    t1 = time.perf_counter()
    assert cached_gemm_peak() == first  # measured once per process and thread count
    assert time.perf_counter() - t1 < 0.01
    assert t1 - t0 < 5.0  # generous: the probe's own budget is 0.4 s, a shared machine may stretch it
    assert 1e8 < gemm_peak("cpu", n=256, repeats=2) < 1e14


def _unit(gemm: float | None) -> PretrainTrainUnit:
    return PretrainTrainUnit(nn.Linear(2, 2), sample_rate=16000, dp_size=1, flops_per_audio_second=4e8, peak_flops=None, gemm_peak=gemm)


def _publish(unit: PretrainTrainUnit, seconds_of_audio: float) -> dict:
    unit.set_step_nr(1)
    time.sleep(0.05)
    values = {"loss": 1.0, "loss_masked": 1.0, "feature_pen": 0.0, "correct_masked": 1, "num_masked": 2,
              "real_samples": seconds_of_audio * 16000, "padded_samples": seconds_of_audio * 16000, "num_examples": 1}
    unit.process_metric_values(values)
    return values


def test_fraction_of_a_known_peak_and_na_without_one():
    values = _publish(_unit(2e9), seconds_of_audio=0.1)  # 0.1 s of audio in >= 0.05 s: <= 2 audio-s/s
    rate = values["audio_sec_per_sec"]
    assert 0 < rate <= 2.0
    assert values["model_gflops"] == pytest.approx(rate * 0.4)
    assert values["gemm_frac"] == pytest.approx(rate * 4e8 / 2e9)
    assert 0 < values["gemm_frac"] <= 1
    assert values["mfu"] == "n/a"  # MFU is against a datasheet bf16 peak, unknown on CPU
    none = _publish(_unit(None), seconds_of_audio=0.1)
    assert none["gemm_frac"] == "n/a" and none["model_gflops"] > 0
    reg = metric_descriptors()
    assert reg.maybe_get("gemm_frac").display_name == "Of GEMM Peak"
    assert reg.maybe_get("gemm_frac").formatter(0.25) == "25.00%" and reg.maybe_get("gemm_frac").formatter("n/a") == "n/a"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    from audiossl.audio.io import save_audio
    from audiossl.data.frame_labels import LabelInfo, write_frame_labels
    from audiossl.data.manifest import Manifest, Row, write_manifest

    d = tmp_path_factory.mktemp("gemm_corpus")
    rng = np.random.default_rng(0)
    rows, labels = [], []
    for i, n in enumerate([8000, 9600, 8800, 9600]):
        save_audio(d / f"u{i}.wav", (0.1 * rng.standard_normal(n)).astype(np.float32), 16000)
        rows.append(Row(f"u{i}.wav", n))
        labels.append(rng.integers(0, 10, n // 160))
    write_manifest(Manifest(d, rows), d / "train.tsv")
    write_frame_labels(d / "train.km", labels, LabelInfo(100.0, 10, {"kind": "test"}))
    return d


@pytest.mark.parametrize("probe", [True, False])
def test_training_log_reports_the_fraction_on_cpu(corpus, tmp_path, probe):
    from fairseq2.device import Device
    from fairseq2.gang import create_fake_gangs

    from audiossl.pretrain.config import load_config
    from audiossl.pretrain.trainer import RunPaths, run_pretraining

    cfg = load_config(None, [
        "model.size=tiny", "model.num_classes=10", "data.max_tokens=20000", "data.max_sample_size=9600",
        "data.min_sample_size=4000", "data.num_workers=0", "max_steps=2", "optim.warmup_steps=1",
        "checkpoint_every=2", "log_every=2", "tensorboard=false", f"gemm_peak_probe={str(probe).lower()}",
    ])
    v = run_pretraining(cfg, RunPaths(corpus, "train", "km", tmp_path), gangs=create_fake_gangs(Device("cpu"))).last_metrics
    row = json.loads((tmp_path / "metrics" / "train.jsonl").read_text().splitlines()[-1])
    assert row["Model GFLOP/s"] == pytest.approx(v["model_gflops"]) and v["model_gflops"] > 0
    if probe:
        assert v["gemm_frac"] == pytest.approx(v["model_gflops"] * 1e9 / cached_gemm_peak())
        assert 0 < v["gemm_frac"] <= 1 and row["Of GEMM Peak"] == pytest.approx(v["gemm_frac"])
    else:
        assert v["gemm_frac"] == "n/a" and row["Of GEMM Peak"] == "n/a"
