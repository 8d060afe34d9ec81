"""The HuBERT iteration loop spread over processes: a features dump, k-means fit and labelling
under torchrun (2 gloo ranks on CPU) and as independent ``--shard I/N`` parts give the same store,
centroids and labels as one process; a part that dies half-way resumes.

Tolerance: k-means full passes accumulate per-centroid sums in float64 and the ranks' sums are
all-reduced in float64, so the only difference from one process is float64 summation order
(relative ~1e-16), far below float32 rounding of the centroids: centroids are compared at
rtol = atol = 1e-6 (in practice bit-equal) and labels must be identical. The reported inertia
sums float32 per-frame distances from a matmul whose blocking depends on the chunk's shape (ranks
see other chunks), so it agrees to float32 rounding: rel 1e-6.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from audiossl.cli.main import main
from audiossl.data.feature_store import FeatureStore, FeatureWriter, merge_parts
from audiossl.data.frame_labels import read_frame_labels
from audiossl.data.manifest import Manifest, Row, write_manifest
from audiossl.data.sharding import Part, parse_shard
from audiossl.features.dump import dump_features
from audiossl.tokenizers.kmeans_io import load_kmeans

REPO = Path(__file__).resolve().parents[1]
SR = 16000
KM = ["--k", "6", "--percent", "0.5", "--iters", "3", "--init-size", "150", "--sample-iters", "3",
      "--chunk-size", "97", "--threads", "1"]


def _corpus(tmp: Path, n: int = 11) -> Path:
    wav_dir = tmp / "wav"
    wav_dir.mkdir(parents=True)
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        length = int(rng.integers(3000, 9000))
        t = np.arange(length) / SR
        wav = 0.3 * np.sin(2 * np.pi * (200 + 90 * i) * t) + 0.05 * rng.standard_normal(length)
        sf.write(wav_dir / f"u{i:02d}.wav", wav.astype(np.float32), SR)
        rows.append(Row(f"u{i:02d}.wav", length))
    (wav_dir / "bad.wav").write_bytes(b"not audio")
    rows.insert(4, Row("bad.wav", 100))
    return write_manifest(Manifest(wav_dir, rows), tmp / "train.tsv")


def _same_store(a: Path, b: Path) -> None:
    sa, sb = FeatureStore(a), FeatureStore(b)
    assert sa.ids == sb.ids and sa.num_frames == sb.num_frames and sa.dim == sb.dim
    assert sa.meta["extra"]["num_skipped"] == sb.meta["extra"]["num_skipped"] == 1
    for u in sa.ids:
        np.testing.assert_array_equal(sa[u], sb[u])


def _pipeline(tsv: Path, work: Path) -> None:
    """The one-process reference, through the same CLI."""
    assert main(["features", "mfcc", str(tsv), str(work / "feats"), "--workers", "1", "--no-progress"]) == 0
    assert main(["kmeans", "fit", str(work / "feats"), str(work / "km"), *KM]) == 0
    assert main(["kmeans", "label", str(work / "km"), str(work / "feats"), str(work / "train.km")]) == 0


def test_parse_shard():
    assert parse_shard("1/4") == (1, 4)
    for bad in ("4/4", "x", "1/0", "-1/2"):
        with pytest.raises(ValueError, match="shard"):
            parse_shard(bad)


def test_two_torchrun_ranks_equal_one_process(tmp_path):
    tsv = _corpus(tmp_path)
    _pipeline(tsv, tmp_path / "one")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(REPO / "tests" / "shard_worker.py"), str(tsv), str(tmp_path / "two"), *KM]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise AssertionError("2-rank torchrun hung for 120 s; killed") from None
    assert proc.returncode == 0, err[-4000:]
    two = tmp_path / "two"
    # each rank wrote its own shard files; rank 0 merged the index once
    assert sorted(p.name for p in (two / "feats").glob("shard_*.npy")) == ["shard_00000.npy", "shard_00001.npy"]
    assert FeatureStore(two / "feats").meta["num_parts"] == 2
    _same_store(tmp_path / "one" / "feats", two / "feats")
    a, b = load_kmeans(tmp_path / "one" / "km"), load_kmeans(two / "km")
    torch.testing.assert_close(a.centroids, b.centroids, rtol=1e-6, atol=1e-6)
    assert a.meta["num_frames"] == b.meta["num_frames"]
    # per-frame distances are float32 matmul results whose blocking depends on the chunk's shape
    assert a.meta["inertia"] == pytest.approx(b.meta["inertia"], rel=1e-6)
    la, _ = read_frame_labels(tmp_path / "one" / "train.km")
    lb, _ = read_frame_labels(two / "train.km")
    assert len(la) == len(lb) == 11
    for x, y in zip(la, lb):
        np.testing.assert_array_equal(x, y)
    assert not list(two.glob("train.km.part-*"))


def test_slurm_shards_then_merge_equal_one_process(tmp_path):
    tsv = _corpus(tmp_path)
    _pipeline(tsv, tmp_path / "one")
    feats = tmp_path / "two" / "feats"
    for i in (1, 0):  # any order
        assert main(["features", "mfcc", str(tsv), str(feats), "--workers", "1", "--no-progress", "--shard", f"{i}/2"]) == 0
    assert not (feats / "index.tsv").exists()  # nothing is a store before the merge
    assert main(["features", "merge", str(feats)]) == 0
    _same_store(tmp_path / "one" / "feats", feats)
    # labelling in parts, with the one-process centroids, gives the one-process labels
    km, labels = tmp_path / "one" / "km", tmp_path / "two" / "train.km"
    assert main(["kmeans", "label", str(km), str(feats), str(labels), "--shard", "0/2"]) == 0
    with pytest.raises(FileNotFoundError, match="missing"):
        from audiossl.tokenizers.label_parts import merge_label_parts

        merge_label_parts(labels)
    assert main(["kmeans", "label", str(km), str(feats), str(labels), "--shard", "1/2"]) == 0
    assert main(["kmeans", "label", str(km), str(feats), str(labels), "--merge"]) == 0
    la, _ = read_frame_labels(tmp_path / "one" / "train.km")
    lb, _ = read_frame_labels(labels)
    for x, y in zip(la, lb):
        np.testing.assert_array_equal(x, y)


def test_a_part_that_dies_half_way_resumes(tmp_path, monkeypatch):
    tsv = _corpus(tmp_path)
    ref = dump_features("mfcc", tsv, tmp_path / "one", workers=1, progress=False)
    out = tmp_path / "parts"
    small = 40 * 39 * 4  # ~1 utterance per shard file
    dump_features("mfcc", tsv, out, workers=1, progress=False, shard_bytes=small, part=Part(0, 2))
    with pytest.raises(FileNotFoundError, match=r"parts \[1\] of 2"):
        merge_parts(out)

    real_add, calls = FeatureWriter.add, []

    def dying_add(self, uid, feats):
        calls.append(uid)
        if len(calls) == 4:
            raise KeyboardInterrupt("killed")
        real_add(self, uid, feats)

    monkeypatch.setattr(FeatureWriter, "add", dying_add)
    with pytest.raises(KeyboardInterrupt):
        dump_features("mfcc", tsv, out, workers=1, progress=False, shard_bytes=small, part=Part(1, 2))
    monkeypatch.setattr(FeatureWriter, "add", real_add)
    # part 0 wrote even shard numbers, the dead part 1 odd ones: no file is written by both
    assert {int(p.name[6:11]) % 2 for p in out.glob("shard_*.npy")} == {0, 1}
    part0 = {p.name: p.stat().st_mtime_ns for p in out.glob("shard_*.npy") if int(p.name[6:11]) % 2 == 0}
    again = dump_features("mfcc", tsv, out, workers=1, progress=False, shard_bytes=small, part=Part(1, 2))
    assert 1 <= again.reused < 4 and again.computed + again.reused + len(again.skipped) == again.num_rows
    assert part0 == {p.name: p.stat().st_mtime_ns for p in out.glob("shard_*.npy") if int(p.name[6:11]) % 2 == 0}
    merge_parts(out)
    _same_store(ref.out, out)
    with pytest.raises(ValueError, match="num_parts"):  # resuming with another N would mix layouts
        dump_features("mfcc", tsv, out, workers=1, progress=False, part=Part(0, 3))


def test_extract_shards_split_the_inputs(tmp_path):
    from audiossl.extract.sinks import read_index

    tsv = _corpus(tmp_path)
    assert main(["extract", "fbank", str(tsv), str(tmp_path / "one")]) == 0
    for i in (0, 1):
        assert main(["extract", "fbank", str(tsv), str(tmp_path / "two"), "--shard", f"{i}/2"]) == 0
    one = read_index(tmp_path / "one")
    parts = [read_index(tmp_path / "two" / f"part-{i:05d}-of-00002") for i in (0, 1)]
    assert not set(parts[0]) & set(parts[1]) and {**parts[0], **parts[1]} == one
