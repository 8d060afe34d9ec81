import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from audiossl.cli.main import main as cli
from audiossl.data.feature_store import FeatureWriter
from audiossl.data.frame_labels import read_frame_labels
from audiossl.data.manifest import Manifest, Row, write_manifest
from audiossl.tokenizers.kmeans import (
    KMeansConfig,
    assign,
    fit_kmeans,
    inertia,
    kmeans_plusplus,
    lloyd_pass,
    update_centroids,
)
from audiossl.tokenizers.kmeans_io import KMeansFileError, load_kmeans, save_kmeans
from audiossl.tokenizers.kmeans_store import StoreFrames, fit_kmeans_store

ROOT = Path(__file__).resolve().parents[1]


def _blobs(n=3000, k=6, dim=8, seed=0, spread=10.0):
    rng = np.random.default_rng(seed)
    means = rng.standard_normal((k, dim)).astype(np.float32) * spread
    y = rng.integers(0, k, n)
    return (means[y] + rng.standard_normal((n, dim)).astype(np.float32)), y, means


def _store(path, x, lengths, shard_bytes=1 << 30, kind="mfcc", extra=None):
    w = FeatureWriter(path, kind=kind, dim=x.shape[1], frame_rate=50.0, shard_bytes=shard_bytes, extra=extra)
    s = 0
    for i, n in enumerate(lengths):
        w.add(f"utt{i:03d}", x[s : s + n])
        s += n
    return w.close()


def _lengths(n, seed=1):
    rng = np.random.default_rng(seed)
    out = []
    while sum(out) < n:
        out.append(int(min(rng.integers(20, 120), n - sum(out))))
    return out


def test_nearest_matches_brute_force():
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.standard_normal((500, 16)).astype(np.float32))
    c = torch.from_numpy(rng.standard_normal((7, 16)).astype(np.float32))
    labels, d = assign(x, c, chunk_size=64)
    ref = torch.cdist(x, c) ** 2
    assert torch.equal(labels, ref.argmin(1))
    torch.testing.assert_close(d, ref.min(1).values, rtol=1e-4, atol=1e-3)
    assert inertia(x, c, chunk_size=100) == pytest.approx(float(ref.min(1).values.sum()), rel=1e-5)


def test_recovers_well_separated_clusters():
    x, y, means = _blobs()
    res = fit_kmeans(x, KMeansConfig(k=6, seed=3, progress=False))
    labels = assign(torch.from_numpy(x), res.centroids)[0].numpy()
    # every true cluster maps to exactly one unit and back
    pairs = set(zip(y.tolist(), labels.tolist()))
    assert len(pairs) == 6 and len({p[0] for p in pairs}) == 6 and len({p[1] for p in pairs}) == 6
    for j, t in pairs:
        assert np.linalg.norm(res.centroids[t].numpy() - means[j]) < 0.3
    assert res.inertia / len(x) == pytest.approx(8.0, rel=0.1)  # dim × unit noise variance
    assert res.inertia_trace[-1] <= res.inertia_trace[0]


