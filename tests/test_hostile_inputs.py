"""Hostile audio through every CLI verb (issue #9, item 4).

One module-scoped corpus (:mod:`tests.hostile_corpus`: ~1,000 files, 30 planted bad ones, 8/48 kHz
and 6-channel files, one 1-hour file) goes through ``prepare``, ``validate``, ``features``,
``extract``, ``pretrain`` and ``bench``, run in-process. Each verb must exit 0, name every bad file
with its reason, keep every good file (the fixed kinds included) and never crash.

What each verb does with the 1-hour file (checked below):

- ``prepare`` / ``validate``: kept; header checks only, or one streamed decode with ``--scan-samples``.
- ``features mfcc``: kept, whole (Kaldi MFCC is linear in length: 360k frames); ``features model``
  runs files over 30 s in chunks, as ``extract`` does.
- ``extract``: kept, run in 30 s chunks stitched to the single-pass frame count (one pass would need
  a 180k × 180k attention).
- ``pretrain``: kept and randomly cropped to ``max_sample_size`` like every other utterance.
- ``bench``: kept; the feature cache runs it in chunks (``CacheConfig.chunk_seconds``) and mean-pools.

Bad files found only by decoding (NaN/inf samples) pass header checks: ``prepare`` without
``--scan-samples`` keeps them and the decoding verbs skip them when they read them; ``pretrain``
names them when the sampler first draws them (one epoch names them all, as tested here).
"""

from __future__ import annotations

import json
import logging
import math
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from audiossl.cli.main import main
from tests.hostile_corpus import BAD_KINDS, SPLITS, HostileCorpus, build_hostile_corpus

HOUR = 3600 * 16000
RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "hubert" / "tiny.yaml"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> HostileCorpus:
    return build_hostile_corpus(tmp_path_factory.mktemp("hostile"))


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # Tiny models on a shared 2-core box: a second intra-op thread costs more than it gives
    # (measured 0.75 s vs 0.06 s per 34 s chunk of the test model under load).
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    """A random tiny HuBERT with a one-layer 400/320 conv front end (50 Hz, cheap on 1 hour of audio)."""
    from audiossl.models.checkpoint import save_checkpoint
    from audiossl.models.hubert.model import HubertModel, hubert_tiny

    torch.manual_seed(0)
    cfg = hubert_tiny(conv_layers=((16, 400, 320),), embed_dim=16, num_layers=2, num_heads=2, ffn_dim=32,
                      pos_conv_kernel=16, pos_conv_groups=4, final_dim=16)
    return save_checkpoint(HubertModel(cfg), tmp_path_factory.mktemp("ckpt") / "tiny")


def _bad(corpus: HostileCorpus, split: str | None = None, on_disk: bool = False) -> dict:
    out = {}
    for p, reason in corpus.bad.items():
        if split and p.parent.name != split:
            continue
        if on_disk and reason == "missing":
            continue
        out[p] = reason
    return out


def _good(corpus: HostileCorpus, split: str | None = None) -> list:
    return [p for p in corpus.good if split is None or p.parent.name == split]


def assert_all_named(text: str, bad: dict) -> None:
    """Every bad path appears on a line that also gives its expected reason."""
    lines = text.splitlines()
    unnamed = [f"{p} ({r})" for p, r in bad.items() if not any(str(p) in ln and r in ln for ln in lines)]
    assert not unnamed, f"{len(unnamed)} bad files not reported with path and reason: {unnamed[:5]}"


def assert_no_good_named_bad(text: str, corpus: HostileCorpus) -> None:
    named = set(re.findall(r"(/\S+?\.wav)", text))
    wrongly = sorted(str(p) for p in corpus.good if str(p) in named and any(
        str(p) in ln and ("skip" in ln.lower()) for ln in text.splitlines()))
    assert not wrongly, f"good files reported as skipped: {wrongly[:5]}"


# --- the corpus itself --------------------------------------------------------------------------


