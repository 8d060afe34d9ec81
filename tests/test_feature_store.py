import numpy as np
import pytest

from audiossl.data.feature_store import FeatureStore, FeatureWriter
from audiossl.data.frame_labels import LabelError, LabelInfo, read_frame_labels, write_fairseq_dict, write_frame_labels
from audiossl.utils.fileio import atomic_open, check_free_space


def _feats(n, seed):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((rng.integers(5, 40), 8)).astype(np.float32) for _ in range(n)]


def test_write_read_sharded(tmp_path):
    feats = _feats(20, 0)
    w = FeatureWriter(tmp_path, kind="mfcc", dim=8, frame_rate=100, shard_bytes=8 * 4 * 100)
    for i, f in enumerate(feats):
        w.add(f"u{i}", f)
    store = w.close()
    assert store.meta["num_shards"] > 2 and len(store) == 20
    assert store.num_frames == sum(f.shape[0] for f in feats)
    for i, f in enumerate(feats):
        np.testing.assert_array_equal(store[f"u{i}"], f)
        np.testing.assert_array_equal(store[i], f)
    total = sum(arr.shape[0] for arr, _ in store.iter_shards())
    assert total == store.num_frames
    assert isinstance(store.shard(0), np.memmap)


def test_resume_keeps_finished_shards(tmp_path):
    feats = _feats(10, 1)
    w = FeatureWriter(tmp_path, kind="fbank", dim=8, frame_rate=100, shard_bytes=8 * 4 * 60)
    for i, f in enumerate(feats[:6]):
        w.add(f"u{i}", f)
    # Simulated crash: no close(); only flushed shards survive.
    flushed = {e.utt_id for e in w.entries}
    assert flushed
    w2 = FeatureWriter(tmp_path, kind="fbank", dim=8, frame_rate=100, shard_bytes=8 * 4 * 60, resume=True)
    assert w2.done_ids == flushed
    for i, f in enumerate(feats):
        if f"u{i}" not in w2.done_ids:
            w2.add(f"u{i}", f)
    store = w2.close(order=[f"u{i}" for i in range(10)])
    assert store.ids == [f"u{i}" for i in range(10)]
    for i, f in enumerate(feats):
        np.testing.assert_array_equal(store[f"u{i}"], f)
    with pytest.raises(ValueError, match="dim=8"):
        FeatureWriter(tmp_path, kind="fbank", dim=16, frame_rate=100, resume=True)


def test_store_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a feature store"):
        FeatureStore(tmp_path)
    w = FeatureWriter(tmp_path, kind="x", dim=4, frame_rate=50)
    with pytest.raises(ValueError, match=r"expected \[frames, 4\]"):
        w.add("a", np.zeros((3, 5)))


def test_frame_labels_roundtrip_and_refusals(tmp_path):
    labels = [np.array([1, 2, 3]), np.array([0]), np.array([], dtype=np.int64)]
    p = write_frame_labels(tmp_path / "train.km", labels, LabelInfo(50.0, 4, {"kind": "kmeans"}))
    got, info = read_frame_labels(p)
    assert info.frame_rate == 50.0 and info.num_classes == 4
    assert [g.tolist() for g in got] == [[1, 2, 3], [0], []]
    with pytest.raises(LabelError, match="outside"):
        write_frame_labels(tmp_path / "x.km", [np.array([5])], LabelInfo(50.0, 4))
    (tmp_path / "train.km").write_text("1 2 9\n0\n\n")
    with pytest.raises(LabelError, match=r"train.km:1: label 9 outside \[0, 4\)"):
        read_frame_labels(p)
    (tmp_path / "train.km").write_text("1 2\n")
    with pytest.raises(LabelError, match="half-written"):
        read_frame_labels(p)
    (tmp_path / "bare.km").write_text("1 2\n")
    with pytest.raises(LabelError, match="frame rate and tokenizer are unknown"):
        read_frame_labels(tmp_path / "bare.km")
    d = write_fairseq_dict(tmp_path / "dict.km.txt", 3)
    assert d.read_text() == "0 1\n1 1\n2 1\n"


def test_atomic_open_keeps_old_file_on_failure(tmp_path):
    target = tmp_path / "f.txt"
    target.write_text("good")
    with pytest.raises(RuntimeError):
        with atomic_open(target) as f:
            f.write("half")
            raise RuntimeError("disk full")
    assert target.read_text() == "good"
    assert list(tmp_path.iterdir()) == [target]


def test_free_space_check(tmp_path):
    check_free_space(tmp_path, 1)
    with pytest.raises(OSError, match="not enough disk space"):
        check_free_space(tmp_path / "sub", 1 << 60, "features")
