"""tools/layer_probe.py: the cross-validated per-layer probe reads a bench cache, finds the layer that
holds the label, and refuses a directory without one."""

import sys
from pathlib import Path

import numpy as np

from audiossl.data.feature_store import FeatureWriter

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import layer_probe  # noqa: E402


def _fake_bench(tmp_path: Path) -> Path:
    """A bench out dir with one upstream (2 layers × 8 dims, pooled): layer 1 encodes the label, layer 0 is noise."""
    rng = np.random.default_rng(0)
    corpus = tmp_path / "corpus" / "notes"
    bench = tmp_path / "bench"
    for split, n in (("train", 60), ("valid", 30)):
        labels = [str(k % 3) for k in range(n)]
        (corpus).mkdir(parents=True, exist_ok=True)
        (corpus / f"{split}.tsv").write_text(str(corpus) + "\n" + "".join(f"wav/{split}-{k}.wav\t16000\n" for k in range(n)))
        (corpus / f"{split}.pitch").write_text("\n".join(labels) + "\n")
        w = FeatureWriter(bench / "cache" / "up" / f"notes_{split}_abc", kind="bench_cache", dim=16, frame_rate=0.0,
                          extra={"pooled": True, "num_layers": 2, "hidden_dim": 8, "manifest": str(corpus / f"{split}.tsv")})
        for k, lab in enumerate(labels):
            signal = np.eye(8)[int(lab)] * 5 + rng.normal(0, 0.3, 8)
            w.add(f"wav/{split}-{k}", np.concatenate([rng.normal(0, 1, 8), signal])[None].astype(np.float32))
        w.close()
    return bench


def test_layer_probe_finds_the_informative_layer(tmp_path, capsys):
    bench = _fake_bench(tmp_path)
    assert layer_probe.main([str(bench), "--corpus", "notes", "--label", "pitch", "--folds", "3", "--out", str(tmp_path / "t.md")]) == 0
    row = next(l for l in (tmp_path / "t.md").read_text().splitlines() if l.startswith("| up |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1] == "90"
    l0, l1 = (float(c.split("±")[0]) for c in cells[2:4])
    assert l1 > 95 and l0 < 60, row


def test_layer_probe_names_a_missing_cache(tmp_path, capsys):
    assert layer_probe.main([str(tmp_path)]) == 2
    assert "cache not found" in capsys.readouterr().err


def test_effective_rank_counts_the_directions_the_clips_spread_over():
    d = 6
    assert abs(layer_probe.effective_rank(np.vstack([np.eye(d), -np.eye(d)])) - d) < 1e-9  # d equal directions
    line = np.outer(np.arange(10.0), np.ones(4)) + 3.0  # every clip on one line (the offset is centred away)
    assert abs(layer_probe.effective_rank(line) - 1.0) < 1e-6
    spread = np.random.default_rng(0).normal(size=(200, 8)) * np.array([10, 10, 1, 1, 1, 1, 1, 1])
    assert 2.0 < layer_probe.effective_rank(spread) < 8.0


def test_layer_probe_prints_the_effective_rank_of_each_layer(tmp_path, capsys):
    bench = _fake_bench(tmp_path)
    assert layer_probe.main([str(bench), "--corpus", "notes", "--label", "pitch", "--folds", "3", "--out", str(tmp_path / "t.md")]) == 0
    rows = [l for l in (tmp_path / "t.md").read_text().splitlines() if l.startswith("| up |")]
    assert len(rows) == 2, rows
    cells = [c.strip() for c in rows[1].strip("|").split("|")]
    assert cells[1] == "8"
    l0, l1 = float(cells[2]), float(cells[3])
    assert l0 > 6.0 and l1 < l0 - 2.0, rows[1]  # isotropic noise vs 3 class centres (+ small noise)