def test_corpus_plants_every_kind_in_every_split(corpus):
    from audiossl.audio.validate import ValidationConfig, check_file

    rows = sum(len(r) for r in corpus.splits.values())
    assert 950 <= rows <= 1050 and len(corpus.bad) == len(BAD_KINDS) * len(SPLITS)
    for split in SPLITS:
        names = {p.name for p in _bad(corpus, split)}
        assert names == {f"bad_{k}.wav" for k in BAD_KINDS}
    for p, reason in corpus.bad.items():
        assert [x.reason for x in check_file(p)] == [reason], p
    cfg = ValidationConfig(expected_sample_rate=16000)
    kinds = {"sr8k": ["sample_rate"], "sr48k": ["sample_rate"], "six_channel": ["channels"], "one_hour": []}
    for p, kind in corpus.fixed.items():
        assert [x.reason for x in check_file(p, cfg)] == kinds[kind], p
    info = sf.info(str(corpus.one_hour))
    assert info.frames == HOUR and info.subtype == "PCM_16"
    head = sf.read(str(corpus.one_hour), frames=16000)[0]
    assert 0 < np.abs(head).max() < 0.01  # low-level noise, not silence


# --- validate / prepare ---------------------------------------------------------------------------


def test_validate_names_every_bad_file_and_keeps_fixed_ones(corpus, tmp_path, capsys):
    report = tmp_path / "problems.jsonl"
    tsvs = [str(corpus.manifest(s)) for s in SPLITS]
    assert main(["validate", *tsvs, "--sample-rate", "16000", "--workers", "2", "--report", str(report)]) == 0
    out = capsys.readouterr().out
    assert_all_named(out, corpus.bad)
    problems = [json.loads(ln) for ln in report.read_text().splitlines()]
    fatal = {p["path"]: p["reason"] for p in problems if p["fatal"]}
    assert fatal == {str(p): r for p, r in corpus.bad.items()}
    warned = {p["path"]: p["reason"] for p in problems if not p["fatal"]}
    assert warned == {str(p): ("channels" if k == "six_channel" else "sample_rate")
                      for p, k in corpus.fixed.items() if k != "one_hour"}
    assert f"checked {sum(len(r) for r in corpus.splits.values())} files: {len(corpus.good)} good; 30 skipped" in out


def test_prepare_dir_scans_and_skips_every_bad_file(corpus, tmp_path, capsys):
    out = tmp_path / "prep"
    rc = main(["prepare", "dir", str(corpus.wav_dir), str(out), "--scan-samples", "--workers", "2", "--no-progress"])
    assert rc == 0
    stdout = capsys.readouterr().out
    bad = _bad(corpus, on_disk=True)
    assert f"skipped {len(bad)} files" in stdout
    skipped = dict(ln.split("\t")[:2] for ln in (out / "skipped.txt").read_text().splitlines())
    assert skipped == {str(p): r for p, r in bad.items()}
    rows = (out / "train.tsv").read_text().splitlines()
    assert rows[0] == str(corpus.wav_dir.resolve())
    kept = {rel: int(n) for rel, n in (ln.split("\t") for ln in rows[1:])}
    assert set(kept) == {p.relative_to(corpus.wav_dir).as_posix() for p in corpus.good}
    for p, kind in corpus.fixed.items():  # num_samples at the file's own rate (fairseq's convention)
        assert kept[p.relative_to(corpus.wav_dir).as_posix()] == sf.info(str(p)).frames, kind


def test_prepare_wav_scp_reports_the_missing_path_too(corpus, tmp_path, capsys):
    scp = tmp_path / "data" / "all" / "wav.scp"
    scp.parent.mkdir(parents=True)
    rows = [p for s in SPLITS for p, _, _ in corpus.splits[s]]
    scp.write_text("".join(f"{p.parent.name}-{p.stem} {p}\n" for p in rows))
    assert main(["prepare", "wav.scp", str(scp), str(tmp_path / "out"), "--scan-samples", "--no-progress"]) == 0
    assert "skipped 30 files" in capsys.readouterr().out
    skipped = dict(ln.split("\t")[:2] for ln in (tmp_path / "out" / "skipped.txt").read_text().splitlines())
    assert skipped == {str(p): r for p, r in corpus.bad.items()}
    ids = (tmp_path / "out" / "all.ids").read_text().split()
    assert sorted(ids) == sorted(f"{p.parent.name}-{p.stem}" for p in corpus.good)


# --- features -------------------------------------------------------------------------------------


