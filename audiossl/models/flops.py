"""Peak FLOP/s and model-FLOPs utilisation (MFU), shared by the families' analytic FLOP counts
(``audiossl.models.<family>.flops``; the counting convention is described in
:mod:`audiossl.models.hubert.flops`).
"""

from __future__ import annotations

DEFAULT_CROP_SAMPLES = 160_000  # 10 s at 16 kHz; see audiossl.models.hubert.flops

# Dense bf16 tensor-core peaks (no sparsity), FLOP/s. First matching substring wins.
PEAK_BF16_FLOPS: list[tuple[str, float]] = [
    ("H200", 989e12),
    ("H100", 989e12),  # SXM; the PCIe card is 756 TF: pass peak= explicitly for it
    ("GH200", 989e12),
    ("A100", 312e12),
    ("A800", 312e12),
    ("L40S", 362e12),
    ("L4", 121e12),
    ("A10", 125e12),
    ("V100", 125e12),  # fp16 (no bf16 on Volta)
    ("4090", 165e12),
    ("MI300X", 1307e12),
]


def peak_flops(device_name: str | None = None, override: float | None = None) -> float:
    """Dense bf16 peak FLOP/s of a device (H100/H200 989e12, A100 312e12); ``override`` wins.

    ``device_name`` defaults to ``torch.cuda.get_device_name()``.
    """
    if override is not None:
        return float(override)
    if device_name is None:
        import torch

        if not torch.cuda.is_available():
            raise ValueError("no CUDA device: pass device_name or override (peak FLOP/s) to peak_flops()")
        device_name = torch.cuda.get_device_name()
    upper = device_name.upper()
    for key, peak in PEAK_BF16_FLOPS:
        if key in upper:
            return peak
    raise ValueError(
        f"unknown peak FLOP/s for device {device_name!r}; pass override=<dense bf16 FLOP/s> "
        f"(known: {', '.join(k for k, _ in PEAK_BF16_FLOPS)})"
    )


def mfu(flops_per_s: float, peak: float) -> float:
    """Model-FLOPs utilisation: achieved / peak (0.4 = 40 %)."""
    if peak <= 0:
        raise ValueError(f"peak FLOP/s must be positive, got {peak}")
    return flops_per_s / peak
