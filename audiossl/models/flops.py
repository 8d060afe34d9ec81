"""Peak FLOP/s and model-FLOPs utilisation (MFU), shared by the families' analytic FLOP counts
(``audiossl.models.<family>.flops``; the counting convention is described in
:mod:`audiossl.models.hubert.flops`).

Two peaks: :func:`peak_flops` is the datasheet dense bf16 peak of a GPU (MFU's denominator);
:func:`gemm_peak` is the fp32 matmul rate *measured* on this machine, the meaningful ceiling on a
CPU, where there is no datasheet figure and bf16 is mostly emulated.
"""

from __future__ import annotations

import functools
import time

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
        import torch  # lazy: keeps torch/numpy out of startup (`prepare`, `validate`, `--help` start fast)

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


def gemm_peak(device: "str | object" = "cpu", dtype: "object | None" = None, *, n: int = 2048, repeats: int = 5, budget_s: float = 0.6) -> float:
    """Measured FLOP/s of an ``n × n × n`` matmul on ``device`` in ``dtype`` (default float32): best of
    up to ``repeats`` timed runs after one warm-up, stopping early once ``budget_s`` seconds are spent.

    On CPU it runs on the current ``torch.get_num_threads()`` threads. Best-of is used because a
    shared machine can only make a run slower, never faster. Not cached: see :func:`cached_gemm_peak`.
    """
    import torch  # lazy: keeps torch/numpy out of startup (`prepare`, `validate`, `--help` start fast)

    dtype = dtype or torch.float32
    device = torch.device(device)  # type: ignore[arg-type]
    # A private generator: a probe at a run's startup must not move the global RNG (masks, dropout).
    gen = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(n, n, device=device, dtype=dtype, generator=gen)
    b = torch.randn(n, n, device=device, dtype=dtype, generator=gen)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda *_: None)
    best, start = float("inf"), time.perf_counter()
    for i in range(repeats + 1):
        sync(device)
        t0 = time.perf_counter()
        a @ b
        sync(device)
        if i:  # the first run is the warm-up (allocations, kernel selection)
            best = min(best, time.perf_counter() - t0)
        if i and time.perf_counter() - start > budget_s:
            break
    return 2 * n**3 / best


@functools.lru_cache(maxsize=8)
def _cached_cpu_gemm_peak(threads: int) -> float:
    return gemm_peak("cpu", n=1024, repeats=8, budget_s=0.4)


def cached_gemm_peak() -> float:
    """fp32 GEMM FLOP/s of this CPU at the current torch thread count, measured once per process and
    thread count (a 1024³ matmul, best of up to 8 runs, under half a second)."""
    import torch  # lazy: keeps torch/numpy out of startup (`prepare`, `validate`, `--help` start fast)

    return _cached_cpu_gemm_peak(torch.get_num_threads())
