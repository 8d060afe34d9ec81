"""``amp=auto``: bf16 autocast on GPU and on CPUs that multiply bf16 in hardware, fp32 elsewhere."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from fairseq2.device import Device
from fairseq2.gang import create_fake_gangs

from audiossl.pretrain import trainer
from audiossl.pretrain.config import load_config
from audiossl.utils.cpu import has_native_bf16


@pytest.mark.parametrize(("native", "expected"), [(True, torch.bfloat16), (False, torch.float32)])
def test_auto_follows_the_cpu(monkeypatch, native, expected):
    monkeypatch.setattr(trainer, "has_native_bf16", lambda: native)
    gangs = create_fake_gangs(Device("cpu"))
    assert trainer._amp_dtype(load_config(None, ["amp=auto"]), gangs) == expected
    assert trainer._amp_dtype(load_config(None, ["amp=fp32"]), gangs) == torch.float32  # an explicit choice wins
    assert trainer._amp_dtype(load_config(None, ["amp=bf16"]), gangs) == torch.bfloat16


def test_auto_is_fp32_for_a_family_that_does_not_train_under_bf16(monkeypatch):
    """The RVQ-VAE tokenizer diverged under bf16 (audiossl/tokenizers/rvq/family.py, AUTO_BF16)."""
    monkeypatch.setattr(trainer, "has_native_bf16", lambda: True)
    gangs = create_fake_gangs(Device("cpu"))
    rvq = Path(__file__).resolve().parents[1] / "recipes" / "mert" / "rvq_tiny.yaml"
    assert trainer._amp_dtype(load_config(rvq, ["amp=auto"]), gangs) == torch.float32
    assert trainer._amp_dtype(load_config(rvq, ["amp=bf16"]), gangs) == torch.bfloat16  # still on request


def test_native_bf16_agrees_with_the_kernel_cpu_flags():
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.is_file():
        pytest.skip("no /proc/cpuinfo (not Linux)")
    flags = set()
    for line in cpuinfo.read_text().splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            break
    assert has_native_bf16() == bool({"avx512_bf16", "amx_tile"} & flags)