def test_features_mfcc_skips_bad_keeps_good_and_fixes_rates(corpus, tmp_path, capsys, caplog):
    from audiossl.audio.features import get_feature
    from audiossl.data.feature_store import FeatureStore

    caplog.set_level(logging.WARNING)
    out = tmp_path / "mfcc"
    assert main(["features", "mfcc", str(corpus.manifest("train")), str(out), "--workers", "2", "--no-progress"]) == 0
    stdout = capsys.readouterr().out
    assert_all_named(stdout, _bad(corpus, "train"))
    assert_no_good_named_bad(stdout + caplog.text, corpus)
    store = FeatureStore(out)
    good = _good(corpus, "train")
    assert sorted(store.ids) == sorted(corpus.uid(p) for p in good)
    spec = get_feature("mfcc", 16000)
    for p, kind in corpus.fixed.items():
        if p.parent.name != "train":
            continue
        n16 = HOUR if kind == "one_hour" else round(0.8 * 16000)  # resampled to 16 kHz on load
        assert store[corpus.uid(p)].shape == (spec.num_frames(n16), spec.dim), kind
        if kind == "six_channel":  # six identical channels mix down to that channel
            mono = torch.from_numpy(sf.read(str(p), dtype="float32")[0][:, 0].copy())
            np.testing.assert_allclose(store[corpus.uid(p)], spec(mono).numpy(), rtol=1e-4, atol=1e-4)


# --- extract (chunks the 1-hour file) ---------------------------------------------------------------


@pytest.mark.slow
def test_extract_skips_bad_keeps_good_and_chunks_the_hour(corpus, ckpt, tmp_path, capsys):
    from audiossl.upstream.load import load_upstream

    out = tmp_path / "ext"
    assert main(["extract", str(ckpt), str(corpus.manifest("train")), str(out), "--layers", "-1"]) == 0
    stdout = capsys.readouterr().out
    bad = _bad(corpus, "train")
    assert_all_named(stdout, bad)
    assert f"{len(_good(corpus, 'train'))} written, 0 already done (resume), {len(bad)} skipped" in stdout
    index = {ln.split("\t")[0]: ln.split("\t")[1] for ln in (out / "index.tsv").read_text().splitlines()[1:]}
    assert set(index) == {corpus.uid(p) for p in _good(corpus, "train")}
    up = load_upstream(str(ckpt))
    hour = np.load(out / f"{corpus.uid(corpus.one_hour)}.npy", mmap_mode="r")
    assert hour.shape == (up.num_frames(HOUR), 16) and np.isfinite(hour[-100:]).all()
    for p, kind in corpus.fixed.items():
        if p.parent.name == "train" and kind != "one_hour":
            assert index[corpus.uid(p)] == f"{up.num_frames(12800)}x16", kind


def test_features_model_runs_long_files_in_chunks(ckpt):
    """``features model`` on a file longer than a chunk: same frame count as one pass, finite, and
    the chunked path is the one taken (one pass over a 1-hour file would not finish)."""
    from audiossl.features.dump import model_feature

    spec = model_feature(ckpt, 1, device="cpu")
    wav = 0.1 * torch.randn(16000 * 5, generator=torch.Generator().manual_seed(0))
    single = spec(wav)
    spec.function.chunk_seconds = 1.0
    calls = []
    real = spec.function._long
    spec.function._long = lambda w: calls.append(w.numel()) or real(w)
    chunked = spec(wav)
    assert calls == [wav.numel()]
    assert chunked.shape == single.shape == (spec.num_frames(wav.numel()), spec.dim)
    assert torch.isfinite(chunked).all()


# --- pretrain (crops the 1-hour file) -----------------------------------------------------------------


