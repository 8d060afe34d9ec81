"""Benchmark: audiossl k-means vs scikit-learn MiniBatchKMeans (fairseq's settings) vs faiss-cpu.

All three fit the same synthetic Gaussian-mixture frames (fixed seed, float32) in one run, with
the same number of CPU threads; every result is scored by the SAME inertia function on the full
data. Prints time, inertia, speed ratio vs sklearn and inertia gap vs sklearn.

    .venv/bin/python tools/bench/kmeans.py                 # 200k x 768, k=500 (minutes on 2 cores)
    .venv/bin/python tools/bench/kmeans.py --quick         # 20k x 128, k=50 (sklearn: minutes)

On a shared or busy machine use ``--threads 1``: multi-threaded BLAS/OpenMP under CPU
contention slowed every method by up to 10x in our runs and made ratios meaningless.

``--stream N`` is the scale test (issue #8): N synthetic frames are written to an on-disk
FeatureStore (float16, as the feature dumps are) shard by shard, never all in memory, then ours
fits on all of them (``fit_kmeans_store``) and labels them (``label_store``) on ``--device``,
printing frames/s for each. The peers cannot hold such data in memory, so none runs.

    python tools/bench/kmeans.py --stream 10000000 --dim 768 --k 500 --device cuda   # GPU machine
    .venv/bin/python tools/bench/kmeans.py --stream 200000 --dim 768 --k 100          # CPU, ~minutes

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
    from audiossl.tokenizers.kmeans import KMeansConfig
    from audiossl.tokenizers.kmeans_store import fit_kmeans_store

    w = FeatureWriter(tmp, kind="synthetic", dim=x.shape[1], frame_rate=50.0, shard_bytes=64 << 20)
    for i, s in enumerate(range(0, x.shape[0], 500)):  # 10 s "utterances" of 500 frames
        w.add(f"utt{i:06d}", x[s : s + 500])
    store = w.close()
    t = time.perf_counter()
    res = fit_kmeans_store(store, KMeansConfig(k=k, seed=seed, num_threads=threads, progress=False))
    return time.perf_counter() - t, res.centroids.numpy()


def write_stream_store(path: Path, n: int, dim: int, components: int, seed: int):
    """A float16 FeatureStore of ``n`` Gaussian-mixture frames in 500-frame utterances, generated piecewise."""
    from audiossl.data.feature_store import FeatureWriter

    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((components, dim)).astype(np.float32)
    weights = rng.dirichlet(np.full(components, 5.0))
    scale = rng.uniform(0.6, 1.4, size=components).astype(np.float32)
    w = FeatureWriter(path, kind="synthetic", dim=dim, frame_rate=50.0, dtype="float16")
    step = 500
    for i, s in enumerate(range(0, n, step)):
        m = min(step, n - s)
        comp = rng.choice(components, size=m, p=weights)
        x = rng.standard_normal((m, dim), dtype=np.float32) * scale[comp, None] + centres[comp]
        w.add(f"utt{i:08d}", x.astype(np.float16))
    return w.close()


def run_stream(a) -> dict:
    """Fit and label ``a.stream`` frames streamed from disk on ``a.device``; frames/s of each."""
    import torch

    from audiossl.tokenizers.kmeans import KMeansConfig
    from audiossl.tokenizers.kmeans_store import fit_kmeans_store, label_store

    with tempfile.TemporaryDirectory(prefix="kmeans_stream_") as tmp:
        t = time.perf_counter()
        store = write_stream_store(Path(tmp) / "store", a.stream, a.dim, a.components or a.k, a.seed)
        write_s = time.perf_counter() - t
        print(f"wrote {a.stream} x {a.dim} float16 frames ({store.num_frames * a.dim * 2 / 1e9:.2f} GB) in {write_s:.1f} s", flush=True)
        cfg = KMeansConfig(k=a.k, seed=a.seed, device=a.device, num_threads=a.threads, progress=True)
        _sync = torch.cuda.synchronize if a.device.startswith("cuda") else (lambda: None)
        t = time.perf_counter()
        res = fit_kmeans_store(store, cfg)
        _sync()
        fit_s = time.perf_counter() - t
        t = time.perf_counter()
        labels = label_store(store, res.centroids, device=a.device, progress=True)
        _sync()
        label_s = time.perf_counter() - t
    n = store.num_frames
    if sum(len(v) for v in labels.values()) != n:
        raise RuntimeError("label_store did not label every frame")
    device = torch.cuda.get_device_name() if a.device.startswith("cuda") else f"cpu ({a.threads} threads)"
    out = {"n": n, "dim": a.dim, "k": a.k, "device": device, "fit_s": fit_s, "label_s": label_s,
           "fit_frames_per_s": n / fit_s, "label_frames_per_s": n / label_s,
           "full_passes": cfg.iters, "inertia_per_frame": res.inertia / n}
    print(f"fit   {n} frames on {device}: {fit_s:8.1f} s = {n / fit_s:12,.0f} frames/s "
          f"(k-means++ and refinement on a subsample, then {cfg.iters} full passes from disk)")
    print(f"label {n} frames on {device}: {label_s:8.1f} s = {n / label_s:12,.0f} frames/s")
    return out


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
    p.add_argument("--stream", type=int, default=0, metavar="N",
                   help="scale test: fit + label N frames streamed from an on-disk store with ours only (0: off)")
    p.add_argument("--device", default="cpu", help="device for --stream (cpu or cuda)")
    a = p.parse_args(argv)
    if a.quick:
        a.n, a.dim, a.k = 20_000, 128, 50

    import torch

    torch.set_num_threads(a.threads)
    if a.stream:
        result = run_stream(a)
        if a.json:
            from audiossl.utils.fileio import atomic_write_json

            atomic_write_json(a.json, result)
        return 0
    methods = a.methods.split(",")

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
