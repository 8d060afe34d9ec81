"""``tools/bench/pretrain.py --trainer``: the real trainer step of a recipe (fairseq2 Trainer, data
reader, metrics, optimizer, gradient clipping), timed the way the training log times it.

Each repeat trains ``2 × steps`` steps from scratch with ``log_every = steps`` and reports the second
window (the first holds warm-up: allocator, oneDNN kernel selection), read from the run's
``metrics/train.jsonl``: audio-seconds per second per device, the batch size, and the model FLOP/s
as a fraction of the fp32 GEMM rate this process measures (:func:`audiossl.models.flops.gemm_peak`,
2048³, on the same threads). The fraction is computed here from the logged audio-s/s, so the same
command also measures code that predates the "Of GEMM Peak" metric (before/after comparisons:
point ``PYTHONPATH`` at the other checkout). Without ``--manifest-dir`` a synthetic corpus shaped
like the demo's (1.1-5 s clips, random labels shaped as the family's) is written to a temporary
directory. Repeats report min / median / max: the machine may be shared. The last column, audio
seconds per CPU-second of the process in the same window, is what one busy core would deliver on an
idle machine: with ``OMP_NUM_THREADS=1`` it compares code and batch sizes even under load.
glibc malloc is tuned as ``audiossl`` tunes it at start-up (``audiossl.utils.malloc``); set
``AUDIOSSL_MALLOC_TUNING=0`` to time glibc's defaults.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

SR = 16000


def synthetic_corpus(root: Path, model, family, label_rate: float | None, num_clips: int = 96, seed: int = 0) -> Path:
    """Write ``num_clips`` noisy tones of 1.1-5 s (three quarters at least 2 s, as the demo's clips) at the
    model's sample rate with random labels at ``label_rate`` (None: twice the frame rate, like MFCC
    k-means at 100 Hz for HuBERT's 50 Hz) and the model's codebooks and classes:
    ``root/train.tsv`` + ``train.km`` (+ sidecar; none for a family without targets, e.g. data2vec2).
    Returns ``root``."""
    from audiossl.audio.io import save_audio
    from audiossl.data.frame_labels import LabelInfo, write_frame_labels
    from audiossl.data.manifest import Manifest, Row, write_manifest
    from audiossl.models.families import num_codebooks

    sr, enc = model.cfg.sample_rate, model.encoder
    rate = label_rate or 2 * enc.frame_rate
    books, classes = num_codebooks(family, model.cfg), getattr(model.cfg, "num_classes", None)
    if getattr(family, "AUDIO_ONLY", False):
        classes = None  # trained on audio alone (data2vec2, the tokenizers): no label file
    rng = np.random.default_rng(seed)
    lengths = np.where(rng.random(num_clips) < 0.25, rng.uniform(1.1, 2.0, num_clips), rng.uniform(2.0, 5.0, num_clips))
    rows, labels = [], []
    for i, sec in enumerate(lengths):
        n = int(sec * sr)
        t = np.arange(n) / sr
        wav = 0.3 * np.sin(2 * np.pi * (120 + 5 * i) * t) + 0.05 * rng.standard_normal(n)
        save_audio(root / "wav" / f"utt{i}.wav", wav.astype(np.float32), sr)
        rows.append(Row(f"wav/utt{i}.wav", n))
        if classes is None:
            continue
        count = round(enc.num_frames(n) * rate / enc.frame_rate)
        labels.append(rng.integers(0, classes, (count, books) if books > 1 else count))
    write_manifest(Manifest(root, rows), root / "train.tsv")
    if classes is None:
        return root
    info = LabelInfo(float(rate), classes, {"kind": "bench-random"}, **({"num_codebooks": books} if books > 1 else {}))
    write_frame_labels(root / "train.km", labels, info)
    return root


def run_once(recipe: Path, manifest_dir: Path, labels: str, steps: int, overrides: list[str], out: Path) -> dict:
    """Train ``2 × steps`` steps; the second metrics window of ``out/metrics/train.jsonl``."""
    from fairseq2.device import Device
    from fairseq2.gang import create_fake_gangs

    from audiossl.pretrain.config import load_config
    from audiossl.pretrain.trainer import RunPaths, run_pretraining
    from audiossl.pretrain.unit import PretrainTrainUnit

    cfg = load_config(recipe, [
        f"max_steps={2 * steps}", f"log_every={steps}", f"checkpoint_every={2 * steps}", "validate_every=null",
        "tensorboard=false", *overrides,
    ])

    clocks: list[tuple[float, float]] = []  # (wall, process CPU) at each metrics publish
    publish = PretrainTrainUnit.process_metric_values

    def timed(self, values):
        clocks.append((time.perf_counter(), time.process_time()))
        return publish(self, values)

    PretrainTrainUnit.process_metric_values = timed  # type: ignore[method-assign]
    try:
        run_pretraining(cfg, RunPaths(manifest_dir, "train", None if labels == "none" else labels, out), gangs=create_fake_gangs(Device("cpu")))
    finally:
        PretrainTrainUnit.process_metric_values = publish  # type: ignore[method-assign]
    rows = [json.loads(line) for line in (out / "metrics" / "train.jsonl").read_text().splitlines()]
    (w0, c0), (w1, c1) = clocks[-2:]
    # Audio of the window over the CPU time the process used in it: the rate one busy core would give
    # on an idle machine (with 1 thread; with more it also counts spin-waiting threads).
    rows[-1]["cpu_rate"] = float(rows[-1]["Audio s/s/device"]) * (w1 - w0) / max(c1 - c0, 1e-9)
    return rows[-1]


def _gemm_peak() -> float:
    """fp32 2048³ matmul FLOP/s, best of 5 (:func:`audiossl.models.flops.gemm_peak`; the same probe inline
    for a checkout that predates it)."""
    try:
        from audiossl.models.flops import gemm_peak
    except ImportError:
        a, b, best = torch.ones(2048, 2048), torch.ones(2048, 2048), float("inf")
        for i in range(6):
            t0 = time.perf_counter()
            a @ b
            best = min(best, time.perf_counter() - t0) if i else best
        return 2 * 2048**3 / best
    return gemm_peak("cpu", n=2048, repeats=5, budget_s=float("inf"))


def run(recipe: Path, manifest_dir: Path | None, labels: str, steps: int, repeats: int, overrides: list[str]) -> dict:
    """Print one line per repeat and a summary; returns the summary (audio-s/s and GEMM fractions)."""
    import logging

    from audiossl.pretrain.config import load_config
    from audiossl.pretrain.trainer import build_model, family_of
    from audiossl.utils.malloc import tune_malloc

    print(f"glibc malloc tuning: {'on' if tune_malloc() else 'off'}")
    logging.getLogger("fairseq2").setLevel(logging.WARNING)
    logging.getLogger("audiossl").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="bench_trainer_") as tmp:
        cfg = load_config(recipe, overrides)
        if manifest_dir is None and cfg.model.family == "hubert" and "num_classes" not in cfg.model.overrides:
            overrides = ["model.num_classes=100", *overrides]  # as the demo's MFCC k-means
            cfg = load_config(recipe, overrides)
        model, model_cfg = build_model(cfg)
        if manifest_dir is None:
            corpus = synthetic_corpus(Path(tmp) / "corpus", model, family_of(cfg), cfg.data.label_rate)
            manifest_dir, labels = corpus, "km" if (corpus / "train.km").is_file() else "none"
        flops = family_of(cfg).train_flops_per_second(model_cfg, cfg.data.max_sample_size)
        del model
        peak = _gemm_peak()
        print(f"{recipe} ({cfg.model.family}-{cfg.model.size}), data.max_tokens={cfg.data.max_tokens}, "
              f"{torch.get_num_threads()} threads; {flops / 1e9:.3f} training GFLOP per audio-second; "
              f"fp32 GEMM peak {peak / 1e9:.1f} GFLOP/s (2048³ matmul, measured now)")
        print(f"{'repeat':>6} {'batch':>6} {'audio-s/s':>10} {'GFLOP/s':>8} {'of GEMM peak':>13} {'window s':>9} {'audio-s/CPU-s':>14}")
        rates, cpu_rates = [], []
        for r in range(repeats):
            row = run_once(recipe, manifest_dir, labels, steps, overrides, Path(tmp) / f"run{r}")
            rate = float(row["Audio s/s/device"])
            rates.append(rate)
            cpu_rates.append(row["cpu_rate"])
            print(f"{r:>6} {row.get('Batch Size', float('nan')):>6.1f} {rate:>10.1f} {rate * flops / 1e9:>8.1f} "
                  f"{100 * rate * flops / peak:>12.1f}% {row.get('Lapse Time', float('nan')):>9.1f} {row['cpu_rate']:>14.1f}")
    summary = {"min": min(rates), "median": statistics.median(rates), "max": max(rates)}
    print("audio-s/s  min {min:.1f}  median {median:.1f}  max {max:.1f}".format(**summary)
          + f"   (median = {100 * summary['median'] * flops / peak:.1f}% of the GEMM peak)")
    print(f"audio-s per CPU-second  min {min(cpu_rates):.1f}  median {statistics.median(cpu_rates):.1f}  max {max(cpu_rates):.1f}")
    return {**summary, "gemm_frac_median": summary["median"] * flops / peak, "gflop_per_audio_s": flops / 1e9,
            "cpu_rate_median": statistics.median(cpu_rates)}