def _random_labels(tsv, out_km) -> None:
    """Labels at 50 Hz for every row, bad ones too (their length from the manifest)."""
    from audiossl.audio.io import AudioError, audio_info
    from audiossl.data.frame_labels import LabelInfo, write_frame_labels
    from audiossl.data.manifest import read_manifest

    m = read_manifest(tsv, labels=[])
    rng = np.random.default_rng(0)
    labels = []
    for i, row in enumerate(m.rows):
        try:
            info = audio_info(m.path(i))
            n = info.num_frames if info.sample_rate == 16000 else math.ceil(info.num_frames * 16000 / info.sample_rate)
        except AudioError:
            n = row.num_samples
        labels.append(rng.integers(0, 100, size=max(n // 320, 1)))
    write_frame_labels(out_km, labels, LabelInfo(50.0, 100, {"name": "random", "seed": 0}))


@pytest.mark.slow
def test_pretrain_one_epoch_names_every_bad_file_and_trains(corpus, tmp_path, capsys, caplog):
    caplog.set_level(logging.INFO)
    data = tmp_path / "data"
    data.mkdir()
    # every planted row of train + 40 plain good rows: one epoch is a few steps
    rows = [r for r in corpus.splits["train"] if r[0] in corpus.bad or r[0] in corpus.fixed]
    rows += [r for r in corpus.splits["train"] if r[0] not in corpus.bad and r[0] not in corpus.fixed][:40]
    (data / "train.tsv").write_text(f"{corpus.task_dir}\n" + "".join(
        f"{p.relative_to(corpus.task_dir).as_posix()}\t{n}\n" for p, _, n in rows))
    _random_labels(data / "train.tsv", data / "train.km")
    steps = 10
    rc = main(["pretrain", "--config", str(RECIPE), "--manifest-dir", str(data), "--train-split", "train",
               "--labels", "km", "--out", str(tmp_path / "run"), "--max-steps", str(steps),
               "checkpoint_every=1000", "validate_every=1000", "log_every=5"])
    text = caplog.text + capsys.readouterr().out
    assert rc == 0, text[-3000:]
    per_epoch = int(re.search(r"(\d+) batches per rank per epoch", text).group(1))
    assert per_epoch <= steps, "the run must cover a whole epoch to draw every file"
    assert (tmp_path / "run" / "checkpoint" / "model.safetensors").is_file()
    bad = _bad(corpus, "train")
    assert_all_named(text, bad)
    skipped = set(re.findall(r"skipping (\S+): ", text))
    assert skipped == {str(p) for p in bad}, "only the planted bad files may be skipped (the 1-hour file is cropped)"


def test_pretrain_probe_names_truncated_files_before_step_1(corpus):
    from audiossl.data.manifest import read_manifest
    from audiossl.data.lengths import probe_lengths

    lengths, problems = probe_lengths(read_manifest(corpus.manifest("train"), labels=[]), 16000, progress=False)
    reasons = {str(e.path): e.reason for e in problems}
    truncated = [p for p, r in corpus.bad.items() if r == "truncated" and p.parent.name == "train"]
    assert all(reasons.get(str(p)) == "truncated" for p in truncated)


# --- bench (chunks the 1-hour file in the cache) --------------------------------------------------------


@pytest.mark.slow
def test_bench_ks_names_every_bad_file_and_scores_every_good_one(corpus, ckpt, tmp_path, capsys, caplog):
    from audiossl.data.feature_store import FeatureStore
    from audiossl.eval.splits import load_split

    caplog.set_level(logging.WARNING)
    out = tmp_path / "bench"
    rc = main(["bench", str(ckpt), "--tasks", "ks", "--epochs", "1", "--data", str(corpus.root), "--out", str(out)])
    stdout = capsys.readouterr().out
    assert rc == 0, stdout[-3000:]
    assert_all_named(caplog.text, corpus.bad)
    assert_no_good_named_bad(caplog.text, corpus)
    records = json.loads((out / "results.json").read_text())
    records = records["records"]
    assert {r["upstream"] for r in records} == {str(ckpt), "fbank"}
    assert all(r["skipped_files"] == len(corpus.bad) for r in records)
    assert f"{2 * len(corpus.bad)} bad audio files skipped" in stdout
    stores = [FeatureStore(d) for d in sorted((out / "cache").glob("*/*")) if (d / "meta.json").is_file()]
    assert len(stores) == 2 * len(SPLITS)
    for store in stores:
        split = Path(store.meta["extra"]["manifest"]).stem
        good = {corpus.uid(p) for p in _good(corpus, split)}
        # what the heads train / are scored on: every good row of the split, nothing else
        assert set(load_split(store, corpus.manifest(split), "lbl").ids) == good, (store.meta["extra"]["name"], split)
    hour = [s for s in stores if corpus.uid(corpus.one_hour) in s]
    assert len(hour) == 2 and all(s[corpus.uid(corpus.one_hour)].shape[0] == 1 for s in hour)  # pooled
