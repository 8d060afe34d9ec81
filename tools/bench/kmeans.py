"""Benchmark: audiossl k-means vs scikit-learn MiniBatchKMeans (fairseq's settings) vs faiss-cpu.

All three fit the same synthetic Gaussian-mixture frames (fixed seed, float32) in one run, with
the same number of CPU threads; every result is scored by the SAME inertia function on the full
data. Prints time, inertia, speed ratio vs sklearn and inertia gap vs sklearn.

    .venv/bin/python tools/bench/kmeans.py                 # 200k x 768, k=500 (minutes on 2 cores)
    .venv/bin/python tools/bench/kmeans.py --quick         # 20k x 128, k=50 (sklearn: minutes)

On a shared or busy machine use ``--threads 1``: multi-threaded BLAS/OpenMP under CPU
contention slowed every method by up to 10x in our runs and made ratios meaningless.

Target: ours ≥ 20x faster than sklearn with inertia within 2 %. "ours (store)" streams the
frames from an on-disk FeatureStore (the path `audiossl kmeans fit` takes); "ours" fits the
same data held in memory.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def make_data(n: int, dim: int, components: int, seed: int) -> np.ndarray:
    """Gaussian mixture ``[n, dim]`` float32: unequal component sizes and spreads, shuffled."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((components, dim)).astype(np.float32)
    weights = rng.dirichlet(np.full(components, 5.0))
    comp = rng.choice(components, size=n, p=weights)
    scale = rng.uniform(0.6, 1.4, size=components).astype(np.float32)
    x = rng.standard_normal((n, dim), dtype=np.float32)
    x *= scale[comp, None]
    x += centres[comp]
    return x


def run_ours(x, k, seed, threads):
    from audiossl.tokenizers.kmeans import KMeansConfig, fit_kmeans

    t = time.perf_counter()
    res = fit_kmeans(x, KMeansConfig(k=k, seed=seed, num_threads=threads, progress=False))
    return time.perf_counter() - t, res.centroids.numpy()


def run_ours_store(x, k, seed, threads, tmp):
    from audiossl.data.feature_store import FeatureWriter
    from audiossl.tokenizers.kmeans import KMeansConfig, fit_kmeans_store

    w = FeatureWriter(tmp, kind="synthetic", dim=x.shape[1], frame_rate=50.0, shard_bytes=64 << 20)
    for i, s in enumerate(range(0, x.shape[0], 500)):  # 10 s "utterances" of 500 frames
        w.add(f"utt{i:06d}", x[s : s + 500])
    store = w.close()
    t = time.perf_counter()
    res = fit_kmeans_store(store, KMeansConfig(k=k, seed=seed, num_threads=threads, progress=False))
    return time.perf_counter() - t, res.centroids.numpy()


def run_sklearn(x, k, seed, threads):
    from sklearn.cluster import MiniBatchKMeans
    from threadpoolctl import threadpool_limits

    # Exactly fairseq's examples/hubert/simple_kmeans/learn_kmeans.py settings.
    km = MiniBatchKMeans(
        n_clusters=k, init="k-means++", max_iter=100, batch_size=10000, verbose=0, compute_labels=False,
        tol=0.0, max_no_improvement=100, init_size=None, n_init=20, reassignment_ratio=0.0, random_state=seed,
    )
    with threadpool_limits(threads):
        t = time.perf_counter()
        km.fit(x)
    return time.perf_counter() - t, km.cluster_centers_.astype(np.float32)


def run_faiss(x, k, seed, threads):
    import faiss

    faiss.omp_set_num_threads(threads)
    km = faiss.Kmeans(x.shape[1], k, seed=seed, verbose=False)  # defaults: niter=25, 256 points/centroid
    t = time.perf_counter()
    km.train(x)
    return time.perf_counter() - t, km.centroids.copy()


def main(argv=None) -> int:
    class Fmt(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
        pass

    p = argparse.ArgumentParser(description=__doc__, formatter_class=Fmt)
    p.add_argument("--n", type=int, default=200_000, help="frames")
    p.add_argument("--dim", type=int, default=768, help="feature dimension")
    p.add_argument("--k", type=int, default=500, help="clusters")
    p.add_argument("--components", type=int, default=None, help="mixture components (None: k)")
    p.add_argument("--seed", type=int, default=0, help="data and fit seed")
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="CPU threads for every method")
    p.add_argument("--quick", action="store_true", help="small smoke version: 20k x 128, k=50")
    p.add_argument("--methods", default="ours,ours-store,sklearn,faiss", help="comma-separated subset to run")
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    a = p.parse_args(argv)
    if a.quick:
        a.n, a.dim, a.k = 20_000, 128, 50
    methods = a.methods.split(",")

    import torch

    from audiossl.tokenizers.kmeans import inertia

    torch.set_num_threads(a.threads)
    x = make_data(a.n, a.dim, a.components or a.k, a.seed)
    print(f"data: {a.n} x {a.dim} float32, k={a.k}, threads={a.threads}, torch {torch.__version__}", flush=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="kmeans_bench_") as tmp:
        runners = {
            "ours": lambda: run_ours(x, a.k, a.seed, a.threads),
            "ours-store": lambda: run_ours_store(x, a.k, a.seed, a.threads, tmp),
            "sklearn": lambda: run_sklearn(x, a.k, a.seed, a.threads),
            "faiss": lambda: run_faiss(x, a.k, a.seed, a.threads),
        }
        for m in methods:
            if m not in runners:
                p.error(f"unknown method {m!r}; choose from {', '.join(runners)}")
            secs, cents = runners[m]()
            torch.set_num_threads(a.threads)
            score = inertia(x, cents)
            rows.append({"method": m, "seconds": secs, "inertia": score, "inertia_per_frame": score / a.n})
            print(f"  {m:<11} {secs:9.2f} s   inertia/frame {score / a.n:.4f}", flush=True)
    ref = next((r for r in rows if r["method"] == "sklearn"), None)
    print(f"\n{'method':<11} {'time_s':>9} {'inertia':>14} {'speedup_vs_sklearn':>19} {'inertia_gap_%':>14}")
    for r in rows:
        if ref:
            r["speedup_vs_sklearn"] = ref["seconds"] / r["seconds"]
            r["inertia_gap_pct"] = 100.0 * (r["inertia"] - ref["inertia"]) / ref["inertia"]
        sp = f"{r['speedup_vs_sklearn']:.1f}x" if ref else "-"
        gap = f"{r['inertia_gap_pct']:+.3f}" if ref else "-"
        print(f"{r['method']:<11} {r['seconds']:9.2f} {r['inertia']:14.6g} {sp:>19} {gap:>14}")
    if a.json:
        from audiossl.utils.fileio import atomic_write_json

        atomic_write_json(a.json, {"n": a.n, "dim": a.dim, "k": a.k, "threads": a.threads, "results": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