def test_kmeans_plusplus_is_seeded():
    x = torch.from_numpy(_blobs()[0])
    a = kmeans_plusplus(x, 6, torch.Generator().manual_seed(1))
    b = kmeans_plusplus(x, 6, torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and a.shape == (6, 8)
    with pytest.raises(ValueError, match="at least k=6"):
        kmeans_plusplus(x[:5], 6, torch.Generator())


def test_empty_cluster_moves_to_far_point():
    x = torch.tensor([[0.0, 0.0], [0.1, 0.0], [10.0, 0.0], [10.2, 0.0], [30.0, 0.0]])
    c = torch.tensor([[0.0, 0.0], [10.0, 0.0], [-500.0, 0.0]])  # third centroid gets nothing
    st = lloyd_pass([x[:3], x[3:]], c, num_far=3)
    assert st.counts.tolist() == [2.0, 3.0, 0.0]
    new, n_empty = update_centroids(c, st)
    assert n_empty == 1
    assert new[2].tolist() == [30.0, 0.0]  # the point farthest from its centroid
    torch.testing.assert_close(new[0], torch.tensor([0.05, 0.0]))


def test_streaming_many_shards_equals_one_shard(tmp_path):
    x, _, _ = _blobs(n=2500, k=5, dim=6, seed=2)
    lengths = _lengths(len(x))
    one = _store(tmp_path / "one", x, lengths)
    many = _store(tmp_path / "many", x, lengths, shard_bytes=6 * 4 * 300)
    assert one.meta["num_shards"] == 1 and many.meta["num_shards"] > 5
    cfg = KMeansConfig(k=5, percent=0.5, seed=4, init_size=400, iters=3, chunk_size=128, progress=False)
    fa, fb = StoreFrames(one, 0.5, 4, 128), StoreFrames(many, 0.5, 4, 128)
    np.testing.assert_array_equal(np.concatenate(list(fa())), np.concatenate(list(fb())))
    a, b = fit_kmeans_store(one, cfg), fit_kmeans_store(many, cfg)
    torch.testing.assert_close(a.centroids, b.centroids, rtol=1e-5, atol=1e-5)
    assert a.inertia == pytest.approx(b.inertia, rel=1e-5)
    assert a.num_frames == b.num_frames == fa.num_frames


def test_percent_sampling(tmp_path):
    x, _, _ = _blobs(n=1500, k=3, dim=4)
    lengths = _lengths(len(x), seed=5)
    store = _store(tmp_path / "s", x, lengths, shard_bytes=4 * 4 * 200)
    allf = StoreFrames(store, -1)
    assert allf.num_frames == len(x)
    np.testing.assert_array_equal(np.concatenate(list(allf())), x)
    part = StoreFrames(store, 0.1, seed=0, chunk_size=50)
    assert part.num_frames == sum(max(1, int(np.ceil(n * 0.1))) for n in lengths)
    got = np.concatenate(list(part()))
    assert got.shape == (part.num_frames, 4)
    # every sampled frame is a real frame, no duplicates, and every utterance contributes
    rows = {r.tobytes(): i for i, r in enumerate(x)}
    idx = np.array([rows[r.tobytes()] for r in got])
    assert len(set(idx.tolist())) == len(idx)
    utt_of = np.repeat(np.arange(len(lengths)), lengths)
    assert set(utt_of[idx].tolist()) == set(range(len(lengths)))
    again = np.concatenate(list(StoreFrames(store, 0.1, seed=0)()))
    other = np.concatenate(list(StoreFrames(store, 0.1, seed=1)()))
    np.testing.assert_array_equal(got, again)
    assert not np.array_equal(got, other)
    np.testing.assert_array_equal(part.gather(np.array([0, 5, part.num_frames - 1])), got[[0, 5, -1]])
    for bad in (0.0, 1.5, -0.5):
        with pytest.raises(ValueError, match="percent"):
            StoreFrames(store, bad)
    with pytest.raises(ValueError, match="--percent"):
        fit_kmeans_store(store, KMeansConfig(k=500, percent=0.1, progress=False))


def test_save_load_round_trip(tmp_path):
    c = torch.randn(7, 5)
    out = save_kmeans(tmp_path / "km", c, {"feature_kind": "mfcc", "layer": None, "frame_rate": 100.0, "seed": 3})
    km = load_kmeans(out)
    assert torch.equal(km.centroids, c) and km.k == 7 and km.dim == 5
    assert km.meta["feature_kind"] == "mfcc" and km.meta["seed"] == 3 and km.meta["sha256"] == km.sha256
    assert load_kmeans(out / "kmeans.safetensors").sha256 == km.sha256
    assert torch.equal(km.predict(c[[3, 1]] + 1e-3), torch.tensor([3, 1]))
    assert not list(out.glob("*.pkl")) and not list(out.glob(".*tmp"))
    card = json.loads((out / "kmeans.json").read_text())
    card["sha256"] = "0" * 64
    (out / "kmeans.json").write_text(json.dumps(card))
    with pytest.raises(KMeansFileError, match="hash"):
        load_kmeans(out)
    with pytest.raises(KMeansFileError, match="kmeans fit"):
        load_kmeans(tmp_path / "nowhere")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "kmeans.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(KMeansFileError, match="unreadable"):
        load_kmeans(tmp_path / "bad")


def test_cli_fit_label_with_manifest(tmp_path, capsys):
    x, y, _ = _blobs(n=1200, k=4, dim=6, seed=7)
    lengths = _lengths(len(x), seed=8)
    _store(tmp_path / "feats", x, lengths, shard_bytes=6 * 4 * 250, extra={"layer": 6})
    assert cli(["kmeans", "fit", str(tmp_path / "feats"), str(tmp_path / "km"), "--k", "4", "--percent", "0.5",
                "--iters", "2", "--seed", "1"]) == 0
    card = json.loads((tmp_path / "km" / "kmeans.json").read_text())
    assert card["k"] == 4 and card["layer"] == 6 and card["frame_rate"] == 50.0 and card["feature_kind"] == "mfcc"
    assert card["num_frames"] == sum(int(np.ceil(n * 0.5)) for n in lengths)

    ids = [f"utt{i:03d}" for i in range(len(lengths))][::-1]  # manifest in reverse store order
    write_manifest(Manifest(tmp_path, [Row(f"{u}.wav", 16000) for u in ids]), tmp_path / "train.tsv")
    out = tmp_path / "train.km"
    assert cli(["kmeans", "label", str(tmp_path / "km"), str(tmp_path / "feats"), str(out),
                "--manifest", str(tmp_path / "train.tsv"), "--fairseq-dict"]) == 0
    labels, info = read_frame_labels(out)
    assert info.frame_rate == 50.0 and info.num_classes == 4
    assert info.tokenizer["kind"] == "kmeans" and info.tokenizer["sha256"] == card["sha256"]
    assert info.tokenizer["layer"] == 6
    assert [len(l) for l in labels] == lengths[::-1]
    ys = np.split(y, np.cumsum(lengths)[:-1])[::-1]
    # units are a relabelling of the true blobs
    pairs = set(zip(np.concatenate(ys).tolist(), np.concatenate(labels).tolist()))
    assert len(pairs) == 4
    assert (tmp_path / "dict.km.txt").read_text().splitlines() == ["0 1", "1 1", "2 1", "3 1"]

    write_manifest(Manifest(tmp_path, [Row(f"{u}.wav", 16000) for u in ids + ["ghost1", "ghost2"]]), tmp_path / "dev.tsv")
    assert cli(["kmeans", "label", str(tmp_path / "km"), str(tmp_path / "feats"), str(tmp_path / "dev.km"),
                "--manifest", str(tmp_path / "dev.tsv")]) == 1
    err = capsys.readouterr().err
    assert "2 of" in err and "ghost1" in err and "ghost2" in err and "dev.tsv" in err
    assert not (tmp_path / "dev.km").exists()


def test_cli_help_lists_options():
    r = subprocess.run([sys.executable, "-m", "audiossl", "kmeans", "fit", "--help"], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0 and "--percent" in r.stdout and "default: -1.0" in r.stdout


def test_bench_quick_smoke(tmp_path):
    out = tmp_path / "bench.json"
    # sklearn's 20 k-means++ inits make it the slow peer; the full run includes it.
    r = subprocess.run(
        [sys.executable, str(ROOT / "tools/bench/kmeans.py"), "--quick", "--n", "4000", "--threads", "1",
         "--methods", "ours,ours-store,faiss",
         "--json", str(out)],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
    )
    assert r.returncode == 0, r.stderr
    res = {row["method"]: row for row in json.loads(out.read_text())["results"]}
    assert set(res) == {"ours", "ours-store", "faiss"}
    assert res["ours"]["inertia"] <= res["faiss"]["inertia"] * 1.02
    assert "inertia/frame" in r.stdout


def test_bench_stream_smoke(tmp_path):
    """The scale mode writes a float16 store piecewise, fits and labels it, and reports frames/s."""
    out = tmp_path / "stream.json"
    r = subprocess.run(
        [sys.executable, str(ROOT / "tools/bench/kmeans.py"), "--stream", "12345", "--dim", "32", "--k", "10",
         "--threads", "1", "--json", str(out)],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
    )
    assert r.returncode == 0, r.stderr
    res = json.loads(out.read_text())
    assert res["n"] == 12345 and res["fit_frames_per_s"] > 0 and res["label_frames_per_s"] > 0
    # 10 components of ~unit variance in 32-d: a fit leaves ~32-38 per frame; one centroid for all ~64
    assert res["inertia_per_frame"] < 48
    assert "frames/s" in r.stdout


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    x, y, _ = _blobs(n=4000, k=6, dim=16, seed=11)
    cfg = KMeansConfig(k=6, seed=0, progress=False)
    cpu = fit_kmeans(x, cfg)
    gpu = fit_kmeans(x, KMeansConfig(k=6, seed=0, progress=False, device="cuda"))
    assert gpu.centroids.device.type == "cpu"
    assert gpu.inertia == pytest.approx(cpu.inertia, rel=1e-3)
    labels = assign(torch.from_numpy(x).cuda(), gpu.centroids.cuda())[0].cpu().numpy()
    assert len(set(zip(y.tolist(), labels.tolist()))) == 6
