"""The opt-in synthesized music sets of the genre and tagging bench tasks (``audiossl synth --tasks
music_genre,music_tagging``): layout the specs read, labels true by construction, determinism, and a
bench run that yields a number."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from audiossl.data.manifest import read_manifest
from audiossl.data.synth import mixtures, styles
from audiossl.data.synth.bench_tasks import SIZES
from audiossl.data.synth.jobs import clip_seed
from audiossl.data.synth.music import FAMILIES

TASKS = ["music_genre", "music_tagging"]


@pytest.fixture(scope="module")
def sets(tmp_path_factory) -> Path:
    from audiossl.data.synth import synthesize

    out = tmp_path_factory.mktemp("music_sets")
    synthesize(out, "tiny", 0, 1, TASKS, progress=False)
    return out


def _digest(root: Path) -> dict[str, str]:
    """sha256 per file; a manifest without its first line (the absolute root dir)."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.name != "corpus.json":
            data = p.read_bytes()
            out[str(p.relative_to(root))] = hashlib.sha256(data.split(b"\n", 1)[1] if p.suffix == ".tsv" else data).hexdigest()
    return out


def test_layout_is_what_the_specs_read(sets):
    from audiossl.eval.tasks import get_task, resolve

    g = resolve(get_task("genre"), sets)
    assert {r: p.relative_to(sets).as_posix() for r, p in g.splits.items()} == {
        "train": "music/genre/train.tsv", "dev": "music/genre/valid.tsv", "test": "music/genre/test.tsv"}
    t = resolve(get_task("tagging"), sets)
    assert t.splits["test"] == sets / "music" / "tags" / "test.tsv"
    assert (sets / "music" / "tags" / "tags.txt").read_text().split() == sorted(FAMILIES)
    for split, per_style in zip(("train", "valid", "test"), SIZES["tiny"].genre_clips):
        m = read_manifest(sets / "music" / "genre" / f"{split}.tsv", labels=["lbl", "bpm"])
        assert len(m) == per_style * len(styles.GENRES) and sorted(set(m.labels["lbl"])) == sorted(styles.GENRES)
        assert all(r.relpath.split("/")[1] == lab for r, lab in zip(m.rows, m.labels["lbl"]))  # wav/<style>/...
        assert all(r.num_samples == 5 * 24000 for r in m.rows)


def test_genre_labels_and_tempo_by_construction(sets):
    m = read_manifest(sets / "music" / "genre" / "train.tsv", labels=["lbl", "bpm"])
    for row, genre, bpm in zip(m.rows, m.labels["lbl"], m.labels["bpm"]):
        p = styles.style_params(genre, clip_seed(0, "genre", Path(row.relpath).stem))
        assert p["genre"] == genre and float(bpm) == pytest.approx(p["bpm"], abs=0.005)
        if p["borrowed"] != "tempo":
            lo, hi = styles.STYLES[genre].bpm
            assert lo <= p["bpm"] <= hi


def test_styles_overlap_by_borrowing():
    borrowed = [styles.style_params(g, s)["borrowed"] for g in styles.GENRES for s in range(300)]
    share = np.mean([b != "" for b in borrowed])
    assert 0.16 < share < 0.24 and {b for b in borrowed if b} == {"instruments", "tempo", "groove", "harmony"}
    # a borrowed facet really comes from another style: e.g. classical (no drums) with a drum groove
    grooves = {styles.style_params("classical", s)["drums"] for s in range(300)}
    assert "none" in grooves and len(grooves) > 1


def test_tags_are_the_families_rendered(sets):
    from audiossl.audio.io import load_audio

    for split in ("train", "test"):
        m = read_manifest(sets / "music" / "tags" / f"{split}.tsv", labels=["tags", "programs"])
        counts = set()
        for row, tags, progs in zip(m.rows, m.labels["tags"], m.labels["programs"]):
            stems, p = mixtures.render_stems(clip_seed(0, "mixture", Path(row.relpath).stem))
            fams = tags.split(",")
            assert fams == sorted({x["family"] for x in p["parts"]}) and len(set(fams)) == len(fams)
            counts.add(len(fams))
            for fam, prog in zip(fams, progs.split(",")):
                assert int(prog) in FAMILIES[fam][0]
            rms = np.array([np.sqrt(np.mean(s.astype(np.float64) ** 2)) for s in stems])
            assert rms.min() >= 0.5 * rms.max() - 1e-6  # every tagged instrument is within 6 dB: audible
            mix = np.sum(stems, axis=0)
            wav = load_audio(sets / "music" / "tags" / row.relpath)[0].numpy()
            assert np.abs(wav - mix * (0.5 / np.abs(mix).max())).max() < 2e-4  # the file is these stems
        assert counts <= {1, 2, 3}
    assert len(counts) > 1


def test_same_seed_same_bytes_other_seed_differs(sets, tmp_path):
    from audiossl.data.synth import synthesize

    synthesize(tmp_path / "again", "tiny", 0, 2, TASKS, progress=False)
    assert _digest(tmp_path / "again") == _digest(sets)
    synthesize(tmp_path / "other", "tiny", 1, 1, TASKS, progress=False)
    a, b = _digest(tmp_path / "other"), _digest(sets)
    wavs = [k for k in a if k.endswith(".wav")]
    assert sum(a[k] != b.get(k) for k in wavs) == len(wavs)


def test_bench_gives_numbers(sets, tmp_path):
    from audiossl.eval.harness import BenchConfig, run_bench

    recs = {r["task"]: r for r in run_bench(["fbank"], ["genre", "tagging"], sets, tmp_path,
                                            BenchConfig(epochs=3, bootstrap=100))}
    assert 0.0 <= recs["genre"]["value"] <= 100.0 and recs["genre"]["metric"] == "acc"
    assert 0.0 <= recs["tagging"]["test"]["auc"] <= 100.0 and 0.0 <= recs["tagging"]["test"]["ap"] <= 100.0
    assert recs["tagging"]["ci"]["auc"][0] <= recs["tagging"]["value"] <= recs["tagging"]["ci"]["auc"][1]
    assert "genre (ACC ↑)" in (tmp_path / "results.md").read_text()
